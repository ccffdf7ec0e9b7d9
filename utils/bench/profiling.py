"""Where a training epoch's time goes, per model: the matrix products, the other tensor operations,
the loss, the optimizer, the data, and Python (the per-step loop, autograd's bookkeeping, dispatch).

    python -m utils.bench.profiling --params params/full.yaml            # every model of the file
    python -m utils.bench.profiling --params params/studies/small.yaml --model attention --batches 20

Each model trains ``--batches`` batches of real training pairs (``--data-dir``), batched and in the
precision of the parameter file, twice: once timed by phase with a clock (building the batches, the
forward and backward pass, clipping and the Adam step), once under ``torch.profiler``, which splits
the forward and backward time among the operations that ran (their own time, nested calls apart).
What the operations do not account for is Python's share. The epoch estimate scales the measured
seconds per batch to the training split. Prints one markdown table (shares of a batch's time).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Iterable

import torch
from torch.profiler import ProfilerActivity, profile

from utils.config import make_config, model_names
from utils.data.batch import Batch, bucketed_batches, encode_pairs
from utils.data.processed import load_split, load_vocabs, model_lengths
from utils.evaluation.markdown import markdown_table
from utils.fast import fast_loss
from utils.models import build_model
from utils.precision import autocast, resolve_precision
from utils.run_notebooks import load_params

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_addmm_activation")
LOSS_WORDS = ("log_softmax", "nll_loss", "cross_entropy", "logsumexp")
COLUMNS = ["model", "s / batch", "epoch (s, est.)", "products", "other tensor ops", "loss", "Python & autograd",
           "optimizer", "data"]


def _phases(model: torch.nn.Module, batches: list[Batch], precision: str, teacher_forcing: float,
            profiler: profile | None = None) -> dict[str, float]:
    """Train on ``batches``: seconds in the forward + backward pass and in the optimizer."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    spent = {"forward_backward": 0.0, "optimizer": 0.0}
    for batch in batches:
        t0 = time.perf_counter()
        with autocast(precision, torch.device("cpu")):
            loss, n = fast_loss(model, batch, teacher_forcing, gen)
        (loss / n).backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        spent["forward_backward"] += t1 - t0
        spent["optimizer"] += time.perf_counter() - t1
        if profiler is not None:
            profiler.step()
    return spent


def op_seconds(prof: profile) -> dict[str, float]:
    """The operations' own seconds by kind: products, loss, other tensor operations (``aten::``)."""
    kinds = {"products": 0.0, "loss": 0.0, "other tensor ops": 0.0}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # autograd nodes, custom Functions: Python's bookkeeping around the operations
        seconds = event.self_cpu_time_total / 1e6
        kind = ("products" if event.key in PRODUCTS else
                "loss" if any(w in event.key for w in LOSS_WORDS) else "other tensor ops")
        kinds[kind] += seconds
    return kinds


def profile_model(name: str, params: dict, data_dir: str, n_batches: int) -> dict:
    """One model's row of the table: seconds per batch, the epoch estimate and each part's share."""
    src, trg = load_vocabs(data_dir)
    cfg = make_config(name, **{**params, **model_lengths(data_dir)}, src_vocab_size=len(src),
                      trg_vocab_size=len(trg))
    rows = load_split(data_dir, "train")
    random.Random(0).shuffle(rows)
    examples = encode_pairs(rows, src, trg, with_copy=True, retrieval_input=cfg.retrieval_input)
    precision = resolve_precision(cfg.precision, "cpu")
    t0 = time.perf_counter()
    all_batches = list(bucketed_batches(examples, cfg.batch_size, seed=1, batch_tokens=cfg.batch_tokens))
    data_per_batch = (time.perf_counter() - t0) / len(all_batches)
    batches = all_batches[1 : n_batches + 1]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).train()
    _phases(model, all_batches[:1], precision, cfg.teacher_forcing)  # allocator and threads warmed up
    clock = _phases(model, batches, precision, cfg.teacher_forcing)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = _phases(model, batches, precision, cfg.teacher_forcing, prof)
    ops = op_seconds(prof)
    # shares of the forward + backward time from the profiled pass (the profiler slows it), applied to
    # the clock's pass
    fb = clock["forward_backward"]
    scale = fb / profiled["forward_backward"]
    parts = {k: v * scale for k, v in ops.items()}
    parts["Python & autograd"] = max(0.0, fb - sum(parts.values()))
    parts["optimizer"], parts["data"] = clock["optimizer"], data_per_batch * len(batches)
    total = sum(parts.values())
    per_batch = total / len(batches)
    return {"model": name, "s / batch": round(per_batch, 3), "epoch (s, est.)": round(per_batch * len(all_batches)),
            **{k: f"{100 * v / total:.0f}%" for k, v in parts.items()}}


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params/full.yaml", help="model sizes, batching and precision (YAML)")
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--model", action="append", help="a model (repeatable; default: the file's models)")
    p.add_argument("--batches", type=int, default=10, help="batches profiled per model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        params = load_params(args.params)
        names = model_names(args.model or params["models"])
        load_vocabs(args.data_dir)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [profile_model(name, params, args.data_dir, args.batches) for name in names]
    print(f"{torch.get_num_threads()} threads, {args.batches} batches per model, {args.params}")
    print(markdown_table([[r[c] for c in COLUMNS] for r in rows], COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
