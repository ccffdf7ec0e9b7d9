"""Does bf16 keep the quality of fp32? Train the same models both ways and compare.

    python -m utils.studies.precision                      # attention and lstm, params/full.yaml
    python -m utils.studies.precision --models lstm --epochs 1 --out runs/precision-smoke

Each model trains with the full parameters (``params/full.yaml``: same seed, same epochs, same
data) once in fp32 and once in bf16, into ``<out>/<precision>/`` (resumable: an interrupted study
continues where it stopped). Every epoch's teacher-forced validation loss comes from the training
history; the best epoch's checkpoint is decoded greedily on the test split in the precision it was
trained in, for BLEU, token accuracy and syntax validity. The table (one row per model, precision
and epoch; the test metrics on the row of the epoch that was kept) is written to ``--csv``.
On a CPU without native bf16 arithmetic, bf16 is emulated (same rounding, several times slower).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from utils.config import make_config, model_names, resolve_device
from utils.data.batch import encode_pairs
from utils.data.processed import load_split, load_vocabs
from utils.evaluation.results import decode_split, evaluation_setup
from utils.files import save_csv
from utils.metrics import evaluate_outputs
from utils.precision import EMULATE_ENV, cpu_has_bf16
from utils.run_notebooks import load_params
from utils.training.trainer import train_model

COLUMNS = ["model", "precision", "epoch", "train_loss", "val_loss", "epoch_seconds", "kept",
           "test_bleu", "test_token_accuracy", "test_syntax_valid", "test_distinct_outputs"]


def _train(name: str, precision: str, params: dict, out: Path, device: str) -> list[dict]:
    """Train one model in one precision (or resume it); its history."""
    src_vocab, trg_vocab = load_vocabs(params["data_dir"])
    train_rows, valid_rows = load_split(params["data_dir"], "train"), load_split(params["data_dir"], "valid")
    train = encode_pairs(train_rows, src_vocab, trg_vocab, with_copy=True)
    valid = encode_pairs(valid_rows, src_vocab, trg_vocab, with_copy=True)
    config = make_config(name, **{**params, "precision": precision},
                         src_vocab_size=len(src_vocab), trg_vocab_size=len(trg_vocab))
    result = train_model(config, train, valid, src_vocab, trg_vocab, checkpoint_dir=out / precision, device=device)
    return result.history


def _test_metrics(name: str, precision: str, params: dict, out: Path, device: str) -> dict:
    """Greedy test-split metrics of the kept checkpoint, decoded in the precision it trained in."""
    rows, loaded, _ = evaluation_setup(params["data_dir"], out / precision, [name], device, log=lambda _: None,
                                       precision=precision)
    decoded = decode_split(loaded[name], rows)
    refs = [r["code_tokens"] for r in rows]
    docs = [r["docstring_tokens"] for r in rows]
    m = evaluate_outputs(decoded.hypotheses, refs, docs, loaded[name].trg_vocab)
    return {"test_bleu": m["bleu"], "test_token_accuracy": m["token_accuracy"],
            "test_syntax_valid": m["syntax_valid"], "test_distinct_outputs": m["distinct_outputs"],
            "kept_epoch": loaded[name].best_epoch}


def study(models: Sequence[str], params: dict, out: Path, device: str = "auto") -> pd.DataFrame:
    """The comparison table (see the module docstring)."""
    records = []
    for name in models:
        for precision in ("fp32", "bf16"):
            history = _train(name, precision, params, out, device)
            test = _test_metrics(name, precision, params, out, device)
            for h in history:
                kept = h["epoch"] == test["kept_epoch"]
                records.append({"model": name, "precision": precision, "epoch": h["epoch"],
                                "train_loss": h["train_loss"], "val_loss": h["val_loss"],
                                "epoch_seconds": h["epoch_seconds"], "kept": kept,
                                **({k: test[k] for k in COLUMNS if k in test} if kept else {})})
    return pd.DataFrame(records).reindex(columns=COLUMNS)


def verdict(table: pd.DataFrame) -> list[str]:
    """Per model: bf16's kept validation loss against fp32's, and the test BLEU of both."""
    lines = []
    for name, rows in table[table["kept"]].groupby("model", sort=False):
        by = rows.set_index("precision")
        ratio = by.loc["bf16", "val_loss"] / by.loc["fp32", "val_loss"] - 1
        lines.append(f"{name}: kept validation loss fp32 {by.loc['fp32', 'val_loss']:.4f}, bf16 "
                     f"{by.loc['bf16', 'val_loss']:.4f} ({ratio:+.2%}); test BLEU fp32 "
                     f"{by.loc['fp32', 'test_bleu']:.2f}, bf16 {by.loc['bf16', 'test_bleu']:.2f}")
    return lines


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="attention,lstm", help="models to compare (default: attention,lstm)")
    p.add_argument("--params", default="params/full.yaml", help="parameter file (default: params/full.yaml)")
    p.add_argument("--epochs", type=int, default=0, help="override the parameter file's epochs (0: keep)")
    p.add_argument("--out", default="runs/precision", help="checkpoint folder (default: runs/precision)")
    p.add_argument("--csv", default="plots/precision_comparison.csv", help="where the table goes")
    p.add_argument("--device", default="auto")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        models = model_names(args.models)
        params = load_params(args.params)
        resolve_device(args.device)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    if args.epochs < 0:
        p.error(f"--epochs must be 0 (keep the parameter file's) or more, got {args.epochs}")
    if args.epochs:
        params["epochs"] = args.epochs
    emulated = not cpu_has_bf16() and os.environ.get(EMULATE_ENV) != "1"
    if emulated:
        print("note: this CPU has no native bf16 arithmetic; bf16 is emulated (same rounding, slower)", flush=True)
        os.environ[EMULATE_ENV] = "1"
    try:
        table = study(models, params, Path(args.out), args.device)
    finally:
        if emulated:
            del os.environ[EMULATE_ENV]
    path = save_csv(table, args.csv)
    print("\n".join(verdict(table)))
    print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
