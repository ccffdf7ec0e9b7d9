"""Retrieve and edit against the docstring alone, on the validation split: the choice of
``retrieval_input`` in the parameter files (``plots/retrieval_study.csv``).

    python -m utils.studies.retrieval --checkpoints runs/small/checkpoints --run-plots plots

For each model trained both ways (``<model>`` and ``<model>+retrieval``): its best epoch, teacher-forced
validation loss and greedy validation token accuracy (from its checkpoint's history, or, for a model
without a checkpoint there, from ``plots/training_epochs.csv``, which ``utils.report`` saved from the
main run's checkpoints; the ``source`` column says which), and the beam-search BLEU that notebook 03
measured on the first validation rows for its chosen length penalty (``length_penalty.csv`` of
``--run-plots``, else of ``plots/``). The retrieval baseline on the same validation rows closes the table.

With ``--merge`` the tables and heatmaps a run of 03-05 wrote for some models (``--run-plots``) replace
those models' rows in ``plots/``; the baseline rows must agree (same test functions), else nothing is written.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd

from utils.checkpoint import load_checkpoint
from utils.config import MODEL_NAMES, RETRIEVAL_SUFFIX
from utils.data.processed import load_split
from utils.evaluation.baselines import RETRIEVAL_MODEL, retrieval_baseline
from utils.files import save_csv
from utils.paths import REPO_ROOT, project_path

STUDY_CSV = "retrieval_study.csv"
MERGED = ("results.csv", "length_penalty.csv", "attention_stats.csv")


def _shown(path: Path) -> str:
    """A path as the table records it: relative to the repository when inside it."""
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def _training_figures(name: str, checkpoints: Path, epochs_csv: Path) -> dict | None:
    """Best epoch, validation loss and greedy token accuracy of one trained model, and where they came from."""
    path = checkpoints / f"{name}_best.pt"
    if path.is_file():
        history, source = load_checkpoint(path)["history"], _shown(path)
    elif epochs_csv.is_file():
        table = pd.read_csv(epochs_csv)
        table = table[(table["model"] == name) & (table["vocabulary"] == "bpe")]
        history, source = table.to_dict("records"), _shown(epochs_csv)
    else:
        return None
    if not history:
        return None
    best = min(history, key=lambda h: h["val_loss"])
    return {"epochs": len(history), "best_epoch": int(best["epoch"]), "val_loss": best["val_loss"],
            "val_token_acc_greedy": best["val_token_acc_greedy"], "source": source}


def _beam_bleu(name: str, tables: Sequence[Path]) -> tuple[float | None, int | None]:
    """Validation BLEU (and rows) of ``name``'s beam search at its chosen length penalty, no constraint."""
    for path in tables:
        if path.is_file():
            t = pd.read_csv(path)
            t = t[(t["model"] == name) & t["chosen"].astype(bool) & ~t["decoding"].str.contains("syntax")]
            if len(t):
                return float(t["bleu"].iloc[0]), int(t["n"].iloc[0])
    return None, None


def study_table(checkpoints: str | Path, data_dir: str | Path, plots: str | Path = "plots",
                run_plots: str | Path | None = None, models: Sequence[str] = MODEL_NAMES) -> pd.DataFrame:
    """One row per model and retrieval input with figures, then the retrieval baseline's row."""
    plots, checkpoints = project_path(plots), project_path(checkpoints)
    tables = [project_path(run_plots) / "length_penalty.csv"] if run_plots else []
    tables.append(plots / "length_penalty.csv")
    records, rows_scored = [], None
    for model in models:
        pair = []
        for name, retrieval in ((model, "none"), (model + RETRIEVAL_SUFFIX, "top1")):
            figures = _training_figures(name, checkpoints, plots / "training_epochs.csv")
            bleu, n = _beam_bleu(name, tables)
            rows_scored = rows_scored or n
            pair.append(figures and {"model": model, "retrieval_input": retrieval, **figures, "val_beam_bleu": bleu})
        records += pair if all(pair) else []  # only models trained both ways
    if rows_scored:
        valid = load_split(data_dir, "valid", required=True)[:rows_scored]
        base = retrieval_baseline(load_split(data_dir, "train"), valid)
        records.append({"model": RETRIEVAL_MODEL, "retrieval_input": "", "val_beam_bleu": base["bleu"],
                        "source": f"{data_dir} (first {rows_scored} validation rows)"})
    return pd.DataFrame(records)


def merge_run(run_plots: str | Path, plots: str | Path = "plots") -> list[str]:
    """Replace the models of ``run_plots``' tables in ``plots``' (and copy their heatmaps); the models."""
    run_plots, plots = project_path(run_plots), project_path(plots)
    new = pd.read_csv(run_plots / "results.csv")
    old = pd.read_csv(plots / "results.csv")
    trained = new["decode_seconds"].notna()
    base_cols = ["model", "decoding", "bleu", "codebleu", "exact_match", "syntax_valid"]
    if not new[~trained][base_cols].round(6).reset_index(drop=True).equals(
            old[old["decode_seconds"].isna()][base_cols].round(6).reset_index(drop=True)):
        raise ValueError(f"The baseline rows of {run_plots / 'results.csv'} differ from those of "
                         f"{plots / 'results.csv'}: the runs scored other test functions; nothing merged.")
    models = list(dict.fromkeys(new[trained]["model"]))
    for name in MERGED:
        if (run_plots / name).is_file():
            run, main = pd.read_csv(run_plots / name), pd.read_csv(plots / name)
            run = run[run["model"].isin(models)]
            kept = main[~main["model"].isin(models)].reset_index(drop=True)
            at = int(kept["decode_seconds"].isna().idxmax()) if name == "results.csv" else len(kept)
            save_csv(pd.concat([kept.iloc[:at], run, kept.iloc[at:]], ignore_index=True), plots / name)
    if (run_plots / "error_analysis.csv").is_file():
        main = pd.read_csv(plots / "error_analysis.csv", index_col=0)
        run = pd.read_csv(run_plots / "error_analysis.csv", index_col=0)
        save_csv(main.drop(columns=[m for m in models if m in main]).join(run[models]), plots / "error_analysis.csv",
                 index=True)
    for png in run_plots.glob("attention_*.png"):
        if any(png.name.startswith(f"attention_{m}_") for m in models):
            shutil.copy(png, plots / png.name)
    return models


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--plots", default="plots")
    p.add_argument("--run-plots", default=None, help="plots folder of a run of 03-05 for some models")
    p.add_argument("--merge", action="store_true", help="merge --run-plots' tables into --plots first")
    args = p.parse_args(argv)
    if args.merge:
        print("merged:", ", ".join(merge_run(args.run_plots, args.plots)))
    table = study_table(args.checkpoints, args.data_dir, args.plots, args.run_plots)
    save_csv(table, project_path(args.plots) / STUDY_CSV)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
