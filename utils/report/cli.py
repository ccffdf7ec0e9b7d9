"""``python -m utils.report``: every result table printed from the files the runs wrote, and the
Markdown blocks of the README and the docs rewritten from committed files (``--write``).

It reads the main run (``plots/``, ``checkpoints/``) and, when they exist, the word-vocabulary run
(``--word-run``) and the study-settings run (``--study-run``); it saves what the tables need into
``plots/`` (``training_epochs.csv``: every epoch of every model under both vocabularies, from the
``_last.pt`` checkpoints; ``vocabulary_comparison.csv``; ``study_settings.csv`` and
``study_settings_epochs.csv``), so a fresh clone without the runs prints the same tables from those
files. ``--write`` reads committed files only and writes only the blocks between markers
(``utils.report.blocks``); ``--check`` says which files differ from what they would render.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from utils.files import save_csv
from utils.paths import project_path
from utils.report.blocks import stale_documents, write_documents
from utils.report.tables import (
    budget_markdown,
    comparison_markdown,
    epoch_history,
    epoch_times,
    epoch_times_markdown,
    headline_markdown,
    recipe_markdown,
    results_markdown,
    stopping_markdown,
    timings_markdown,
    vocabulary_comparison,
)
from utils.studies.budget import check_markdown
from utils.studies.budget import summary_markdown as budget_summary_markdown
from utils.studies.recurrent import markdown as recurrent_markdown
from utils.studies.seeds import claims_markdown
from utils.studies.seeds import summary_markdown as seed_summary_markdown


def run_timings(run: Path) -> dict[str, float]:
    """A run's ``timings.json``, with the stages that ran apart in ``<run>/scored/`` (a word run's
    03-05, scored on the BPE run's functions) added and the total summed."""
    timings = json.loads((run / "timings.json").read_text())
    if (run / "scored" / "timings.json").exists():
        scored = json.loads((run / "scored" / "timings.json").read_text())
        timings = {**{k: v for k, v in timings.items() if k != "total"},
                   **{k: v for k, v in scored.items() if k != "total"},
                   "total": timings.get("total", 0.0) + scored.get("total", 0.0)}
    return timings


def _runs_epochs(checkpoint_dir: str | Path, models: Sequence[str], vocabulary: str,
                 saved: pd.DataFrame | None) -> pd.DataFrame:
    """A run's epochs from its checkpoints, or, where they are gone (a fresh clone), the rows of
    ``vocabulary`` in the saved ``training_epochs.csv``."""
    history = epoch_history(checkpoint_dir, models, vocabulary)
    if history.empty and saved is not None:
        history = saved[saved["vocabulary"] == vocabulary].reset_index(drop=True)
    return history


def _kept(table: pd.DataFrame | None, path: Path) -> pd.DataFrame | None:
    """``table`` saved to ``path`` for a fresh clone; when the run that makes it is gone (None), what
    ``path`` holds from an earlier report (None if nothing)."""
    if table is not None and not table.empty:
        save_csv(table, path)
        return table
    return pd.read_csv(path) if path.exists() else None


def _study_settings(run: Path, plots: Path) -> None:
    """Print the study-settings run's table and stopping epochs, saving both into ``plots/`` (or
    reading them back from there when the run's folder is gone)."""
    fresh = pd.read_csv(run / "plots" / "results.csv") if (run / "plots" / "results.csv").exists() else None
    results = _kept(fresh, plots / "study_settings.csv")
    if results is None:
        return
    history = None if fresh is None else epoch_history(run / "checkpoints", list(dict.fromkeys(fresh["model"])), "word")
    history = _kept(history, plots / "study_settings_epochs.csv")
    print("## Study settings (test split)\n\n" + results_markdown(results) + "\n")
    if history is not None:
        print("## Study settings: when each model stopped\n\n" + stopping_markdown(epoch_times(history)) + "\n")


def _print_studies(plots: Path) -> None:
    """The studies' tables, from their committed CSVs."""
    if (plots / "recipe_study.csv").exists():
        recipes = pd.read_csv(plots / "recipe_study.csv")
        print("## Recipe study (validation split)\n\n" + recipe_markdown(recipes) + "\n")
    if (plots / "budget_study.csv").exists():
        budget = pd.read_csv(plots / "budget_study.csv")
        print("## Budget study (validation split)\n\n" + budget_markdown(budget) + "\n")
        if "seed" in budget:
            print("## Budget study: the compared arms over their seeds\n\n" + budget_summary_markdown(budget) + "\n")
    if (plots / "budget_check.csv").exists():
        print("## The budget study's winner on the other models\n\n"
              + check_markdown(pd.read_csv(plots / "budget_check.csv")) + "\n")
    if (plots / "recurrent_study.csv").exists():
        print("## Recurrent study (validation split)\n\n"
              + recurrent_markdown(pd.read_csv(plots / "recurrent_study.csv")) + "\n")
    if (plots / "seed_study.csv").exists():
        seeds = pd.read_csv(plots / "seed_study.csv")
        print("## Seeds (test split)\n\n" + seed_summary_markdown(seeds) + "\n\n" + claims_markdown(seeds) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the marked blocks of the README and docs from committed files, nothing else")
    parser.add_argument("--check", action="store_true", help="exit 1 if a marked block differs from its files")
    parser.add_argument("--plots", default="plots", help="the main run's plots folder")
    parser.add_argument("--checkpoints", default="checkpoints", help="the main run's checkpoints")
    parser.add_argument("--timings", default="runs/full/timings.json")
    parser.add_argument("--vocabulary", default="bpe", help="the main run's vocabulary")
    parser.add_argument("--word-run", default="runs/full-word",
                        help="the word-vocabulary run (plots/, checkpoints/, timings.json inside)")
    parser.add_argument("--study-run", default="runs/study-small",
                        help="the study-settings run (plots/results.csv and checkpoints/ inside)")
    parser.add_argument("--models", nargs="+", default=["rnn", "lstm", "attention", "copy", "transformer", "reviewer"],
                        help="whose epochs go into training_epochs.csv (the reviewer's too: it trains in the main job)")
    args = parser.parse_args(argv)
    if args.write or args.check:
        found = write_documents() if args.write else stale_documents()
        print(f"{'rewrote' if args.write else 'out of date'}: {', '.join(found) or 'nothing'}")
        return 1 if args.check and found else 0

    plots, word, study = project_path(args.plots), project_path(args.word_run), project_path(args.study_run)
    results = pd.read_csv(plots / "results.csv")
    print("## Results, short (README)\n\n" + headline_markdown(results) + "\n")
    print("## Results\n\n" + results_markdown(results) + "\n")
    saved_epochs = pd.read_csv(plots / "training_epochs.csv") if (plots / "training_epochs.csv").exists() else None
    history = _runs_epochs(args.checkpoints, args.models, args.vocabulary, saved_epochs)
    timings = {}
    if project_path(args.timings).exists():
        timings[args.vocabulary] = json.loads(project_path(args.timings).read_text())
    elif (plots / "timings.json").exists():  # the main job's, committed by make release
        timings[args.vocabulary] = json.loads((plots / "timings.json").read_text())["stages"]
    fresh = None
    if (word / "plots" / "results.csv").exists():
        fresh = vocabulary_comparison(results, pd.read_csv(word / "plots" / "results.csv"))
        if (word / "timings.json").exists():
            timings = {"word": run_timings(word), **timings}
    comparison = _kept(fresh, plots / "vocabulary_comparison.csv")
    if comparison is not None:
        print("## Word vs BPE\n\n" + comparison_markdown(comparison) + "\n")
        history = pd.concat([_runs_epochs(word / "checkpoints", args.models, "word", saved_epochs), history],
                            ignore_index=True)
    if not history.empty:
        save_csv(history, plots / "training_epochs.csv")
        print("## Seconds per epoch\n\n" + epoch_times_markdown(epoch_times(history)) + "\n")
    _study_settings(study, plots)
    if timings:
        print("## Stage times\n\n" + timings_markdown(timings) + "\n")
    _print_studies(plots)
    return 0
