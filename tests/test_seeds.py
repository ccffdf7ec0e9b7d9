"""The seed study: summary statistics, the ranking check, and a real run on a tiny corpus."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from utils.studies import seeds as seed_study
from utils.studies.seeds import ranking_holds, summary


def _table() -> pd.DataFrame:
    bleu = {1: (4.0, 6.0, 9.0), 2: (5.0, 7.0, 8.0), 3: (6.0, 5.0, 10.0)}
    return pd.DataFrame([{"seed": s, "model": m, "bleu": b} for s, values in bleu.items()
                         for m, b in zip(("rnn", "lstm", "attention"), values)])


def test_summary_per_model_in_the_given_order() -> None:
    table = summary(_table(), ["rnn", "lstm", "attention"])
    assert list(table.index) == ["rnn", "lstm", "attention"]
    assert table.loc["rnn"].tolist() == pytest.approx([3, 5.0, 1.0, 4.0, 6.0])
    assert table.loc["attention", "mean"] == pytest.approx(9.0)


def test_ranking_holds_per_seed() -> None:
    assert ranking_holds(_table(), ["rnn", "lstm", "attention"]) == {1: True, 2: True, 3: False}
    assert ranking_holds(_table(), ["rnn", "attention"]) == {1: True, 2: True, 3: True}


def test_seed_runs_on_the_test_split_and_resume(tiny_corpus, tmp_path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data_dir": str(tiny_corpus), "embed_dim": 8, "hidden_dim": 16,
                                  "epochs": 1, "device": "cpu"}))
    csv = tmp_path / "seeds.csv"
    argv = ["--models", "rnn", "lstm", "--seeds", "1", "2", "--params", str(params), "--out", str(tmp_path / "out"),
            "--csv", str(csv)]
    assert seed_study.main(argv) == 0
    table = pd.read_csv(csv)
    assert sorted(zip(table["seed"], table["model"])) == [(1, "lstm"), (1, "rnn"), (2, "lstm"), (2, "rnn")]
    assert (tmp_path / "out" / "seed-2" / "lstm_best.pt").exists()
    assert "rnn < lstm (test BLEU) in every seed" in capsys.readouterr().out
    # seeds change the training: the two rnn runs differ
    rnn = table[table["model"] == "rnn"]
    assert rnn["val_loss"].nunique() == 2
    assert seed_study.main(argv) == 0 and len(pd.read_csv(csv)) == 4  # nothing retrained


def test_missing_processed_corpus_is_a_clear_error(tmp_path, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data_dir": str(tmp_path / "nothing")}))
    with pytest.raises(SystemExit):
        seed_study.main(["--params", str(params)])
    assert "No processed data at" in capsys.readouterr().err


def test_the_main_runs_seed_is_read_from_its_checkpoints(tiny_corpus, tmp_path) -> None:
    main_dir = tmp_path / "main"
    params = {"data_dir": str(tiny_corpus), "checkpoint_dir": str(main_dir), "embed_dim": 8, "hidden_dim": 16,
              "epochs": 1, "device": "cpu"}
    assert seed_study.seed_dir(42, params, tmp_path / "out") == main_dir
    assert seed_study.seed_dir(1, params, tmp_path / "out") == tmp_path / "out" / "seed-1"
    assert seed_study.seed_dir(7, {**params, "seed": 7}, tmp_path / "out") == main_dir
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(params))
    argv = ["--models", "rnn", "--seeds", "42", "--params", str(path), "--out", str(tmp_path / "out"),
            "--csv", str(tmp_path / "seeds.csv")]
    assert seed_study.main(argv) == 0
    assert (main_dir / "rnn_best.pt").exists() and not (tmp_path / "out").exists()


def test_rows_of_another_parameter_file_are_kept_but_not_reused(tiny_corpus, tmp_path, capsys) -> None:
    params = tmp_path / "tiny.yaml"
    params.write_text(json.dumps({"data_dir": str(tiny_corpus), "embed_dim": 8, "hidden_dim": 16,
                                  "epochs": 1, "device": "cpu"}))
    csv = tmp_path / "seeds.csv"
    pd.DataFrame([{"params": "other", "seed": 1, "model": "rnn", "bleu": 99.0}]).to_csv(csv, index=False)
    argv = ["--models", "rnn", "--seeds", "1", "--params", str(params), "--out", str(tmp_path / "out"),
            "--csv", str(csv)]
    assert seed_study.main(argv) == 0
    table = pd.read_csv(csv)
    assert sorted(table["params"]) == ["other", "tiny"]  # trained, not taken from the other file's row
    assert table.loc[table["params"] == "tiny", "bleu"].iloc[0] != 99.0
    assert (tmp_path / "out" / "seed-1" / "rnn_best.pt").exists()
    assert "99.0" not in capsys.readouterr().out  # the summary leaves the other file's rows out
