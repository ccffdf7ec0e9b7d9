"""The retrieval study: none against top1 on validation, and merging a run's tables into plots/."""
from __future__ import annotations

import pandas as pd
import pytest

from utils.studies.retrieval import merge_run, study_table


def _results(models: list[str], floor_bleu: float = 10.0) -> pd.DataFrame:
    rows = [{"model": m, "decoding": "greedy", "bleu": b, "codebleu": b, "exact_match": 0.0, "syntax_valid": 90.0,
             "decode_seconds": 1.0} for b, m in enumerate(models, 1)]
    rows += [{"model": "reference-shuffled (floor)", "decoding": "other reference", "bleu": floor_bleu,
              "codebleu": 13.0, "exact_match": 0.0, "syntax_valid": 100.0, "decode_seconds": None},
             {"model": "retrieval (TF-IDF)", "decoding": "nearest training docstring", "bleu": 19.0,
              "codebleu": 19.0, "exact_match": 0.0, "syntax_valid": 100.0, "decode_seconds": None}]
    return pd.DataFrame(rows)


def test_merge_replaces_the_run_models_and_keeps_the_baselines_last(tmp_path) -> None:
    main, run = tmp_path / "plots", tmp_path / "run"
    main.mkdir(), run.mkdir()
    _results(["copy", "copy+retrieval"]).to_csv(main / "results.csv", index=False)
    _results(["copy+retrieval", "transformer+retrieval"]).to_csv(run / "results.csv", index=False)
    (run / "attention_copy+retrieval_0.png").write_bytes(b"png")
    (run / "attention_copy_0.png").write_bytes(b"not merged")
    assert merge_run(run, main) == ["copy+retrieval", "transformer+retrieval"]
    merged = pd.read_csv(main / "results.csv")
    assert list(merged["model"]) == ["copy", "copy+retrieval", "transformer+retrieval",
                                     "reference-shuffled (floor)", "retrieval (TF-IDF)"]
    assert merged.loc[1, "bleu"] == 1.0  # the run's row, not the old one
    assert (main / "attention_copy+retrieval_0.png").is_file() and not (main / "attention_copy_0.png").exists()
    _results(["copy+retrieval"], floor_bleu=11.0).to_csv(run / "results.csv", index=False)
    with pytest.raises(ValueError, match="other test functions"):
        merge_run(run, main)


def test_study_table_lists_models_trained_both_ways(tmp_path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    pd.DataFrame([{"vocabulary": "bpe", "model": m, "epoch": e, "val_loss": v + d, "val_token_acc_greedy": 10.0}
                  for m, d in (("copy", 0.0), ("copy+retrieval", -0.1), ("rnn", 0.5)) for e, v in ((1, 3.5), (2, 3.0))]
                 ).to_csv(plots / "training_epochs.csv", index=False)
    table = study_table(tmp_path / "no-checkpoints", tmp_path / "data", plots, models=["copy", "rnn"])
    assert list(table["retrieval_input"]) == ["none", "top1"] and set(table["model"]) == {"copy"}
    assert list(table["val_loss"]) == [3.0, pytest.approx(2.9)] and list(table["best_epoch"]) == [2, 2]
    assert set(table["source"]) == {str(plots / "training_epochs.csv")}
