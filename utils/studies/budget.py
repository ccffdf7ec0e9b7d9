"""What does the main job's budget buy best? Model size, training pairs and epochs compared at the
budget ``make main`` gives a model, judged on the validation split.

    python -m utils.studies budget --arms h96-all-2ep --threads 1 &     # side by side, one core each:
    python -m utils.studies budget --arms e64-half-6ep --threads 1 &    # one process per arm
    python -m utils.studies budget --arms e64-all-6ep                   # twice the main job's budget
    python -m utils.studies budget --arms e64-all-3ep --start-from runs/full/checkpoints  # make main's
    python -m utils.studies budget --collect                          # the table of the finished arms

Every arm trains one model (``--model``, default attention) with the main job's recipe
(``--params``, default ``params/full.yaml``: 4,000-piece batches, the learning rate falling linearly
to zero over the arm's epochs, bf16 where native) and changes what ``ARMS`` says: the embedding and
hidden sizes, the number of training pairs (the first ones of the processed training split), the
epochs (the schedule's horizon) or the peak rate. Each arm's budget is about the main job's for
that model (``main``: ``params/full.yaml``'s epochs over every pair); ``x2`` arms have twice it.
After training, the best checkpoint (lowest validation loss) decodes the validation docstrings
greedily, and the arm's row (validation BLEU and loss, training seconds, how training ended) goes to
``<out>/<arm>/result.json`` and the table of finished arms to ``--csv``; an interrupted arm resumes.
The test split is never read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from utils.config import make_config
from utils.data.processed import model_lengths
from utils.files import save_csv
from utils.studies.screening import ScreeningData, load_study_data, train_and_validate

# arm -> what it changes from the parameter file ("train_size": pairs, None for all of them;
# "budget": the arm's compute against the main job's, for the table)
ARMS: dict[str, dict[str, Any]] = {
    # the main job's attention model (params/full.yaml): 64/128, every pair, 3 epochs from 6e-3
    "e64-all-3ep": {"embed_dim": 64, "hidden_dim": 128, "train_size": None, "epochs": 3, "budget": "main"},
    # wider, fewer epochs: an epoch at 96/192 costs about 1.5 of 64/128's
    "h96-all-2ep": {"embed_dim": 96, "hidden_dim": 192, "train_size": None, "epochs": 2, "budget": "main"},
    # half the pairs, twice the epochs
    "e64-half-6ep": {"embed_dim": 64, "hidden_dim": 128, "train_size": 12453, "epochs": 6, "budget": "main"},
    # the peak rate
    "e64-all-3ep-lr1e-2": {"embed_dim": 64, "hidden_dim": 128, "train_size": None, "epochs": 3, "lr": 0.01,
                           "budget": "main"},
    # twice the main job's budget, the schedule stretched to it
    "e64-all-6ep": {"embed_dim": 64, "hidden_dim": 128, "train_size": None, "epochs": 6, "budget": "x2"},
}
STUDY_KEYS = ("embed_dim", "hidden_dim", "train_size", "epochs", "lr")


def run_arm(arm: str, model: str, params: dict, data: ScreeningData, out: Path, start_from: Path | None = None) -> dict:
    """Train ``model`` as ``arm`` says (resuming ``out/<arm>``), decode the validation split; its row.
    With ``start_from``, an arm that has no checkpoint yet takes that folder's (the main job's, for the
    arm that repeats it): the trainer resumes it only if it was trained with exactly the arm's settings."""
    if start_from is not None and not (out / arm).exists():
        (out / arm).mkdir(parents=True)
        for kind in ("best", "last"):
            shutil.copyfile(start_from / f"{model}_{kind}.pt", out / arm / f"{model}_{kind}.pt")
    changes = {k: v for k, v in ARMS[arm].items() if k != "budget"}
    settings = {**params, **changes}
    train = data.train[: settings["train_size"]] if settings["train_size"] else data.train
    config = make_config(model, **settings, src_vocab_size=len(data.src), trg_vocab_size=len(data.trg),
                         **model_lengths(params["data_dir"]))
    arm_data = ScreeningData(data.src, data.trg, train, data.valid, data.valid_rows)
    figures = train_and_validate(config, arm_data, out / arm)
    best = torch.load(out / arm / f"{config.name}_best.pt", map_location="cpu", weights_only=True)
    row = {"arm": arm, "budget": ARMS[arm]["budget"], **{k: settings[k] for k in STUDY_KEYS},
           "train_pairs": len(train), "lr_schedule": config.lr_schedule, "precision": config.precision,
           "threads": torch.get_num_threads(), **figures,
           "train_seconds": sum(h["epoch_seconds"] for h in best["history"]),
           "ended_by": best.get("ended_by", "")}
    (out / arm / "result.json").write_text(json.dumps(row, indent=1))
    return row


def table(out: Path) -> pd.DataFrame:
    """Every finished arm's row under ``out``, in ``ARMS`` order."""
    return pd.DataFrame([json.loads(p.read_text()) for a in ARMS if (p := out / a / "result.json").is_file()])


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--model", default="attention")
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/budget")
    p.add_argument("--csv", default="plots/budget_study.csv")
    p.add_argument("--collect", action="store_true", help="train nothing: the table of the finished arms")
    p.add_argument("--start-from", type=Path, help="a run's checkpoint folder the arms start from (e.g. "
                   "runs/full/checkpoints for e64-all-3ep, the main job's model: not trained twice)")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.collect:
        save_csv(table(Path(args.out)), args.csv)
        return 0
    params, data = load_study_data(p, args.params, args.threads)
    out = Path(args.out)
    for arm in args.arms:
        row = run_arm(arm, args.model, params, data, out, args.start_from)
        print(json.dumps(row), flush=True)
        save_csv(table(out), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
