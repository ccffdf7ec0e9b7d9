"""Which training recipe? One lever at a time from the original study's recipe, then the winners
together, judged on the validation split.

    python -m utils.studies.recipe                          # attention: every lever, then "combined"
    python -m utils.studies.recipe --models lstm rnn --recipes study combined   # confirm on other models
    python -m utils.studies.recipe --recipes tf-1.0@12      # a screened recipe trained on, up to 12 epochs

The base recipe is the study's (teacher forcing 0.5, dropout 0.5, no label smoothing, Adam at a
constant learning rate of 1e-3 with weight decay 1e-4, 10,000 training pairs, ``params/full.yaml``'s
vocabulary). Each other recipe changes one lever (``LEVERS``). ``combined`` takes, for every lever,
the value whose teacher-forced validation loss beat the study's recipe by the most, by more than
``LOSS_MARGIN`` (read from ``--csv``, so the levers must have been screened for the first model
first), and keeps the study's value where none did. Every model trains at a screening size
(``--embed-dim``, ``--hidden-dim``, at most ``--epochs``, early stopping on the teacher-forced
validation loss) and decodes the **validation** split greedily; metrics are on tokens as in
notebook 03. One row per recipe and model goes to ``--csv`` after each run, and a finished run is
skipped when the command is run again. The test split is never read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from utils.config import make_config, model_names
from utils.data.processed import model_lengths, preprocess
from utils.files import save_csv
from utils.run_notebooks import load_params
from utils.studies.screening import ScreeningData, baseline_figures, train_and_validate

STUDY: dict[str, Any] = {"teacher_forcing": 0.5, "teacher_forcing_schedule": "constant", "dropout": 0.5,
                         "label_smoothing": 0.0, "lr": 1e-3, "lr_schedule": "constant", "weight_decay": 1e-4,
                         "train_size": 10000}
# lever -> {recipe name: the settings it changes from STUDY}
LEVERS: dict[str, dict[str, dict[str, Any]]] = {
    "teacher forcing": {"tf-1.0": {"teacher_forcing": 1.0},
                        "tf-linear": {"teacher_forcing_schedule": "linear"}},  # 1.0 -> 0.5 over the epochs
    "dropout": {"dropout-0.2": {"dropout": 0.2}},
    "label smoothing": {"smoothing-0.1": {"label_smoothing": 0.1}},
    "learning rate": {"plateau": {"lr_schedule": "plateau"}, "lr-3e-3": {"lr": 3e-3}},
    "weight decay": {"wd-0": {"weight_decay": 0.0}},
    "training pairs": {"all-pairs": {"train_size": None}},
}
RECIPES = ["study", *(name for values in LEVERS.values() for name in values), "combined"]
# How much lower (nats per piece) a lever's validation loss must be for ``combined`` to take it: ten
# times the difference between two runs of the same settings (``plateau``, which never lowered the
# rate, against ``study``: 0.002).
LOSS_MARGIN = 0.02


def split_recipe(text: str) -> tuple[str, int | None]:
    """"tf-1.0" -> ("tf-1.0", None); "tf-1.0@12" -> ("tf-1.0", 12): that recipe trained on up to 12
    epochs, resuming its screening run (how far longer training goes)."""
    name, _, epochs = text.partition("@")
    if name not in RECIPES or (epochs and not (epochs.isdigit() and int(epochs) > 0)):
        raise ValueError(f"Unknown recipe {text!r}; choose from {', '.join(RECIPES)}, optionally with "
                         "'@<epochs>' (e.g. tf-1.0@12).")
    return name, int(epochs) if epochs else None


def lever_of(recipe: str) -> str:
    return next((lever for lever, values in LEVERS.items() if recipe in values), "")


def combined_settings(table: pd.DataFrame, model: str) -> dict[str, Any]:
    """The settings of ``combined``: per lever, the value whose teacher-forced validation loss fell
    furthest below ``study``'s for ``model``, if by more than ``LOSS_MARGIN`` (else the study's value).

    The loss, not greedy BLEU: while the models write a handful of programs for all docstrings, their
    BLEU is those programs' overlap with every reference and ranks noise (a no-op lever came in on
    +0.02 BLEU when BLEU chose; ``combined-v1`` in the committed CSV)."""
    rows = table[table["model"] == model].set_index("recipe")
    missing = [r for r in RECIPES[:-1] if r not in rows.index]
    if missing:
        raise ValueError(f"'combined' needs every lever screened for {model} first; missing in the CSV: "
                         f"{', '.join(missing)}. Run them (the default --recipes) before 'combined'.")
    chosen: dict[str, Any] = {}
    for values in LEVERS.values():
        best = min(values, key=lambda r: rows.loc[r, "val_loss"])
        if rows.loc[best, "val_loss"] < rows.loc["study", "val_loss"] - LOSS_MARGIN:
            chosen.update(values[best])
    return chosen


def recipe_settings(recipe: str, table: pd.DataFrame, first_model: str) -> dict[str, Any]:
    if recipe == "study":
        return dict(STUDY)
    if recipe == "combined":
        return {**STUDY, **combined_settings(table, first_model)}
    lever = lever_of(recipe)
    if not lever:
        raise ValueError(f"Unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}.")
    return {**STUDY, **LEVERS[lever][recipe]}


def prepare(params: dict, train_size: int | None, out: Path) -> Path:
    """The processed corpus with ``train_size`` training pairs (None: all), preprocessed once."""
    data_dir = out / f"data-{train_size or 'all'}"
    if not (data_dir / "manifest.json").exists():
        preprocess(params.get("source", "python"), out_dir=data_dir, max_files=params.get("max_files") or None,
                   split_sizes=(train_size, params["valid_size"], params["test_size"]),
                   min_freq=params["min_freq"], seed=params.get("seed", 42), vocabulary=params["vocabulary"],
                   bpe_size=params.get("bpe_size", 4000), bpe_shared=params.get("bpe_shared", True))
    return data_dir


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=RECIPES)
    p.add_argument("--models", nargs="+", default=["attention"])
    p.add_argument("--combined-from", default="attention", help="the model whose levers choose 'combined'")
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--out", default="runs/recipe")
    p.add_argument("--csv", default="plots/recipe_study.csv")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        models = model_names(" ".join(args.models))
        params = load_params(args.params)
        for r in args.recipes:
            split_recipe(r)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    csv = Path(args.csv)
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["recipe", "model"])
    size = {"embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim, "epochs": args.epochs,
            "patience": args.patience, "teacher_forcing_decay_epochs": args.epochs}
    out = Path(args.out)
    loaded: dict[Path, ScreeningData] = {}
    for recipe in args.recipes:
        for name in models:
            if ((table["recipe"] == recipe) & (table["model"] == name)).any():
                print(f"[{recipe}] {name}: in {csv} already, skipped")
                continue
            base, epochs = split_recipe(recipe)
            try:
                settings = recipe_settings(base, table, args.combined_from)
            except ValueError as e:
                p.error(str(e))
            data_dir = prepare(params, settings["train_size"], out)
            if data_dir not in loaded:  # read and encode each corpus once, not once per run
                loaded[data_dir] = ScreeningData.load(data_dir)
            data = loaded[data_dir]
            config = make_config(name, **{**params, **size, **settings}, src_vocab_size=len(data.src),
                                 trg_vocab_size=len(data.trg), **model_lengths(data_dir))
            config.epochs = epochs or config.epochs
            figures = train_and_validate(config, data, out / base / "checkpoints")  # "@N" resumes its base
            lever = "longer training" if epochs else (lever_of(base) or base)
            row = {"recipe": recipe, "lever": lever, **settings,
                   "train_size": settings["train_size"] or "all", **figures}
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            save_csv(table, csv)  # after every run: an interrupted study keeps what it measured
            print(f"[{recipe}] {name}: val BLEU {figures['val_bleu']:.2f}, distinct "
                  f"{figures['val_distinct_outputs']:.1f}%, val loss {figures['val_loss']:.3f} "
                  f"(best epoch {figures['best_epoch']} of {figures['epochs_run']})", flush=True)
    table = with_baselines(table, out)
    save_csv(table, csv)
    print(table.round(3).to_string(index=False))
    return 0


def with_baselines(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """``table`` with the retrieval and floor rows (validation split) of every corpus under ``out``
    that it lacks, labelled by the corpus's training pairs as the recipes are."""
    for data_dir in sorted(out.glob("data-*")):
        if not (data_dir / "manifest.json").exists():
            continue
        train_size = data_dir.name.removeprefix("data-")
        sizes = table.get("train_size", pd.Series(dtype=str)).astype(str).str.removesuffix(".0")
        if ((table["model"] == "baseline") & (sizes == train_size)).any():
            continue
        rows = [{**row, "lever": "baseline", "train_size": train_size} for row in baseline_figures(data_dir)]
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    return table


if __name__ == "__main__":
    sys.exit(main())
