"""One entry point for the studies (``python -m utils.studies``): the listing, the error for an unknown
name, and the dispatch to each study's ``main`` or to the notebook chain. Nothing is trained here: the
targets are replaced by recorders."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import utils.run_notebooks as run_notebooks
from utils.paths import REPO_ROOT
from utils.studies.__main__ import STUDIES, main

MODULE_STUDIES = [name for name, study in STUDIES.items() if study.module]
CHAINS = [name for name, study in STUDIES.items() if not study.module]
NOTEBOOKS = [str(p) for p in run_notebooks.chain_notebooks()]


def _record(monkeypatch, target, attribute: str = "main", code: int = 0) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(target, attribute, lambda argv: calls.append(list(argv)) or code)
    return calls


@pytest.mark.parametrize("argv", [[], ["--list"]])
def test_the_listing_names_every_study_with_one_line_of_what_it_does(argv, capsys) -> None:
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, study in STUDIES.items():
        assert any(line.split()[:1] == [name] and study.summary in line for line in lines), name
    assert set(MODULE_STUDIES) == {"recipe", "seeds", "vocabulary", "precision", "retrieval", "convergence",
                                  "budget", "recurrent", "guided"}
    assert set(CHAINS) == {"small", "small-word", "full-word", "original", "original-small"}


def test_the_command_lists_and_stops_on_an_unknown_name_with_status_2() -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "utils.studies", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=120)

    listed = run("--list")
    assert listed.returncode == 0 and "original-small" in listed.stdout
    unknown = run("bogus", "--models", "rnn")
    assert unknown.returncode == 2
    assert "unknown study 'bogus'" in unknown.stderr and all(name in unknown.stderr for name in STUDIES)
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize("name", MODULE_STUDIES)
def test_a_study_name_runs_its_module_main_with_the_remaining_arguments(name, monkeypatch) -> None:
    module = importlib.import_module(f"utils.studies.{STUDIES[name].module}")
    calls = _record(monkeypatch, module)
    assert main([name, "--models", "rnn", "--csv", "x.csv"]) == 0
    assert calls == [["--models", "rnn", "--csv", "x.csv"]]


def test_the_recipe_study_without_arguments_makes_both_passes(monkeypatch) -> None:
    """The recipe study's two passes: attention on every lever, then lstm and rnn on study and combined."""
    import utils.studies.recipe as recipe

    calls = _record(monkeypatch, recipe)
    assert main(["recipe"]) == 0
    assert calls == [["--models", "attention"], ["--models", "lstm", "rnn", "--recipes", "study", "combined"]]


def test_a_study_that_fails_returns_its_status(monkeypatch) -> None:
    import utils.studies.recipe as recipe

    calls = _record(monkeypatch, recipe, code=2)
    assert main(["recipe"]) == 2 and len(calls) == 1  # the second pass does not start


@pytest.mark.parametrize("name, params, out", [("small", "params/studies/small.yaml", "runs/small"),
                                               ("original", "params/studies/study.yaml", "runs/study"),
                                               ("original-small", "params/studies/study_small.yaml",
                                                "runs/study-small")])
def test_a_notebook_chain_runs_every_numbered_notebook(name, params, out, monkeypatch) -> None:
    calls = _record(monkeypatch, run_notebooks)
    assert main([name, "--set", "epochs=1"]) == 0
    assert calls == [["--params", params, "--out", out, *NOTEBOOKS, "--set", "epochs=1"]]
    assert (REPO_ROOT / params).is_file()


@pytest.mark.parametrize("name, params", [("small-word", "params/studies/small_word.yaml"),
                                          ("full-word", "params/studies/full_word.yaml")])
def test_a_word_chain_trains_then_scores_on_the_bpe_runs_test_functions(name, params, monkeypatch) -> None:
    calls = _record(monkeypatch, run_notebooks)
    assert main([name]) == 0
    trained = [nb for nb in NOTEBOOKS if Path(nb).name.startswith(("01_", "02_"))]
    scored = [nb for nb in NOTEBOOKS if nb not in trained]
    assert len(trained) == 2 and len(scored) == 3
    assert calls == [["--params", params, "--out", f"runs/{name}", *trained],
                     ["--params", params, "--set", "data_dir=data/processed", "--out", f"runs/{name}/scored",
                      *scored]]
    assert (REPO_ROOT / params).is_file()


def test_a_word_chain_stops_when_training_fails(monkeypatch) -> None:
    calls = _record(monkeypatch, run_notebooks, code=2)
    assert main(["small-word"]) == 2 and len(calls) == 1
