"""Why do the RNN and the LSTM ignore their docstrings? Three ways of reading it, at the main job's
recipe, on the validation split.

    python -m utils.studies recurrent --seeds 42 --threads 1 &   # side by side, one core and one seed
    python -m utils.studies recurrent --seeds 1 --threads 1 &    # per process
    python -m utils.studies recurrent --collect                  # the table, and what the criterion says

Each model (``--models``, default rnn and lstm) trains with ``--params``' recipe (default
``params/full.yaml``) in every ``recurrent_variant`` (``utils.models.recurrent``): "original" (the
encoder's final state starts the decoder, as in the original study), "reverse" (the docstring read
backwards, Sutskever et al. 2014) and "context" (the final state also fed to every decoder step and
to the output layer, Cho et al. 2014). After training, the best checkpoint decodes the validation
docstrings greedily; the docstring gap (teacher-forced validation loss with other rows' docstrings
minus with their own, ``utils.evaluation.source_reliance``) says how much the model uses what it
reads. One row per seed, model and variant goes to ``<out>/seed-<s>/<model>-<variant>/result.json``
and ``--csv``; an interrupted run resumes, a finished one is scored again, and a row already in
``--csv`` whose folder is gone (a run of an earlier session, on another machine) is kept, not
trained again. The test split is never read.

The criterion, fixed before the runs were read (:func:`reads_docstring`, :func:`choose`): a variant
reads its docstring when, in every seed, its validation docstring gap is at least ``MIN_GAP`` nats
and at least ``MIN_DISTINCT`` % of its greedy outputs are distinct.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from utils.config import RECURRENT_MODELS, RECURRENT_VARIANTS, make_config
from utils.data.processed import model_lengths
from utils.evaluation.markdown import cell, markdown_table
from utils.files import save_csv
from utils.studies.screening import ScreeningData, found_seeds, load_study_data, provenance, train_and_validate

SEEDS = (42, 1)
MIN_GAP = 0.05  # nats: the docstring lowers the validation loss by at least this much
MIN_DISTINCT = 20.0  # % of greedy validation outputs that differ from one another


def run_dir(out: Path, seed: int, model: str, variant: str) -> Path:
    """Where one seed's run of one model and variant keeps its checkpoints and its row."""
    return out / f"seed-{seed}" / f"{model}-{variant}"


def run_variant(model: str, variant: str, seed: int, params: dict, data: ScreeningData, out: Path,
                source: dict | None = None) -> dict:
    """Train ``model`` as ``variant`` with ``seed`` (resuming its folder), decode the validation split; its
    row, with ``source`` (``screening.provenance``: the commit and parameter file)."""
    folder = run_dir(out, seed, model, variant)
    config = make_config(model, **{**params, "recurrent_variant": variant, "seed": seed}, src_vocab_size=len(data.src),
                         trg_vocab_size=len(data.trg), **model_lengths(params["data_dir"]))
    figures = train_and_validate(config, data, folder)
    row = {"model": model, "variant": variant, "seed": seed, "lr": config.lr, "epochs": config.epochs,
           "train_seconds": figures["epoch_seconds"] * figures["epochs_run"],
           **{k: v for k, v in figures.items() if k != "model"}, **(source or {})}
    (folder / "result.json").write_text(json.dumps(row, indent=1))
    return row


KEY = ["model", "variant", "seed"]


def table(out: Path, kept: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every finished run's row under ``out``, and the rows of ``kept`` (the CSV so far: runs of an
    earlier session whose folders are gone) for runs with no folder here; by model, variant
    (``RECURRENT_VARIANTS`` order), seed."""
    seeds = found_seeds(out)
    rows = pd.DataFrame([json.loads(p.read_text()) for m in RECURRENT_MODELS for v in RECURRENT_VARIANTS
                         for s in seeds if (p := run_dir(out, s, m, v) / "result.json").is_file()])
    if kept is not None and not kept.empty:
        here = [run_dir(out, r.seed, r.model, r.variant).exists() for r in kept.itertuples()]
        rows = pd.concat([rows, kept[[not h for h in here]]], ignore_index=True)
    if rows.empty:
        return rows
    order = {(m, v): i for i, (m, v) in enumerate((m, v) for m in RECURRENT_MODELS for v in RECURRENT_VARIANTS)}
    rank = [order[(m, v)] for m, v in zip(rows["model"], rows["variant"])]
    return rows.assign(_rank=rank).sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank")


def reads_docstring(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and variant: its seeds, the smallest docstring gap and share of distinct outputs over
    them, its mean validation loss, and ``reads`` (the criterion: in every seed, a gap of at least
    ``MIN_GAP`` and at least ``MIN_DISTINCT`` % distinct outputs)."""
    g = table.groupby(["model", "variant"], sort=False)
    out = pd.DataFrame({"seeds": g["seed"].count(), "min_gap": g["val_source_gap"].min(),
                        "min_distinct": g["val_distinct_outputs"].min(), "mean_loss": g["val_loss"].mean(),
                        "mean_bleu": g["val_bleu"].mean(), "mean_crystal_bleu": g["val_crystal_bleu"].mean()})
    out["reads"] = (out["min_gap"] >= MIN_GAP) & (out["min_distinct"] >= MIN_DISTINCT)
    return out


def choose(verdicts: pd.DataFrame, models: Sequence[str] = RECURRENT_MODELS) -> tuple[str, str]:
    """The variant both models take (one choice for the two, so they stay comparable): of the variants
    that read the docstring, the one that does so for the most of ``models``, then the lowest validation
    loss averaged over them; "original" when no variant reads it. Returns (variant, the reason)."""
    candidates = []
    for variant in RECURRENT_VARIANTS:
        rows = verdicts.xs(variant, level="variant").reindex(list(models))
        if rows["reads"].fillna(False).any():
            candidates.append((-int(rows["reads"].sum()), float(rows["mean_loss"].mean()), variant))
    if not candidates:
        return "original", "no variant reads its docstring by the criterion"
    n, loss, variant = min(candidates)
    readers = [m for m in models if verdicts.loc[(m, variant), "reads"]]
    return variant, (f"{variant} reads the docstring for {' and '.join(readers)} ({-n} of {len(models)}), "
                     f"mean validation loss {loss:.3f}")


def markdown(table: pd.DataFrame) -> str:
    """``plots/recurrent_study.csv``: each run's row, then per model and variant whether it reads its
    docstring by the study's criterion, and the variant chosen."""
    header = ["model", "variant", "seed", "val loss (TF)", "docstring gap", "distinct %", "val BLEU",
              "val CrystalBLEU", "syntax valid %", "train s"]
    rows = [[r["model"], r["variant"], cell(r["seed"], 0), cell(r["val_loss"], 3), cell(r["val_source_gap"], 3),
             cell(r["val_distinct_outputs"], 1), cell(r["val_bleu"], 2), cell(r["val_crystal_bleu"], 2),
             cell(r["val_syntax_valid"], 1), cell(r["train_seconds"], 0)] for r in table.to_dict("records")]
    verdicts = reads_docstring(table)
    summary = [[m, v, cell(r["seeds"], 0), cell(r["min_gap"], 3), cell(r["min_distinct"], 1),
                "yes" if r["reads"] else "no"] for (m, v), r in verdicts.iterrows()]
    text = markdown_table(rows, header) + "\n\n" + markdown_table(
        summary, ["model", "variant", "seeds", "smallest gap", "fewest distinct %", "reads its docstring"])
    if set(RECURRENT_VARIANTS) <= set(table["variant"]):
        text += "\n\nChosen: **{}** ({}).".format(*choose(verdicts))
    return text


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(RECURRENT_MODELS), choices=list(RECURRENT_MODELS))
    p.add_argument("--variants", nargs="+", default=list(RECURRENT_VARIANTS), choices=list(RECURRENT_VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/recurrent")
    p.add_argument("--csv", default="plots/recurrent_study.csv")
    p.add_argument("--collect", action="store_true", help="train nothing: the table of the finished runs")
    args = p.parse_args(list(argv) if argv is not None else None)
    out, csv = Path(args.out), Path(args.csv)
    kept = pd.read_csv(csv) if csv.is_file() else None
    if args.collect:
        found = table(out, kept)
        save_csv(found, args.csv)
        verdicts = reads_docstring(found)
        print(verdicts.round(3).to_string())
        if set(RECURRENT_VARIANTS) <= set(found["variant"]):
            print("chosen: {} ({})".format(*choose(verdicts, args.models)))
        return 0
    params, data = load_study_data(p, args.params, args.threads)
    source = provenance(args.params)  # the commit the process started at
    done = set() if kept is None else {tuple(k) for k in kept[KEY].itertuples(index=False)}
    for seed in args.seeds:
        for model in args.models:
            for variant in args.variants:
                if (model, variant, seed) in done and not run_dir(out, seed, model, variant).exists():
                    continue  # finished in an earlier session: its row is in the CSV
                row = run_variant(model, variant, seed, params, data, out, source)
                print(json.dumps(row), flush=True)
                save_csv(table(out, kept), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
