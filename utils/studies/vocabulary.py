"""Which vocabulary? Word against BPE of several sizes, judged on the validation split.

    python -m utils.studies.vocabulary                     # word, bpe 2000/4000/8000, bpe 4000 unshared
    python -m utils.studies.vocabulary --models attention --settings word bpe:4000

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

from utils.config import make_config, model_names
from utils.data.processed import model_lengths, preprocess
from utils.files import save_csv
from utils.run_notebooks import load_params
from utils.studies.screening import ScreeningData, train_and_validate

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
    data_dir = out / setting.replace(":", "-") / "data"
    started = time.perf_counter()
    manifest = preprocess(out_dir=data_dir, split_sizes=(params["train_size"], params["valid_size"],
                                                         params["test_size"]),
                          min_freq=params["min_freq"], seed=params.get("seed", 42), **parse_setting(setting))
    prep_seconds = time.perf_counter() - started
    data = ScreeningData.load(data_dir)
    records = []
    for name in models:
        config = make_config(name, **{**params, **size}, src_vocab_size=len(data.src),
                             trg_vocab_size=len(data.trg), **model_lengths(data_dir))
        figures = train_and_validate(config, data, data_dir.parent / "checkpoints")
        records.append({
            "setting": setting, "vocab_size": len(data.trg),
            "mean_code_symbols": manifest["symbols_per_pair"]["train"]["mean_code"],
            "pairs_within_limits": manifest["pairs_within_limits"], **figures,
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
