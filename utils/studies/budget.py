"""What does the main job's budget buy best? Model size, training pairs and epochs compared at the
budget ``make main`` gives a model, judged on the validation split.

    python -m utils.studies budget --seeds 42 --threads 1 &    # the compared arms, side by side:
    python -m utils.studies budget --seeds 1 --threads 1 &     # one core and one seed per process
    python -m utils.studies budget --arms e64-all-6ep --seeds 42          # twice the main job's budget
    python -m utils.studies budget --collect      # the table of the finished runs, and the rule's winner
    python -m utils.studies budget --check runs/full/checkpoints/copy_best.pt   # the winner on another model

Every arm trains one model (``--model``, default attention) with the main job's recipe
(``--params``, default ``params/full.yaml``: 4,000-piece batches, the learning rate falling linearly
to zero over the arm's epochs, bf16 where native) and changes what ``ARMS`` says: the embedding and
hidden sizes, the number of training pairs (the first ones of the processed training split), the
epochs (the schedule's horizon) or the peak rate. Each arm's budget is about the main job's for
that model (``main``: ``params/full.yaml``'s epochs over every pair); ``x2`` arms have twice it.
After training, the best checkpoint (lowest validation loss) decodes the validation docstrings
greedily, and the arm's row (validation BLEU, CrystalBLEU and loss, training seconds, how training ended) goes to
``<out>/seed-<seed>/<arm>/<model>.json`` and the table of finished runs to ``--csv``; an interrupted
arm resumes, and a finished one is decoded and scored again (nothing retrained). Each arm runs with
every seed of ``--seeds``, apart; the ``COMPARED`` arms compete for the main job's recipe by the
rule of :func:`decide`, which ``--collect`` prints. The test split is never read.
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

from utils.checkpoint import load_checkpoint
from utils.config import MODEL_NAMES, make_config
from utils.data.processed import model_lengths
from utils.evaluation.markdown import cell, markdown_table
from utils.files import save_csv
from utils.studies.screening import ScreeningData, found_seeds, load_study_data, provenance, train_and_validate

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
    # a higher peak still: does the lower validation loss of 1e-2 go on? (not compared: see COMPARED)
    "e64-all-3ep-lr1.4e-2": {"embed_dim": 64, "hidden_dim": 128, "train_size": None, "epochs": 3, "lr": 0.014,
                             "budget": "main"},
    # twice the main job's budget, the schedule stretched to it
    "e64-all-6ep": {"embed_dim": 64, "hidden_dim": 128, "train_size": None, "epochs": 6, "budget": "x2"},
}
STUDY_KEYS = ("embed_dim", "hidden_dim", "train_size", "epochs", "lr")
# the arms that compete for the main job's recipe (the wider one and twice the budget are reported, not
# chosen; 1.4e-2 did not fit beside them: an attention arm takes about 30 minutes of a core here)
COMPARED = ("e64-all-3ep", "e64-all-3ep-lr1e-2", "e64-half-6ep")
SEEDS = (42, 1, 2)


def run_arm(arm: str, model: str, params: dict, data: ScreeningData, out: Path, start_from: Path | None = None,
            seed: int = 42, source: dict | None = None) -> dict:
    """Train ``model`` as ``arm`` says with ``seed`` (resuming ``out/seed-<seed>/<arm>``), decode the
    validation split; its row.
    With ``start_from``, an arm that has no checkpoint yet takes that folder's (the main job's, for the
    arm that repeats it): the trainer resumes it only if it was trained with exactly the arm's settings."""
    folder = arm_dir(out, seed, arm)
    if start_from is not None and not folder.exists():
        folder.mkdir(parents=True)
        for kind in ("best", "last"):
            shutil.copyfile(start_from / f"{model}_{kind}.pt", folder / f"{model}_{kind}.pt")
    changes = {k: v for k, v in ARMS[arm].items() if k != "budget"}
    settings = {**params, **changes, "seed": seed}
    train = data.train[: settings["train_size"]] if settings["train_size"] else data.train
    config = make_config(model, **settings, src_vocab_size=len(data.src), trg_vocab_size=len(data.trg),
                         **model_lengths(params["data_dir"]))
    arm_data = ScreeningData(data.src, data.trg, train, data.valid, data.valid_rows, data.shared)
    figures = train_and_validate(config, arm_data, folder)
    best = torch.load(folder / f"{config.name}_best.pt", map_location="cpu", weights_only=True)
    row = {"arm": arm, "seed": seed, "budget": ARMS[arm]["budget"], **{k: settings[k] for k in STUDY_KEYS},
           "train_pairs": len(train), "lr_schedule": config.lr_schedule, "precision": config.precision,
           "threads": torch.get_num_threads(), **figures,
           "train_seconds": sum(h["epoch_seconds"] for h in best["history"]),
           "ended_by": best.get("ended_by", ""), **(source or {})}
    (folder / f"{model}.json").write_text(json.dumps(row, indent=1))
    return row


def arm_dir(out: Path, seed: int, arm: str) -> Path:
    """Where one seed's run of one arm keeps its checkpoints and its row."""
    return out / f"seed-{seed}" / arm


def table(out: Path) -> pd.DataFrame:
    """Every finished run's row under ``out``: the study's model (attention) in ``ARMS`` order, then by
    seed; then the other models' (the winner checked on them, ``MODEL_NAMES`` order)."""
    seeds = found_seeds(out)
    models = ["attention", *(m for m in MODEL_NAMES if m != "attention")]
    return pd.DataFrame([json.loads(p.read_text()) for m in models for a in ARMS for s in seeds
                         if (p := arm_dir(out, s, a) / f"{m}.json").is_file()])


def arm_summary(table: pd.DataFrame, arms: Iterable[str] = COMPARED, model: str = "attention") -> pd.DataFrame:
    """Per arm of ``arms`` found in ``table`` for ``model``: its seeds, the mean, min and max of
    validation CrystalBLEU, and the means of validation BLEU and loss."""
    rows = table[table["arm"].isin(list(arms)) & (table.get("model", model) == model)]
    g = rows.groupby("arm", sort=False)
    out = pd.DataFrame({"seeds": g["seed"].count(), "crystal_mean": g["val_crystal_bleu"].mean(),
                        "crystal_min": g["val_crystal_bleu"].min(), "crystal_max": g["val_crystal_bleu"].max(),
                        "bleu_mean": g["val_bleu"].mean(), "loss_mean": g["val_loss"].mean()})
    out["crystal_range"] = out["crystal_max"] - out["crystal_min"]
    return out.reindex([a for a in arms if a in out.index])


def decide(summary: pd.DataFrame) -> tuple[str, str]:
    """The rule fixed before the runs were read (docs/results.md): the arm with the best mean validation
    CrystalBLEU wins if its lead over the second is larger than both arms' seed ranges; otherwise the arm
    with the lowest mean validation loss wins. Returns (winner, the reason in one sentence)."""
    if len(summary) < 2 or (summary["seeds"] < 2).any():
        raise ValueError("The rule needs two or more compared arms, each with two or more seeds.")
    ranked = summary.sort_values("crystal_mean", ascending=False)
    first, second = ranked.index[0], ranked.index[1]
    lead = ranked.loc[first, "crystal_mean"] - ranked.loc[second, "crystal_mean"]
    ranges = (ranked.loc[first, "crystal_range"], ranked.loc[second, "crystal_range"])
    if lead > max(ranges):
        return first, (f"{first} leads {second} by {lead:.2f} validation CrystalBLEU, more than both seed ranges "
                       f"({ranges[0]:.2f}, {ranges[1]:.2f})")
    winner = summary["loss_mean"].idxmin()
    return winner, (f"a tie on CrystalBLEU ({first} leads {second} by {lead:.2f}, within the seed ranges "
                    f"{ranges[0]:.2f} and {ranges[1]:.2f}): {winner} has the lowest mean validation loss "
                    f"({summary.loc[winner, 'loss_mean']:.3f})")


def summary_markdown(table: pd.DataFrame) -> str:
    """The compared arms of ``plots/budget_study.csv`` over their seeds, and the rule's winner."""
    summary = arm_summary(table)
    rows = [[arm, cell(r["seeds"], 0), f"{r['crystal_mean']:.2f} ({r['crystal_min']:.2f}-{r['crystal_max']:.2f})",
             cell(r["crystal_range"], 2), cell(r["bleu_mean"], 2), cell(r["loss_mean"], 3)]
            for arm, r in summary.iterrows()]
    text = markdown_table(rows, ["arm", "seeds", "val CrystalBLEU mean (min-max)", "seed range", "val BLEU mean",
                                 "val loss mean"])
    if len(summary) >= 2 and (summary["seeds"] >= 2).all():
        text += "\n\nWinner: **{}**: {}.".format(*decide(summary))
    return text


def check_against(checkpoints: Iterable[Path], baseline_dir: Path) -> pd.DataFrame:
    """The winner on the other models: each best checkpoint of ``checkpoints`` (a model trained at the
    winner) against ``<baseline_dir>/<model>_best.pt`` (the same model at the old recipe, the same
    seed): peak rates, seeds and best validation losses, and ``hurt``, a higher validation loss at the
    winner (such a model keeps the old settings through ``per_model``)."""
    rows = []
    for path in checkpoints:
        new = load_checkpoint(path, "cpu")
        name = new["config"]["model"]
        old = load_checkpoint(baseline_dir / f"{name}_best.pt", "cpu")
        loss = {k: c["history"][c["best_epoch"] - 1]["val_loss"] for k, c in (("winner", new), ("old", old))}
        rows.append({"model": name, "recurrent_variant": new["config"].get("recurrent_variant", "original"),
                     "checkpoint": str(path), "lr": new["config"]["lr"], "seed": new["config"]["seed"],
                     "val_loss": loss["winner"], "old_lr": old["config"]["lr"], "old_seed": old["config"]["seed"],
                     "old_val_loss": loss["old"], "hurt": loss["winner"] > loss["old"]})
    return pd.DataFrame(rows)


def check_markdown(check: pd.DataFrame) -> str:
    """``plots/budget_check.csv`` as a table."""
    rows = [[r["model"], r["recurrent_variant"], cell(r["seed"], 0), f"{r['old_lr']:g}", cell(r["old_val_loss"], 3),
             f"{r['lr']:g}", cell(r["val_loss"], 3), "yes" if r["hurt"] else "no"] for r in check.to_dict("records")]
    return markdown_table(rows, ["model", "variant", "seed", "old peak lr", "val loss", "winner's peak lr",
                                 "val loss", "hurt"])


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(COMPARED), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--model", default="attention")
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/budget")
    p.add_argument("--csv", default="plots/budget_study.csv")
    p.add_argument("--collect", action="store_true", help="train nothing: the table of the finished arms")
    p.add_argument("--start-from", type=Path, help="a run's checkpoint folder the arms start from (e.g. "
                   "runs/full/checkpoints for e64-all-3ep, the main job's model: not trained twice)")
    p.add_argument("--check", nargs="+", type=Path, metavar="CHECKPOINT",
                   help="train nothing: these best checkpoints (models trained at the winner) against --against's")
    p.add_argument("--against", type=Path, default=Path("checkpoints"),
                   help="the folder of the same models at the old recipe (default: the shipped weights)")
    p.add_argument("--check-csv", default="plots/budget_check.csv")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.collect:
        found = table(Path(args.out))
        save_csv(found, args.csv)
        summary = arm_summary(found)
        print(summary.round(3).to_string())
        if len(summary) >= 2 and (summary["seeds"] >= 2).all():
            print("winner: {} ({})".format(*decide(summary)))
        return 0
    if args.check:
        check = check_against(args.check, args.against)
        save_csv(check, args.check_csv)
        print(check.drop(columns="checkpoint").round(3).to_string())
        return 0
    params, data = load_study_data(p, args.params, args.threads)
    out, source = Path(args.out), provenance(args.params)  # the commit the process started at
    for seed in args.seeds:
        for arm in args.arms:
            row = run_arm(arm, args.model, params, data, out, args.start_from, seed, source)
            print(json.dumps(row), flush=True)
            save_csv(table(out), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
