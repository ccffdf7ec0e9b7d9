"""The budget study's command (``utils.studies.budget``): arms of size, pairs and epochs on a tiny corpus."""
from __future__ import annotations

import pandas as pd
import pytest

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
    argv = ["--model", "lstm", "--params", str(params), "--out", str(tmp_path / "runs"), "--csv", str(csv),
            "--arms", "small-all-2ep", "wide-half-1ep"]
    assert budget.main([*argv, "--seeds", "7", "8"]) == 0
    table = pd.read_csv(csv)
    assert table["arm"].tolist() == ["small-all-2ep"] * 2 + ["wide-half-1ep"] * 2  # each seed's run apart
    assert table["seed"].tolist() == [7, 8, 7, 8]
    assert table["train_pairs"].tolist() == [24, 24, 12, 12] and table["epochs_run"].tolist() == [2, 2, 1, 1]
    assert table["hidden_dim"].tolist() == [16, 16, 32, 32]
    assert (table["ended_by"] == "schedule").all() and table["val_bleu"].between(0, 100).all()
    assert table["val_crystal_bleu"].between(0, 100).all()
    assert (table["params"] == str(params)).all() and table["commit"].str.len().ge(7).all()  # where it ran
    assert table.loc[0, "val_loss"] != table.loc[1, "val_loss"]  # another seed, another model
    assert (tmp_path / "runs" / "seed-8" / "wide-half-1ep" / "lstm_best.pt").is_file()
    csv.unlink()
    monkeypatch.setattr(budget, "COMPARED", ("small-all-2ep", "wide-half-1ep"))
    assert budget.main([*argv, "--collect"]) == 0  # the table again, from the runs' results, nothing trained
    assert pd.read_csv(csv)["seed"].tolist() == [7, 8, 7, 8]
    # the winner on another model: one run's best checkpoint against another folder's same model
    check_csv = tmp_path / "check.csv"
    new = tmp_path / "runs" / "seed-7" / "wide-half-1ep" / "lstm_best.pt"
    assert budget.main(["--check", str(new), "--against", str(tmp_path / "runs" / "seed-7" / "small-all-2ep"),
                        "--check-csv", str(check_csv)]) == 0
    check = pd.read_csv(check_csv).iloc[0]
    assert check["model"] == "lstm" and check["seed"] == check["old_seed"] == 7
    assert check["val_loss"] == pytest.approx(table.loc[2, "val_loss"])  # wide-half-1ep, seed 7
    assert check["old_val_loss"] == pytest.approx(table.loc[0, "val_loss"])  # small-all-2ep, seed 7
    assert check["hurt"] == (check["val_loss"] > check["old_val_loss"])
    assert "| lstm | original | 7 | 0.01 |" in budget.check_markdown(pd.read_csv(check_csv))


def _summary(crystal: dict[str, list[float]], loss: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"arm": a, "seed": s, "val_crystal_bleu": c, "val_bleu": 10.0, "val_loss": nll}
            for a in crystal for s, (c, nll) in enumerate(zip(crystal[a], loss[a]))]
    return budget.arm_summary(pd.DataFrame(rows), list(crystal))


def test_the_rule_takes_a_crystal_bleu_lead_only_beyond_both_seed_ranges() -> None:
    loss = {"a": [3.0, 3.0], "b": [2.9, 2.9], "c": [3.1, 3.1]}
    # a leads b by 0.9; ranges 0.4 and 0.6: a wins on CrystalBLEU, although b has the lower loss
    winner, why = budget.decide(_summary({"a": [2.0, 2.4], "b": [1.0, 1.6], "c": [0.0, 0.1]}, loss))
    assert winner == "a" and "leads b by 0.90" in why
    # a leads b by 0.5 but b's range is 1.0: a tie, the lowest mean loss (b) wins
    winner, why = budget.decide(_summary({"a": [2.0, 2.4], "b": [1.2, 2.2], "c": [0.0, 0.1]}, loss))
    assert winner == "b" and "tie" in why
    winner, _ = budget.decide(_summary({"a": [2.0, 2.4], "b": [1.2, 2.2], "c": [0.0, 0.1]},
                                       {**loss, "c": [2.0, 2.0]}))
    assert winner == "c"  # the loss decides among every compared arm
    with pytest.raises(ValueError, match="two or more seeds"):
        budget.decide(_summary({"a": [2.0], "b": [1.0]}, {"a": [3.0], "b": [3.0]}))


def test_the_summary_table_names_the_winner() -> None:
    rows = [{"arm": a, "seed": s, "val_crystal_bleu": c, "val_bleu": 12.0, "val_loss": nll}
            for a, cs, nll in (("e64-all-3ep", (0.5, 0.7), 3.0), ("e64-all-3ep-lr1e-2", (0.6, 0.9), 2.9))
            for s, c in zip((42, 1), cs)]
    text = budget.summary_markdown(pd.DataFrame(rows))
    assert "| e64-all-3ep | 2 | 0.60 (0.50-0.70) | 0.20 | 12.00 | 3.000 |" in text
    assert "Winner: **e64-all-3ep-lr1e-2**: a tie on CrystalBLEU" in text  # lead 0.15 < range 0.30: lower loss

