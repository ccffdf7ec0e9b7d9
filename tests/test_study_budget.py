"""The budget study's command (``utils.studies.budget``): arms of size, pairs and epochs on a tiny corpus."""
from __future__ import annotations

import json

import pandas as pd

from utils.data.vocabulary import Vocabulary
from utils.studies import budget


def _tiny_corpus(folder) -> None:
    folder.mkdir()
    words = [f"w{i}" for i in range(8)]
    rows = [{"docstring_tokens": [words[(k + j) % 8] for j in range(3 + k % 4)]} for k in range(40)]
    for r in rows:
        r["code_tokens"] = ["def", "f", "("] + r["docstring_tokens"][:2] + [")", ":"]
    for name, part in (("train", rows[:24]), ("valid", rows[24:32]), ("test", rows[32:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    Vocabulary.build([r["docstring_tokens"] for r in rows], min_freq=1).save(folder / "src_vocab.json")
    Vocabulary.build([r["code_tokens"] for r in rows], min_freq=1).save(folder / "trg_vocab.json")
    (folder / "manifest.json").write_text(json.dumps({"max_lengths": {"src": 10, "trg": 12}}))


def test_the_budget_study_trains_each_arm_on_its_schedule_and_writes_one_row(tmp_path, monkeypatch) -> None:
    _tiny_corpus(tmp_path / "data")
    params = tmp_path / "tiny.yaml"
    params.write_text(f"data_dir: {tmp_path / 'data'}\nnum_layers: 1\nbatch_size: 8\ndropout: 0.0\nlr: 0.01\n"
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
