"""Training throughput by batching and precision, side by side: the same training pairs cut into
batches of sequences (``batch_size``) or of target pieces (``batch_tokens``), in fp32 or bf16.

    python -m utils.bench.batching --data-dir data/processed --params params/full.yaml \\
        --model attention --setting 64:fp32 --setting 64:bf16 --setting 12000t:bf16

A setting is ``<n>:<precision>``: ``<n>`` sequences per batch, or ``<n>t`` target positions per
batch. Every setting trains its own copy of the model (same initial weights) on the same shuffled
pairs, the settings taking turns batch by batch (``time_interleaved``) until each has seen them all,
so all see the same machine load. One JSON line per model: target pieces per second per setting
and each one's ratio to the first.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Iterable

import torch

from utils.bench.training import _fast_loss, _fresh_model, time_interleaved, training_stepper
from utils.config import make_config
from utils.data.batch import bucketed_batches, encode_pairs
from utils.data.processed import load_split, load_vocabs, model_lengths
from utils.precision import resolve_precision
from utils.run_notebooks import load_params


def parse_setting(text: str) -> tuple[int, int, str]:
    """"64:fp32" -> (64, 0, "fp32"); "12000t:bf16" -> (0, 12000, "bf16"): (batch_size, batch_tokens,
    precision)."""
    size, _, precision = text.partition(":")
    tokens = size.endswith("t")
    number = size[:-1] if tokens else size
    if not number.isdigit() or int(number) < 1 or precision not in ("fp32", "bf16"):
        raise ValueError(f"Bad setting {text!r}: write <sequences>:<precision> or <pieces>t:<precision>, "
                         "with precision fp32 or bf16 (e.g. 64:fp32, 12000t:bf16).")
    return (0, int(number), precision) if tokens else (int(number), 0, precision)


def benchmark_batching(name: str, params: dict, data_dir: str, settings: list[str], pairs: int,
                       seed: int = 0) -> dict:
    """One model's record: target pieces per second under each setting, on the same ``pairs``
    shuffled training pairs of ``data_dir``, the settings taking turns batch by batch."""
    src, trg = load_vocabs(data_dir)
    cfg = make_config(name, **{**params, **model_lengths(data_dir)}, src_vocab_size=len(src),
                      trg_vocab_size=len(trg))
    rows = load_split(data_dir, "train")
    random.Random(seed).shuffle(rows)
    examples = encode_pairs(rows[:pairs], src, trg, with_copy=True, retrieval_input=cfg.retrieval_input)
    device = torch.device("cpu")
    steppers, batch_lists = [], []
    for text in settings:
        batch_size, batch_tokens, precision = parse_setting(text)
        batches = list(bucketed_batches(examples, batch_size or 64, shuffle=True, seed=1, batch_tokens=batch_tokens))
        steppers.append(training_stepper(_fresh_model(cfg, device), _fast_loss, cfg.teacher_forcing, device,
                                         batches[0], precision=resolve_precision(precision, device)))
        batch_lists.append(batches)
    timings = time_interleaved(steppers, batch_lists)
    rates = [t["tokens"] / t["seconds"] for t in timings]
    record: dict = {"model": name, "pairs": len(examples), "threads": torch.get_num_threads(),
                    "embed_dim": cfg.embed_dim, "hidden_dim": cfg.hidden_dim}
    for text, batches, rate in zip(settings, batch_lists, rates):
        record[text] = {"batches": len(batches), "target_pieces_per_s": round(rate, 1),
                        "ratio_to_first": round(rate / rates[0], 2)}
    return record


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--params", default="params/full.yaml", help="model sizes and recipe (YAML)")
    p.add_argument("--model", action="append", help="a model (repeatable; default attention)")
    p.add_argument("--setting", action="append", help="<n>:<precision> or <n>t:<precision> (repeatable)")
    p.add_argument("--pairs", type=int, default=1280, help="training pairs each setting trains on")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(list(argv) if argv is not None else None)
    settings = args.setting or ["64:fp32", "64:bf16"]
    try:
        for text in settings:
            resolve_precision(parse_setting(text)[2], "cpu")  # bf16 on a CPU without it: refused here
        params = load_params(args.params)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.model or ["attention"]:
        print(json.dumps(benchmark_batching(name, params, args.data_dir, settings, args.pairs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
