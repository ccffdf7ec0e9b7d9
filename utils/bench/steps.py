"""Time training steps (and decoding) and print one JSON object per model.

    python -m utils.bench.steps --synthetic --model attention --batches 20
    python -m utils.bench.steps --synthetic --compare-precision
    python -m utils.bench.steps --data-dir data/processed --model lstm --decode

Training throughput is measured side by side, in one run, for the fast path (length-bucketed
batches, packed encoder, keys projected once, vocabulary projection over real tokens only) and for
the models' own training loss (``Seq2SeqModel.loss``) on the same model (same initial weights), the same
examples and the same teacher-forcing ratio, in the ``--precision`` asked for. With
``--compare-precision`` the fast path runs in fp32 and in bf16 instead (same initial weights, same
batches). Whatever is compared takes turns batch by batch, so both see the same machine load.
Figures vary with machine load: compare ratios from one run only.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Iterable

import torch

from utils.bench.decoding import benchmark_decoding, benchmark_decoding_precision
from utils.bench.training import (
    benchmark_precision,
    benchmark_training,
    examples_macs,
    matmul_peak_gflops,
    reference_macs,
    synthetic_examples,
    time_interleaved,
    train_macs,
    training_stepper,
)
from utils.config import MODEL_NAMES, RETRIEVAL_SUFFIX, make_config, resolve_device, split_name
from utils.data.batch import Example, encode_pairs
from utils.data.processed import load_split, load_vocabs, model_lengths
from utils.precision import PRECISIONS, resolve_precision

# the timing functions are importable from here too
__all__ = [
    "benchmark_decoding", "benchmark_decoding_precision", "benchmark_precision", "benchmark_training",
    "examples_macs", "matmul_peak_gflops", "reference_macs", "synthetic_examples", "time_interleaved",
    "train_macs", "training_stepper", "main",
]


def _parser() -> argparse.ArgumentParser:
    """The command line's options (this module's docstring is its description)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODEL_NAMES + tuple(m + RETRIEVAL_SUFFIX for m in MODEL_NAMES), action="append",
                   help="model to time (repeatable; default: rnn, lstm, attention)")
    p.add_argument("--batches", type=int, default=20, help="timed training batches per model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--src-vocab", type=int, default=2300, help="source vocabulary size (synthetic)")
    p.add_argument("--trg-vocab", type=int, default=4700, help="target vocabulary size (synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="random batches: source 5-52, target 10-82 tokens with <SOS>/<EOS> (default if no --data-dir)")
    p.add_argument("--data-dir", default=None, help="processed data folder (real training split)")
    p.add_argument("--teacher-forcing", type=float, default=0.5)
    p.add_argument("--no-compare", action="store_true", help="skip timing the plain loss (the reference)")
    p.add_argument("--precision", default="auto", help="fp32, bf16 or auto (see utils/precision.py)")
    p.add_argument("--compare-precision", action="store_true",
                   help="time the fast path in fp32 and in bf16 side by side (instead of against the reference)")
    p.add_argument("--decode", action="store_true",
                   help="also time decoding the test split: batched vs one sequence at a time "
                        "(with --compare-precision: fp32 vs bf16)")
    p.add_argument("--checkpoint-dir", default="checkpoints",
                   help="where --decode finds <model>_best.pt (default: checkpoints; untrained without one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def _checked(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[torch.device, str, str | None]:
    """Stop with one line and exit status 2 on bad arguments; else the resolved device, precision and
    the low precision compared with fp32 (None without --compare-precision)."""
    if args.batches < 1 or args.batch_size < 1:
        p.error("--batches and --batch-size must be at least 1")
    if min(args.src_vocab, args.trg_vocab) < 5:
        p.error("--src-vocab and --trg-vocab must be at least 5 (four special tokens and one word)")
    if not 0.0 <= args.teacher_forcing <= 1.0:
        p.error(f"--teacher-forcing must be between 0 and 1, got {args.teacher_forcing}")
    if args.threads < 0:
        p.error(f"--threads must be 0 (torch's default) or more, got {args.threads}")
    if args.data_dir and args.synthetic:
        p.error("--synthetic and --data-dir exclude each other: pick random batches or the real split")
    if args.decode and not args.data_dir:
        p.error("--decode needs --data-dir (it decodes the real test split)")
    if args.precision not in PRECISIONS:
        p.error(f"--precision {args.precision!r}: use one of fp32, bf16 or auto")
    try:
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        low = resolve_precision("bf16", device) if args.compare_precision else None
    except ValueError as e:
        p.error(str(e))
    return device, precision, low


def _training_examples(p: argparse.ArgumentParser,
                       args: argparse.Namespace) -> tuple[int, int, dict[str, int], dict[str, list[Example]]]:
    """The source and target vocabulary sizes, the models' length settings (a real corpus's limits,
    ``model_lengths``; none for synthetic data) and the examples timed: the real training split
    (shuffled) with --data-dir, else synthetic ones, per retrieval input. A missing data folder (or,
    with --decode, an empty test split) exits 2."""
    if args.data_dir:
        try:
            src_vocab, trg_vocab = load_vocabs(args.data_dir)
            lengths = model_lengths(args.data_dir)
            if args.decode:
                load_split(args.data_dir, "test", required=True)
        except (FileNotFoundError, ValueError) as e:
            p.error(f"--decode: {e}" if "empty" in str(e) else str(e))
        n_src, n_trg = len(src_vocab), len(trg_vocab)
        rows = load_split(args.data_dir, "train")
        random.Random(0).shuffle(rows)
        # each source setting once: the docstring alone, or with the retrieved function ("+retrieval" models)
        base_examples = {r: encode_pairs(rows, src_vocab, trg_vocab, with_copy=True, retrieval_input=r)
                         for r in {make_config(m).retrieval_input for m in args.model or ["rnn"]}}
    else:
        if any(split_name(m)[1] for m in args.model or []):
            p.error("a '+retrieval' model reads each row's retrieved function: give --data-dir, not --synthetic")
        n_src, n_trg, lengths = args.src_vocab, args.trg_vocab, {}
        base_examples = {"none": synthetic_examples(args.batches * args.batch_size, n_src, n_trg)}
    return n_src, n_trg, lengths, base_examples


def _benchmark_model(name: str, args: argparse.Namespace, examples: list[Example], vocab_sizes: tuple[int, int],
                     lengths: dict[str, int], device: torch.device, precision: str, low: str | None,
                     peaks: dict[str, float]) -> dict:
    """One model's JSON record: its training timed (against the reference, or fp32 vs ``low``), then,
    with --decode, its decoding."""
    n_src, n_trg = vocab_sizes
    # the model's own overrides (the Transformer: full teacher forcing, dropout 0.1), as in training, and
    # a real corpus's length limits (the Transformer's position table must hold its longest target)
    cfg = make_config(name, src_vocab_size=n_src, trg_vocab_size=n_trg, teacher_forcing=args.teacher_forcing,
                      **lengths)
    if low:
        res = benchmark_precision(name, examples, args.batch_size, args.batches, cfg, device, low, peaks)
    else:
        res = benchmark_training(name, examples, args.batch_size, args.batches, cfg, device,
                                 compare=not args.no_compare, peak_gflops=peaks.get(precision),
                                 precision=precision)
    res["data"] = "synthetic" if not args.data_dir else args.data_dir
    if args.decode and low:
        res.update(benchmark_decoding_precision(cfg, args.data_dir, device, checkpoint_dir=args.checkpoint_dir,
                                                low=low))
    elif args.decode:
        res.update(benchmark_decoding(cfg, args.data_dir, device, checkpoint_dir=args.checkpoint_dir,
                                      precision=precision))
        if peaks.get(precision):
            res["decode_batched_share_of_matmul_peak"] = round(
                res["decode_batched_approx_gflops"] / peaks[precision], 3)
    return res


def main(argv: Iterable[str] | None = None) -> int:
    """Parse the arguments, time each model, print one JSON line per model; bad arguments exit 2."""
    p = _parser()
    args = p.parse_args(list(argv) if argv is not None else None)
    device, precision, low = _checked(p, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.model or ["rnn", "lstm", "attention"]
    peaks = ({"fp32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype=torch.bfloat16)}
             if device.type == "cpu" else {})
    n_src, n_trg, lengths, base_examples = _training_examples(p, args)
    for name in models:
        examples = base_examples[make_config(name).retrieval_input]
        res = _benchmark_model(name, args, examples, (n_src, n_trg), lengths, device, precision, low, peaks)
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
