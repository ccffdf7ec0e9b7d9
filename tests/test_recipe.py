"""The recipe study: which settings each recipe trains with, how 'combined' picks the winners,
and one real screening run on a tiny corpus."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from utils.paths import project_path
from utils.studies import recipe as recipe_study
from utils.studies.recipe import LEVERS, LOSS_MARGIN, RECIPES, STUDY, combined_settings, recipe_settings


def _table(loss: dict[str, float], model: str = "attention") -> pd.DataFrame:
    return pd.DataFrame([{"recipe": r, "model": model, "val_loss": v} for r, v in loss.items()])


def test_each_lever_recipe_changes_one_setting_of_the_study() -> None:
    empty = _table({})
    assert recipe_settings("study", empty, "attention") == STUDY
    for values in LEVERS.values():
        for name, change in values.items():
            settings = recipe_settings(name, empty, "attention")
            assert {k for k in settings if settings[k] != STUDY[k]} <= set(change) and settings != STUDY
    with pytest.raises(ValueError, match="Unknown recipe 'tf-2'"):
        recipe_settings("tf-2", empty, "attention")


@pytest.mark.parametrize("name", ["studies/study.yaml", "studies/study_small.yaml"])
def test_the_study_parameter_files_hold_the_studys_recipe(name) -> None:
    """`python -m utils.studies original` and `python -m utils.studies original-small` train with every
    setting of STUDY (the recipe the screening starts from), the word vocabulary, up to 25 epochs and the
    three classic models."""
    params = yaml.safe_load(project_path(f"params/{name}").read_text())
    assert {k: params[k] for k in STUDY} == STUDY
    assert params["vocabulary"] == "word" and params["epochs"] == 25
    assert params["models"] == ["rnn", "lstm", "attention"]


@pytest.mark.parametrize("name", ["studies/small.yaml", "studies/small_word.yaml", "studies/full_word.yaml",
                                  "quick.yaml"])
def test_the_other_parameter_files_train_with_the_recipe_of_full_yaml(name) -> None:
    """One shared recipe: the smaller and the word-vocabulary runs change sizes, data or vocabulary,
    never how the models are trained."""
    def recipe(file: str) -> dict:
        params = yaml.safe_load(project_path(f"params/{file}").read_text())
        return {k: params.get(k) for k in ("teacher_forcing", "teacher_forcing_schedule", "dropout",
                                          "label_smoothing", "lr", "lr_schedule", "warmup_steps", "weight_decay",
                                          "batch_size", "batch_tokens", "precision", "per_model")}
    assert recipe(name) == recipe("full.yaml")


def test_combined_takes_the_lowest_loss_of_each_lever_that_beats_the_study_by_the_margin() -> None:
    loss = {r: 5.0 for r in RECIPES[:-1]}
    loss.update({"tf-1.0": 4.5, "tf-linear": 4.2, "dropout-0.2": 5.3, "smoothing-0.1": 5.0, "all-pairs": 4.8,
                 "plateau": 5.0 - LOSS_MARGIN / 2})  # inside the margin: noise, not taken
    settings = recipe_settings("combined", _table(loss), "attention")
    assert settings == {**STUDY, "teacher_forcing_schedule": "linear", "train_size": None}
    # another model's rows do not count
    assert combined_settings(pd.concat([_table(loss), _table({r: 1.0 for r in loss}, "lstm")]), "attention") == {
        "teacher_forcing_schedule": "linear", "train_size": None}


def test_combined_needs_every_lever_screened_first() -> None:
    with pytest.raises(ValueError, match="missing in the CSV: tf-linear"):
        combined_settings(_table({r: 1.0 for r in RECIPES[:-1] if r != "tf-linear"}), "attention")


def test_unknown_recipe_on_the_command_line(capsys) -> None:
    with pytest.raises(SystemExit):
        recipe_study.main(["--recipes", "study", "bogus"])
    assert "Unknown recipe 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe_study.main(["--recipes", "study@0"])
    assert "optionally with '@<epochs>'" in capsys.readouterr().err


def test_a_screening_run_writes_its_row_and_is_skipped_when_run_again(tmp_path, monkeypatch, capsys) -> None:
    """One recipe on a tiny corpus of real Python files: preprocessed once, trained, validated on the
    validation split; the CSV row carries the recipe's settings and validation figures."""
    calls = []
    real_preprocess = recipe_study.preprocess

    def tiny_preprocess(source, **kw):
        calls.append(kw["split_sizes"])
        return real_preprocess(source, **{**kw, "split_sizes": (60, 15, 15), "min_freq": 1, "bpe_size": 300,
                                          "corpus_packages": "environment", "max_files": 60})

    monkeypatch.setattr(recipe_study, "preprocess", tiny_preprocess)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"source": "python", "valid_size": 15, "test_size": 15, "min_freq": 1,
                                  "vocabulary": "bpe", "bpe_size": 300, "max_files": 60}))
    csv = tmp_path / "study.csv"
    argv = ["--recipes", "smoothing-0.1", "--models", "rnn", "--params", str(params), "--embed-dim", "8",
            "--hidden-dim", "16", "--epochs", "1", "--out", str(tmp_path / "out"), "--csv", str(csv)]
    assert recipe_study.main(argv) == 0
    table = pd.read_csv(csv)
    row = table.iloc[0]
    assert (row["recipe"], row["lever"], row["model"], row["label_smoothing"]) == (
        "smoothing-0.1", "label smoothing", "rnn", 0.1)
    assert row["epochs_run"] == 1 and 0 <= row["val_bleu"] <= 100 and row["val_loss"] > 0
    assert calls == [(10000, 15, 15)]
    # the corpus's two baselines on the validation split, scored like the models
    baselines = table[table["model"] == "baseline"].set_index("recipe")
    assert list(baselines.index) == ["retrieval (TF-IDF)", "reference-shuffled (floor)"]
    assert (baselines["train_pairs"] == 60).all() and (baselines["train_size"] == 10000).all()
    assert baselines.loc["reference-shuffled (floor)", "val_distinct_outputs"] == 100.0
    assert recipe_study.main(argv) == 0  # run again: nothing trained, no baseline added twice
    assert "in " in capsys.readouterr().out and len(pd.read_csv(csv)) == 3 and len(calls) == 1
    # "@2": the same recipe trained on to 2 epochs, resuming the 1-epoch run's checkpoint
    longer = [a if a != "smoothing-0.1" else "smoothing-0.1@2" for a in argv]
    assert recipe_study.main(longer) == 0
    row = pd.read_csv(csv).iloc[3]
    assert (row["recipe"], row["lever"], row["epochs_run"]) == ("smoothing-0.1@2", "longer training", 2)
