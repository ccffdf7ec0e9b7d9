"""The convergence study: each recipe changes batching, schedule or precision from today's, and a
real run on a tiny corpus writes its row and the table with the time to stop against today's."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from utils.studies import convergence as convergence_study
from utils.studies.convergence import RECIPES, TODAY, table


def test_every_recipe_changes_only_what_today_sets() -> None:
    assert RECIPES["today"] == {}
    for name, change in RECIPES.items():
        assert set(change) <= set(TODAY), name


def test_the_table_puts_each_recipes_time_to_stop_against_todays(tmp_path) -> None:
    for recipe, seconds in (("today", 300.0), ("tokens-plateau", 100.0)):
        (tmp_path / recipe).mkdir()
        (tmp_path / recipe / "result.json").write_text(json.dumps({"recipe": recipe, "seconds_to_stop": seconds}))
    frame = table(tmp_path)
    assert list(frame["recipe"]) == ["today", "tokens-plateau"]
    assert list(frame["speedup_to_stop_vs_today"]) == [1.0, 3.0]


def test_two_recipes_train_on_a_tiny_corpus_until_they_stop(tmp_path, tiny_corpus, monkeypatch, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data_dir": str(tiny_corpus), "embed_dim": 8, "hidden_dim": 16, "num_layers": 1,
                                  "dropout": 0.0, "teacher_forcing": 1.0, "patience": 1}))
    csv, out = tmp_path / "study.csv", tmp_path / "out"
    argv = ["--recipes", "today", "tokens-plateau-fp32", "--model", "rnn", "--params", str(params),
            "--train-size", "40", "--epochs", "2", "--out", str(out), "--csv", str(csv)]
    assert convergence_study.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["recipe"] for r in rows] == ["today", "tokens-plateau-fp32"]
    today, tokens = rows
    assert (today["batch_tokens"], tokens["batch_tokens"], tokens["lr_schedule"]) == (0, 4000, "plateau")
    assert today["train_pairs"] == 40 and 1 <= today["epochs_run"] <= 2 and today["best_val_loss"] > 0
    assert tokens["lr_peak"] == pytest.approx(3e-3)  # 4,000 pieces: the reference batch, the reference rate
    frame = pd.read_csv(csv)
    assert list(frame["recipe"]) == ["today", "tokens-plateau-fp32"]
    assert frame["speedup_to_stop_vs_today"].iloc[0] == 1.0
    assert (out / "today" / "rnn_best.pt").is_file()


def test_an_unknown_recipe_or_a_missing_corpus_stops_with_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        convergence_study.main(["--recipes", "fastest"])
    assert "invalid choice: 'fastest'" in capsys.readouterr().err
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"data_dir": str(tmp_path / "nowhere")}))
    with pytest.raises(SystemExit):
        convergence_study.main(["--params", str(params), "--recipes", "today"])
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
