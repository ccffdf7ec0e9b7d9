"""Screening runs: a model trained on a processed corpus and scored on its validation split."""
from __future__ import annotations

from utils.config import make_config
from utils.data.processed import model_lengths
from utils.studies.screening import ScreeningData, greedy_figures, train_and_validate


def test_train_and_validate_reports_validation_figures(tiny_corpus, tmp_path) -> None:
    data = ScreeningData.load(tiny_corpus)
    assert len(data.train) == 60 and len(data.valid) == len(data.valid_rows) == 15
    config = make_config("lstm", src_vocab_size=len(data.src), trg_vocab_size=len(data.trg), embed_dim=8,
                         hidden_dim=16, epochs=2, patience=2, **model_lengths(tiny_corpus))
    row = train_and_validate(config, data, tmp_path)
    assert (row["model"], row["train_pairs"], row["epochs_run"]) == ("lstm", 60, 2)
    assert 1 <= row["best_epoch"] <= 2 and row["val_loss"] > 0
    for key in ("val_bleu", "val_codebleu", "val_exact_match", "val_distinct_outputs", "val_syntax_valid"):
        assert 0.0 <= row[key] <= 100.0, key
    assert row["val_unk_rate"] == 0.0  # pieces spell everything
    assert isinstance(row["val_source_gap"], float) and abs(row["val_source_gap"]) < 10
    # the figures are those of the best checkpoint on the validation rows, decoded again
    again = greedy_figures(tmp_path, "lstm", data.valid_rows, data.trg)
    assert again["bleu"] == row["val_bleu"] and again["distinct_outputs"] == row["val_distinct_outputs"]
