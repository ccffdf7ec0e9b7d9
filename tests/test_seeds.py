"""The seed study: its summary and claims by hand, and real runs on a tiny corpus (trained seeds,
the recipe's own seed read from shipped weights and checked against the recipe, resuming)."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from utils.studies import seeds as seed_study
from utils.studies.seeds import claims, claims_markdown, summary, summary_markdown


def _table() -> pd.DataFrame:
    bleu = {1: (4.0, 6.0, 9.0), 2: (5.0, 7.0, 8.0), 3: (6.0, 5.0, 10.0)}
    return pd.DataFrame([{"seed": s, "model": m, "decoding": "greedy", "bleu": b, "crystal_bleu": b / 10}
                         for s, values in bleu.items() for m, b in zip(("rnn", "lstm", "attention"), values)])


def test_summary_per_model_and_decoding_in_the_tables_order() -> None:
    table = summary(_table())
    assert list(table.index) == [("rnn", "greedy"), ("lstm", "greedy"), ("attention", "greedy")]
    assert table.loc[("rnn", "greedy")].tolist() == pytest.approx([3, 5.0, 1.0, 4.0, 6.0])
    assert "| rnn | greedy | 3 | 5.00 ± 1.00 (4.00-6.00) | 0.50 ± 0.10 (0.40-0.60) |" in summary_markdown(_table())


def test_a_claim_is_settled_only_when_it_holds_in_every_seed() -> None:
    found = claims(_table()).set_index("claim")
    assert list(found.index) == ["rnn < lstm", "lstm < attention"]  # copy and the Transformer were not run
    assert found.loc["rnn < lstm", "holds"] == 2 and not found.loc["rnn < lstm", "settled"]
    assert found.loc["lstm < attention", "holds"] == 3 and found.loc["lstm < attention", "settled"]
    one = _table()[_table()["seed"] == 3]
    assert not claims(one)["settled"].any()  # one seed settles nothing, whatever it shows
    assert "lstm < attention: not settled (only 1 of the 3 seeds so far)" in claims_markdown(one)
    text = claims_markdown(_table())
    assert "- rnn < lstm: not settled (BLEU greedy 2 of 3, CrystalBLEU greedy 2 of 3)." in text
    assert "- lstm < attention: holds in every seed" in text


def test_the_length_penalty_candidates_are_notebook_03s() -> None:
    import ast

    import papermill as pm

    from utils.paths import project_path

    declared = pm.inspect_notebook(str(project_path("notebooks/03_bleu.ipynb")))
    assert list(seed_study.LENGTH_PENALTIES) == ast.literal_eval(declared["length_penalty"]["default"])


def _params(tmp_path, corpus, **extra) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps({"data_dir": str(corpus), "embed_dim": 8, "hidden_dim": 16, "epochs": 1,
                                "device": "cpu", "tune_examples": 4, **extra}))
    return str(path)


def test_seeds_train_score_both_decodings_and_resume(tiny_corpus, tmp_path, capsys) -> None:
    csv, out = tmp_path / "seeds.csv", tmp_path / "out"
    argv = ["--models", "rnn", "--seeds", "1", "2", "--params", _params(tmp_path, tiny_corpus), "--out", str(out),
            "--csv", str(csv)]
    assert seed_study.main(argv) == 0
    table = pd.read_csv(csv)
    assert sorted(zip(table["seed"], table["decoding"])) == [(1, "beam5+syntax"), (1, "greedy"),
                                                              (2, "beam5+syntax"), (2, "greedy")]
    assert set(table["params"]) == {"tiny"} and table["commit"].notna().all()
    assert set(table.loc[table["decoding"] == "beam5+syntax", "length_penalty"]) <= {2.0, 3.0}
    assert (table["brevity_penalty"] * table["ngram_precision"]).round(6).tolist() == table["bleu"].round(6).tolist()
    assert table[table["decoding"] == "greedy"]["val_loss"].nunique() == 2  # seeds change the training
    assert (out / "seed-2" / "rnn_best.pt").exists() and (out / "seed-2" / "rnn.json").exists()
    assert "| rnn | greedy | 2 |" in capsys.readouterr().out
    (out / "seed-2" / "rnn_best.pt").unlink()  # a finished run is not trained again
    assert seed_study.main(argv) == 0 and len(pd.read_csv(csv)) == 4
    assert seed_study.main([*argv, "--collect"]) == 0 and len(pd.read_csv(csv)) == 4
    # a later machine without the runs' folders keeps the CSV's rows and trains nothing again
    shutil.rmtree(out)
    assert seed_study.main(argv) == 0 and pd.read_csv(csv).equals(table)
    assert not (out / "seed-1" / "rnn_best.pt").exists()


def test_the_recipes_own_seed_is_read_from_the_shipped_weights_never_trained(tiny_corpus, tmp_path, capsys) -> None:
    shipped, out, csv = tmp_path / "shipped", tmp_path / "out", tmp_path / "s.csv"

    def run(study_seed: int, **extra) -> int:
        params = _params(tmp_path, tiny_corpus, **extra)
        return seed_study.main(["--models", "rnn", "--seeds", str(study_seed), "--params", params, "--out", str(out),
                                "--csv", str(csv), "--shipped", str(shipped)])

    assert run(42) == 2  # no shipped weights: never trained in their place
    assert "make release" in capsys.readouterr().err and not shipped.exists() and not out.exists()
    assert run(7) == 0  # trained with seed 7 ...
    shipped.mkdir()
    (out / "seed-7" / "rnn_best.pt").rename(shipped / "rnn_best.pt")
    assert run(42) == 2  # ... is not the recipe's seed 42
    assert "was not trained at this recipe: seed=7 (recipe 42)" in capsys.readouterr().err
    (out / "seed-7" / "rnn.json").unlink()  # the trained run forgotten (its JSON and the CSV's rows)
    csv.unlink()
    assert run(7, seed=7) == 0  # the recipe's own seed: read from shipped/, scored, marked shipped
    table = pd.read_csv(csv)
    assert table["weights"].tolist() == ["shipped", "shipped"] and not (out / "seed-7" / "rnn_best.pt").exists()
