"""How fast does a recipe converge? Batching, learning-rate schedule and precision, judged on the
validation split by the loss reached and the training time until early stopping.

    python -m utils.studies.convergence --recipes today tokens-plateau      # one after the other
    python -m utils.studies.convergence --recipes today --threads 1 &       # or side by side,
    python -m utils.studies.convergence --recipes tokens-plateau --threads 1  # one core each

Every recipe trains one model (``--model``, default attention) at ``--params``'s size (default the
screening size, ``params/studies/small.yaml``) on the first ``--train-size`` pairs of the processed training
split, until early stopping (patience from the parameter file) or ``--epochs``, into
``<out>/<recipe>/``; an interrupted run resumes. ``today`` is the recipe of the main job before token
batches and schedules (64 sequences per batch, Adam at a constant 3e-3, fp32); each other recipe
changes batching, schedule or precision (``RECIPES``). A recipe's row (its best validation loss,
epochs, training seconds until the stop, throughput) goes to ``<out>/<recipe>/result.json``, and the
table of every finished recipe to ``--csv``. The test split is never read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import torch

from utils.config import make_config
from utils.files import save_csv
from utils.studies.screening import ScreeningData, load_study_data
from utils.training.trainer import train_model

TODAY: dict[str, Any] = {"batch_size": 64, "batch_tokens": 0, "lr": 3e-3, "lr_schedule": "constant",
                         "warmup_steps": 0, "precision": "fp32"}
# recipe -> what it changes from TODAY. 4,000 target positions hold about 64 functions (the rate stays
# 3e-3, ``LR_REFERENCE_TOKENS``); 8,000 about 128 (the rate grows by sqrt(2)); 16,000 about 256 (by 2).
RECIPES: dict[str, dict[str, Any]] = {
    "today": {},
    "today-bf16": {"precision": "bf16"},
    "tokens-plateau": {"batch_tokens": 4000, "lr_schedule": "plateau", "warmup_steps": 100, "precision": "bf16"},
    "tokens-isqrt": {"batch_tokens": 4000, "lr_schedule": "inverse_sqrt", "warmup_steps": 100, "precision": "bf16"},
    "tokens8k-plateau": {"batch_tokens": 8000, "lr_schedule": "plateau", "warmup_steps": 50, "precision": "bf16"},
    "tokens-plateau-fp32": {"batch_tokens": 4000, "lr_schedule": "plateau", "warmup_steps": 100,
                            "precision": "fp32"},
    "tokens16k-plateau": {"batch_tokens": 16000, "lr_schedule": "plateau", "warmup_steps": 25, "precision": "bf16"},
}


def run_recipe(recipe: str, model: str, params: dict, data: ScreeningData, out: Path) -> dict:
    """Train ``model`` with ``recipe`` (resuming ``out/<recipe>``); its row, also saved as result.json."""
    settings = {**params, **TODAY, **RECIPES[recipe]}
    config = make_config(model, **settings, src_vocab_size=len(data.src), trg_vocab_size=len(data.trg))
    result = train_model(config, data.train, data.valid, data.src, data.trg, checkpoint_dir=out / recipe,
                         device="cpu", progress=False)
    history, best = result.history, result.history[result.best_epoch - 1]
    row = {"recipe": recipe, "model": model, **{k: settings[k] for k in TODAY}, "lr_peak": config.learning_rate,
           "train_pairs": len(data.train), "threads": torch.get_num_threads(), "best_epoch": result.best_epoch,
           "epochs_run": len(history), "stopped_early": len(history) < config.epochs,
           "best_val_loss": best["val_loss"], "best_val_token_acc_greedy": best["val_token_acc_greedy"],
           "train_seconds_to_stop": sum(h["train_seconds"] for h in history),
           "seconds_to_stop": sum(h["epoch_seconds"] for h in history),
           "train_tokens_per_s": sum(h["train_tokens_per_s"] for h in history) / len(history)}
    (out / recipe / "result.json").write_text(json.dumps(row, indent=1))
    return row


def table(out: Path) -> pd.DataFrame:
    """Every finished recipe's row under ``out``, in ``RECIPES`` order, with its time to stop relative
    to ``today``'s (when that has run)."""
    rows = [json.loads(p.read_text()) for r in RECIPES if (p := out / r / "result.json").is_file()]
    frame = pd.DataFrame(rows)
    if "today" in set(frame.get("recipe", [])):
        today = frame.set_index("recipe").loc["today", "seconds_to_stop"]
        frame["speedup_to_stop_vs_today"] = (today / frame["seconds_to_stop"]).round(2)
    return frame


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--model", default="attention")
    p.add_argument("--params", default="params/studies/small.yaml")
    p.add_argument("--train-size", type=int, default=10000, help="training pairs (0: all)")
    p.add_argument("--epochs", type=int, default=15, help="the cap; early stopping should end a run first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/convergence")
    p.add_argument("--csv", default="plots/convergence_study.csv")
    args = p.parse_args(list(argv) if argv is not None else None)
    params, data = load_study_data(p, args.params, args.threads)
    if args.train_size:
        data.train = data.train[: args.train_size]
    params["epochs"] = args.epochs
    out = Path(args.out)
    for recipe in args.recipes:
        row = run_recipe(recipe, args.model, params, data, out)
        print(json.dumps(row), flush=True)
        save_csv(table(out), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
