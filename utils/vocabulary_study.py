"""Which vocabulary? Word against BPE of several sizes, judged on the validation split.

    python -m utils.vocabulary_study                     # word, bpe 2000/4000/8000, bpe 4000 unshared
    python -m utils.vocabulary_study --models attention --settings word bpe:4000

For each setting the full corpus (``params/full.yaml``'s data parameters) is preprocessed into
``<out>/<setting>/data``; each model trains there at a screening size (``--embed-dim``,
``--hidden-dim``, ``--epochs``; the trainer and its early stopping as in notebook 02) and decodes the
**validation** split greedily. Metrics are on tokens (pieces joined back), as in notebook 03. Writes
one row per setting and model to ``--csv``. The test split is never read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from utils.batch import encode_pairs
from utils.config import make_config, model_names
from utils.data import load_split, load_vocabs, model_lengths, preprocess
from utils.evaluation import decode_split, load_trained, save_csv
from utils.metrics import evaluate_outputs
from utils.run_notebooks import load_params
from utils.subwords import known_tokens
from utils.training import train_model

DEFAULT_SETTINGS = ("word", "bpe:2000", "bpe:4000", "bpe:8000", "bpe:4000:unshared")


def parse_setting(text: str) -> dict:
    """"word", "bpe:<size>" or "bpe:<size>:unshared" -> preprocess arguments."""
    parts = text.split(":")
    if parts == ["word"]:
        return {"vocabulary": "word"}
    if parts[0] == "bpe" and len(parts) in (2, 3) and parts[1].isdigit() and parts[2:] in ([], ["unshared"]):
        return {"vocabulary": "bpe", "bpe_size": int(parts[1]), "bpe_shared": parts[2:] != ["unshared"]}
    raise ValueError(f"Unknown setting {text!r}; use 'word', 'bpe:<size>' or 'bpe:<size>:unshared'.")


def screen(setting: str, models: Sequence[str], params: dict, out: Path, size: dict) -> list[dict]:
    """Preprocess, train and validate every model under one vocabulary setting."""
    data = out / setting.replace(":", "-") / "data"
    started = time.perf_counter()
    manifest = preprocess(out_dir=data, split_sizes=(params["train_size"], params["valid_size"], params["test_size"]),
                          min_freq=params["min_freq"], seed=params.get("seed", 42), **parse_setting(setting))
    prep_seconds = time.perf_counter() - started
    src, trg = load_vocabs(data)
    train = encode_pairs(load_split(data, "train"), src, trg, with_copy=True)
    valid_rows = load_split(data, "valid")
    valid = encode_pairs(valid_rows, src, trg, with_copy=True)
    records = []
    for name in models:
        config = make_config(name, **{**params, **size}, src_vocab_size=len(src), trg_vocab_size=len(trg),
                             **model_lengths(data))
        result = train_model(config, train, valid, src, trg, checkpoint_dir=data.parent / "checkpoints", device="cpu")
        lm = load_trained(data.parent / "checkpoints", [name], "cpu", log=lambda _: None)[name]
        decoded = decode_split(lm, valid_rows)
        m = evaluate_outputs(decoded.hypotheses, [r["code_tokens"] for r in valid_rows],
                             [r["docstring_tokens"] for r in valid_rows], known_tokens(trg))
        best = result.history[result.best_epoch - 1]
        records.append({
            "setting": setting, "model": name, "vocab_size": len(trg),
            "mean_code_symbols": manifest["symbols_per_pair"]["train"]["mean_code"],
            "pairs_within_limits": manifest["pairs_within_limits"], "val_loss": best["val_loss"],
            "val_bleu": m["bleu"], "val_codebleu": m["codebleu"], "val_distinct_outputs": m["distinct_outputs"],
            "val_syntax_valid": m["syntax_valid"], "val_unk_rate": m["unk_rate"],
            "val_copied_identifiers": m["copied_identifiers"], "best_epoch": result.best_epoch,
            "epoch_seconds": sum(h["epoch_seconds"] for h in result.history) / len(result.history),
            "preprocess_seconds": prep_seconds,
        })
    return records


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    p.add_argument("--models", default="attention")
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--hidden-dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="runs/vocabulary")
    p.add_argument("--csv", default="plots/vocabulary_study.csv")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        models = model_names(args.models)
        params = load_params(args.params)
        for s in args.settings:
            parse_setting(s)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    size = {"embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim, "epochs": args.epochs}
    records = []
    for setting in args.settings:
        records += screen(setting, models, params, Path(args.out), size)
        table = pd.DataFrame(records)
        save_csv(table, args.csv)  # after every setting: an interrupted study keeps what it measured
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
