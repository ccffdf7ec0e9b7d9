"""Time training steps (and decoding) and print one JSON object per model.

    python -m utils.benchmark --synthetic --model attention --batches 20
    python -m utils.benchmark --data-dir data/processed --model lstm --decode

Training throughput is measured side by side, in one run, for the fast path (length-bucketed
batches, packed encoder, keys projected once, vocabulary projection over real tokens only) and for
the straightforward reference in ``utils.naive`` on the same model (same initial weights), the same
examples and the same teacher-forcing ratio. The two take turns batch by batch, so both see the same
machine load. Figures vary with machine load: compare ratios from one run only.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Callable, Iterable, Sequence

import torch

from utils.batch import Batch, Example, bucketed_batches, make_batch
from utils.config import MODEL_NAMES, Seq2SeqConfig, make_config, resolve_device
from utils.models import Seq2SeqModel, build_model


def synthetic_examples(n: int, src_vocab: int, trg_vocab: int, seed: int = 0) -> list[Example]:
    """Source lengths uniform in 5..52 and target lengths in 10..82, <SOS>/<EOS> included."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s, t = rng.randint(5, 52) - 2, rng.randint(10, 82) - 2
        src = [rng.randrange(4, src_vocab) for _ in range(s)]
        trg = [rng.randrange(4, trg_vocab) for _ in range(t)]
        # the copy model's extended ids: source ids read as target ids (same shapes, no OOV)
        out.append(Example(src=src, trg=trg, index=i, src_oov=[],
                           src_ext=[min(x, trg_vocab - 1) for x in src], trg_ext=trg))
    return out


def matmul_peak_gflops(size: int = 1024, repeats: int = 10, trials: int = 5) -> float:
    """This machine's float32 matrix-multiply rate (GFLOP/s), the yardstick for 'peak': the best of
    ``trials`` timings of ``repeats`` [size, size] products (on a shared machine one timing can catch
    another process's load and read low)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def train_macs(config: Seq2SeqConfig, src_tokens: int, trg_tokens: int, mean_src_len: float) -> float:
    """Approximate forward multiply-accumulates of one batch (weight products and attention)."""
    c = config
    E, H, L, V = c.embed_dim, c.hidden_dim, c.num_layers, c.trg_vocab_size
    if c.model in ("rnn", "lstm"):
        g = 1 if c.model == "rnn" else 4
        per_layer = lambda inp: g * (inp + H) * H  # noqa: E731
        rec = per_layer(E) + (L - 1) * per_layer(H)
        return src_tokens * rec + trg_tokens * (rec + H * V)
    if c.model in ("attention", "copy"):
        enc = 2 * (4 * (E + H) * H + (L - 1) * 4 * (2 * H + H) * H) + 2 * H * H  # + keys
        dec = 4 * (E + 3 * H) * H + (L - 1) * 8 * H * H + H * H + mean_src_len * (H + 2 * H)
        return src_tokens * enc + trg_tokens * (dec + (3 * H + E) * V)
    d, ff = E, c.ff_dim
    enc = L * (4 * d * d + 2 * d * ff)
    dec = L * (8 * d * d + 2 * d * ff) + d * V
    return src_tokens * enc + trg_tokens * dec


def examples_macs(config: Seq2SeqConfig, examples: Sequence[Example], trg_tokens: int) -> float:
    """``train_macs`` of ``examples`` (sources with <SOS>/<EOS>) producing ``trg_tokens`` target tokens."""
    src_tokens = sum(len(e.src) + 2 for e in examples)
    return train_macs(config, src_tokens, trg_tokens, src_tokens / max(len(examples), 1))


def reference_macs(config: Seq2SeqConfig, batches: Sequence[Batch]) -> float:
    """``train_macs`` of the straightforward reference on ``batches``: every padded source and target
    position, and for the attention model the keys projected again at every decoder step."""
    total = 0.0
    for b in batches:
        (B, S), T = b.src.shape, b.trg_in.size(1)
        total += train_macs(config, B * S, B * T, S)
        if config.model in ("attention", "copy"):  # keys [B, S, 2H] -> [B, S, H] at T steps, not once
            total += (T - 1) * B * S * 2 * config.hidden_dim * config.hidden_dim
    return total


def training_stepper(model: Seq2SeqModel, loss_fn: Callable, teacher_forcing: float, device: torch.device,
                     warmup: Batch, seed: int = 0) -> Callable[[Batch], tuple[float, int]]:
    """A function that runs one timed optimizer step on a batch and returns (seconds, target tokens).
    One untimed step on ``warmup`` runs first, so allocator and thread-pool start-up are not timed."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    loss, n = loss_fn(model, warmup.to(device), teacher_forcing, gen)
    (loss / n).backward()
    opt.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(batch: Batch) -> tuple[float, int]:
        sync()
        start = time.perf_counter()
        batch = batch.to(device)
        loss, n = loss_fn(model, batch, teacher_forcing, gen)
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start, n

    return step


def time_interleaved(steppers: Sequence[Callable[[Batch], tuple[float, int]]],
                     batch_lists: Sequence[Sequence[Batch]]) -> list[dict]:
    """Step every stepper through its batches, taking turns batch by batch, so that all of them see
    the same machine load; per stepper, total seconds and target tokens."""
    totals = [{"seconds": 0.0, "tokens": 0} for _ in steppers]
    for i in range(max(len(b) for b in batch_lists)):
        for step, batches, total in zip(steppers, batch_lists, totals):
            if i < len(batches):
                seconds, n = step(batches[i])
                total["seconds"] += seconds
                total["tokens"] += n
    return totals


def benchmark_training(model_name: str, examples: list[Example], batch_size: int, n_batches: int,
                       config: Seq2SeqConfig, device: torch.device, compare: bool = True,
                       peak_gflops: float | None = None) -> dict:
    """Fast path vs the straightforward reference on the same examples, in one run."""
    from utils.naive import naive_loss

    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    pool = examples[: batch_size * n_batches]
    fast_batches = list(bucketed_batches(pool, batch_size, shuffle=True, pool_batches=n_batches, seed=1))
    fast_loss = lambda m, b, tf, g: m.loss(b, tf, g)  # noqa: E731
    steppers = [training_stepper(model, fast_loss, config.teacher_forcing, device, fast_batches[0])]
    batch_lists: list[list[Batch]] = [fast_batches]
    compare = compare and model_name in ("rnn", "lstm", "attention")
    if compare:  # the reference on the same model (same initial weights), the same examples unsorted
        torch.manual_seed(config.seed)
        ref_model = build_model(config).to(device)
        plain = [make_batch(pool[i : i + batch_size]) for i in range(0, len(pool), batch_size)]
        steppers.append(training_stepper(ref_model, naive_loss, config.teacher_forcing, device, plain[0]))
        batch_lists.append(plain)
    timings = time_interleaved(steppers, batch_lists)
    fast = timings[0]
    macs = examples_macs(config, pool, fast["tokens"])
    result = {
        "model": model_name,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "batches": len(fast_batches),
        "teacher_forcing": config.teacher_forcing,
        "parameters": model.n_parameters(),
        "train_target_tokens_per_s": round(fast["tokens"] / fast["seconds"], 1),
        "seconds_per_batch": round(fast["seconds"] / len(fast_batches), 4),
        # forward multiply-accumulates x 6: forward, and backward's two products per forward one
        "approx_train_gflops": round(6 * macs / fast["seconds"] / 1e9, 2),
    }
    if peak_gflops:
        result["matmul_peak_gflops"] = round(peak_gflops, 1)
        result["share_of_matmul_peak"] = round(6 * macs / fast["seconds"] / 1e9 / peak_gflops, 3)
    if compare:
        ref = timings[1]
        result["reference_train_target_tokens_per_s"] = round(ref["tokens"] / ref["seconds"], 1)
        result["reference_seconds_per_batch"] = round(ref["seconds"] / len(plain), 4)
        result["speedup_vs_reference"] = round(
            (fast["tokens"] / fast["seconds"]) / (ref["tokens"] / ref["seconds"]), 2)
        # speedup = work ratio x rate ratio: how much less arithmetic, and how much faster it runs
        ref_macs = reference_macs(config, plain)
        result["reference_approx_train_gflops"] = round(6 * ref_macs / ref["seconds"] / 1e9, 2)
        result["work_ratio_vs_reference"] = round(ref_macs / macs, 2)
    return result


def main(argv: Iterable[str] | None = None) -> int:
    """Parse the arguments, time each model, print one JSON line per model; bad arguments exit 2."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODEL_NAMES, action="append",
                   help="model to time (repeatable; default: rnn, lstm, attention)")
    p.add_argument("--batches", type=int, default=20, help="timed training batches per model")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--src-vocab", type=int, default=2300, help="source vocabulary size (synthetic)")
    p.add_argument("--trg-vocab", type=int, default=4700, help="target vocabulary size (synthetic)")
    p.add_argument("--synthetic", action="store_true",
                   help="random batches: source 5-52, target 10-82 tokens with <SOS>/<EOS> (default if no --data-dir)")
    p.add_argument("--data-dir", default=None, help="processed data folder (real training split)")
    p.add_argument("--teacher-forcing", type=float, default=0.5)
    p.add_argument("--no-compare", action="store_true", help="skip the straightforward reference")
    p.add_argument("--decode", action="store_true",
                   help="also time decoding the test split: batched vs one sequence at a time")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(list(argv) if argv is not None else None)
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
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.model or ["rnn", "lstm", "attention"]
    peak = matmul_peak_gflops() if device.type == "cpu" else None

    if args.data_dir:
        from utils.data import load_split, load_vocabs
        from utils.batch import encode_pairs

        try:
            src_vocab, trg_vocab = load_vocabs(args.data_dir)
        except (FileNotFoundError, ValueError) as e:
            p.error(str(e))
        n_src, n_trg = len(src_vocab), len(trg_vocab)
        train_rows = load_split(args.data_dir, "train")
        if args.decode and not load_split(args.data_dir, "test"):
            p.error(f"--decode: the test split in {args.data_dir} is empty (nothing to decode); "
                    "run notebooks/01_preprocess.ipynb with more files")
        base_examples = encode_pairs(train_rows, src_vocab, trg_vocab, with_copy=True)
        random.Random(0).shuffle(base_examples)
    else:
        n_src, n_trg = args.src_vocab, args.trg_vocab
        base_examples = synthetic_examples(args.batches * args.batch_size, n_src, n_trg)

    for name in models:
        # the model's own overrides (the Transformer: full teacher forcing, dropout 0.1), as in training
        cfg = make_config(name, src_vocab_size=n_src, trg_vocab_size=n_trg, teacher_forcing=args.teacher_forcing)
        res = benchmark_training(name, base_examples, args.batch_size, args.batches, cfg, device,
                                 compare=not args.no_compare, peak_gflops=peak)
        res["data"] = "synthetic" if not args.data_dir else args.data_dir
        if args.decode:
            from utils.decoding import benchmark_decoding

            res.update(benchmark_decoding(cfg, args.data_dir, device))
            if peak:
                res["decode_batched_share_of_matmul_peak"] = round(res["decode_batched_approx_gflops"] / peak, 3)
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
