"""The budget study's command (``utils.studies.budget``): arms of size, pairs and epochs on a tiny corpus."""
from __future__ import annotations

import pandas as pd

from utils.studies import budget


def test_the_budget_study_trains_each_arm_on_its_schedule_and_writes_one_row(tmp_path, tiny_word_corpus,
                                                                            monkeypatch) -> None:
    params = tmp_path / "tiny.yaml"
    params.write_text(f"data_dir: {tiny_word_corpus}\nnum_layers: 1\nbatch_size: 8\ndropout: 0.0\nlr: 0.01\n"
                      "lr_schedule: linear\nwarmup_steps: 1\npatience: 5\n")
    monkeypatch.setattr(budget, "ARMS", {
        "small-all-2ep": {"embed_dim": 8, "hidden_dim": 16, "train_size": None, "epochs": 2, "budget": "main"},
        "wide-half-1ep": {"embed_dim": 16, "hidden_dim": 32, "train_size": 12, "epochs": 1, "budget": "main"},
    })
    csv = tmp_path / "budget.csv"
    argv = ["--model", "lstm", "--params", str(params), "--out", str(tmp_path / "runs"), "--csv", str(csv)]
    assert budget.main(argv) == 0
    table = pd.read_csv(csv)
    assert table["arm"].tolist() == ["small-all-2ep", "wide-half-1ep"]
    assert table["train_pairs"].tolist() == [24, 12] and table["epochs_run"].tolist() == [2, 1]
    assert table["hidden_dim"].tolist() == [16, 32]
    assert (table["ended_by"] == "schedule").all() and table["val_bleu"].between(0, 100).all()
    csv.unlink()
    assert budget.main([*argv, "--collect"]) == 0  # the table again, from the arms' results, nothing trained
    assert pd.read_csv(csv)["arm"].tolist() == ["small-all-2ep", "wide-half-1ep"]
