"""Does the comparison hold across seeds? The models retrained with other seeds, scored on the test split.

    python -m utils.studies.seeds                                  # rnn, lstm, attention; seeds 42 1 2
    python -m utils.studies.seeds --params params/studies/small.yaml --models rnn lstm attention copy transformer

Every model trains with ``--params``' recipe and its processed corpus (run notebook 01 with those
parameters first); only the seed changes (initial weights, dropout, teacher-forcing draws, batch
order), so the spread is the training's own. The main run's own seed (``seed`` in ``--params``, else
the default 42) is read from the main run's ``checkpoint_dir``, so after the main job the default
``--seeds 42 1 2`` trains two more; other seeds go to ``<out>/seed-<s>/`` (default
``runs/seeds/<params name>/``; a run is resumed, a finished one reused). Each model is decoded
greedily on the **test** split (this is the final comparison, not a choice of settings) and one row
per seed and model goes to ``--csv``, tagged with the parameter file's name: rows of another
parameter file are kept there but neither reused nor summarised. The summary gives mean, standard
deviation, min and max per model, and whether the models rank in the order given by ``--models`` in
every seed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from utils.config import Seq2SeqConfig, make_config, model_names
from utils.data.processed import load_split, model_lengths
from utils.files import save_csv
from utils.run_notebooks import load_params
from utils.studies.screening import ScreeningData, greedy_figures
from utils.training.trainer import train_model

METRICS = ("bleu", "crystal_bleu", "codebleu", "exact_match", "distinct_outputs", "syntax_valid")


def summary(table: pd.DataFrame, models: Sequence[str], metric: str = "bleu") -> pd.DataFrame:
    """Mean, standard deviation, min and max of ``metric`` per model over the seeds, in ``models`` order."""
    grouped = table.groupby("model")[metric]
    out = pd.DataFrame({"seeds": grouped.count(), "mean": grouped.mean(), "std": grouped.std(ddof=1),
                        "min": grouped.min(), "max": grouped.max()})
    return out.reindex([m for m in models if m in out.index])


def ranking_holds(table: pd.DataFrame, models: Sequence[str], metric: str = "bleu") -> dict[int, bool]:
    """Per seed: whether ``metric`` rises strictly along ``models`` (e.g. rnn < lstm < attention)."""
    wide = table.pivot(index="seed", columns="model", values=metric)
    return {int(seed): all(row[a] < row[b] for a, b in zip(models, models[1:])) for seed, row in wide.iterrows()}


def read_table(csv: Path) -> pd.DataFrame:
    """The seed study's CSV so far (empty if there is none); rows written before rows carried their
    parameter file's name get ``params`` "unknown", so they are never taken for any recipe's."""
    table = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["params", "seed", "model"])
    if "params" not in table:
        table["params"] = "unknown"
    return table


def seed_dir(seed: int, params: dict, out: Path) -> Path:
    """Where ``seed``'s checkpoints live: the main run's folder for its own seed, else ``<out>/seed-<s>/``."""
    main_seed = params.get("seed", Seq2SeqConfig.seed)
    if seed == main_seed and params.get("checkpoint_dir"):
        return Path(params["checkpoint_dir"])
    return out / f"seed-{seed}"


def run_seed(seed: int, models: Sequence[str], params: dict, data: ScreeningData, data_dir: Path,
             test_rows: list[dict], out: Path) -> list[dict]:
    records = []
    for name in models:
        config = make_config(name, **{**params, "seed": seed}, src_vocab_size=len(data.src),
                             trg_vocab_size=len(data.trg), **model_lengths(data_dir))
        ckpt = seed_dir(seed, params, out)
        result = train_model(config, data.train, data.valid, data.src, data.trg, checkpoint_dir=ckpt,
                             device=params.get("device", "auto"), progress=False)
        m = greedy_figures(ckpt, name, test_rows, data.trg, data.shared)
        records.append({"seed": seed, "model": name, **{k: m[k] for k in METRICS},
                        "val_loss": result.history[result.best_epoch - 1]["val_loss"],
                        "best_epoch": result.best_epoch, "epochs_run": len(result.history)})
    return records


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["rnn", "lstm", "attention"])
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--out", help="checkpoints of the other seeds (default: runs/seeds/<params name>)")
    p.add_argument("--csv", default="plots/seed_study.csv")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        models = model_names(" ".join(args.models))
        params = load_params(args.params)
        data_dir = Path(params["data_dir"])
        data = ScreeningData.load(data_dir)
        test_rows = load_split(data_dir, "test")
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    csv, recipe = Path(args.csv), Path(args.params).stem
    out = Path(args.out or f"runs/seeds/{recipe}")
    table = read_table(csv)
    for seed in args.seeds:
        done = set(table[(table["params"] == recipe) & (table["seed"] == seed)]["model"])
        todo = [m for m in models if m not in done]
        if todo:
            rows = pd.DataFrame(run_seed(seed, todo, params, data, data_dir, test_rows, out))
            table = pd.concat([table, rows.assign(params=recipe)], ignore_index=True)
            save_csv(table, csv)  # after every seed: an interrupted study keeps what it measured
    table = table[(table["params"] == recipe) & table["seed"].isin(args.seeds) & table["model"].isin(models)]
    print(summary(table, models).round(2).to_string())
    holds = ranking_holds(table, models)
    print(f"{' < '.join(models)} (test BLEU) in every seed: {all(holds.values())} "
          f"({', '.join(f'seed {s}: {h}' for s, h in holds.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
