"""The recurrent study (``utils.studies.recurrent``): the variants trained on a tiny corpus, and its criterion."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from utils.studies import recurrent


def test_the_recurrent_study_trains_each_variant_and_seed_apart(tmp_path, tiny_word_corpus) -> None:
    params = tmp_path / "tiny.yaml"
    params.write_text(f"data_dir: {tiny_word_corpus}\nembed_dim: 8\nhidden_dim: 16\nnum_layers: 1\nbatch_size: 8\n"
                      "dropout: 0.0\nlr: 0.01\nlr_schedule: linear\nwarmup_steps: 1\nepochs: 1\n")
    csv = tmp_path / "recurrent.csv"
    argv = ["--params", str(params), "--out", str(tmp_path / "runs"), "--csv", str(csv), "--models", "rnn"]
    assert recurrent.main([*argv, "--seeds", "7", "8", "--variants", "original", "context"]) == 0
    table = pd.read_csv(csv)
    assert table[["variant", "seed"]].values.tolist() == [["original", 7], ["original", 8], ["context", 7],
                                                          ["context", 8]]
    assert (table["model"] == "rnn").all() and (table["epochs_run"] == 1).all()
    assert (table["params"] == str(params)).all() and table["commit"].notna().all()  # where each run ran
    assert table["val_source_gap"].notna().all() and table["val_crystal_bleu"].between(0, 100).all()
    assert (tmp_path / "runs" / "seed-8" / "rnn-context" / "rnn_best.pt").is_file()
    csv.unlink()
    assert recurrent.main([*argv, "--collect"]) == 0  # nothing trained: the rows again
    assert len(pd.read_csv(csv)) == 4
    # a later session without the runs' folders keeps the CSV's rows and trains only what is missing
    shutil.rmtree(tmp_path / "runs" / "seed-8")
    assert recurrent.main([*argv, "--seeds", "7", "8", "--variants", "original", "context", "reverse"]) == 0
    again = pd.read_csv(csv)
    assert again[["variant", "seed"]].values.tolist() == [["original", 7], ["original", 8], ["reverse", 7],
                                                          ["reverse", 8], ["context", 7], ["context", 8]]
    assert not (tmp_path / "runs" / "seed-8" / "rnn-context").exists()  # kept from the CSV, not retrained
    assert again.loc[again["seed"] == 8, "val_loss"].tolist()[::2] == table["val_loss"].tolist()[1::2]


def _verdicts(rows: list[tuple[str, str, int, float, float, float]]) -> pd.DataFrame:
    """rows: (model, variant, seed, docstring gap, distinct %, validation loss)."""
    table = pd.DataFrame(rows, columns=["model", "variant", "seed", "val_source_gap", "val_distinct_outputs",
                                        "val_loss"]).assign(val_bleu=10.0, val_crystal_bleu=1.0)
    return recurrent.reads_docstring(table)


def test_a_variant_reads_its_docstring_only_if_every_seed_clears_both_bars() -> None:
    v = _verdicts([("rnn", "original", 42, 0.00, 0.1, 3.5), ("rnn", "original", 1, 0.00, 0.2, 3.5),
                   ("rnn", "reverse", 42, 0.30, 60.0, 3.3), ("rnn", "reverse", 1, 0.04, 60.0, 3.3),  # a seed < 0.05
                   ("rnn", "context", 42, 0.20, 25.0, 3.2), ("rnn", "context", 1, 0.06, 21.0, 3.2)])
    assert v["reads"].tolist() == [False, False, True]
    assert v.loc[("rnn", "reverse"), "min_gap"] == pytest.approx(0.04)


def test_the_choice_is_one_variant_for_both_models() -> None:
    rows = []
    for model in ("rnn", "lstm"):
        for seed in (42, 1):
            rows += [(model, "original", seed, 0.0, 0.5, 3.5), (model, "context", seed, 0.2, 40.0, 3.1)]
            # reverse reads for the LSTM only, with a lower loss: the variant that reads for both wins
            rows.append((model, "reverse", seed, 0.2 if model == "lstm" else 0.0, 40.0, 3.0))
    variant, why = recurrent.choose(_verdicts(rows))
    assert variant == "context" and "rnn and lstm (2 of 2)" in why
    table = pd.DataFrame(rows, columns=["model", "variant", "seed", "val_source_gap", "val_distinct_outputs",
                                        "val_loss"]).assign(val_bleu=10.0, val_crystal_bleu=1.0, val_syntax_valid=90.0,
                                                            train_seconds=100.0)
    text = recurrent.markdown(table)
    assert "| rnn | context | 2 | 0.200 | 40.0 | yes |" in text and "Chosen: **context**" in text
    none = [(m, v, s, 0.0, 1.0, 3.0) for m, v, s, *_ in rows]  # no variant reads it
    assert recurrent.choose(_verdicts(none))[0] == "original"
