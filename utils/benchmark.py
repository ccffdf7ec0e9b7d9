"""Time training steps (and decoding) and print one JSON object per model.

    python -m utils.benchmark --synthetic --model attention --batches 20
    python -m utils.benchmark --synthetic --compare-precision
    python -m utils.benchmark --data-dir data/processed --model lstm --decode

Training throughput is measured side by side, in one run, for the fast path (length-bucketed
batches, packed encoder, keys projected once, vocabulary projection over real tokens only) and for
the straightforward reference in ``utils.naive`` on the same model (same initial weights), the same
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
import time
from typing import Callable, Iterable, Sequence

import torch

from utils.batch import Batch, Example, bucketed_batches, encode_pairs, make_batch
from utils.checkpoint import load_model
from utils.config import MODEL_NAMES, Seq2SeqConfig, make_config, resolve_device
from utils.data import load_split, load_vocabs
from utils.decoding import decode_examples, greedy_decode, source_length_batches
from utils.models import Seq2SeqModel, build_model
from utils.paths import project_path
from utils.precision import PRECISIONS, autocast, resolve_precision


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


def matmul_peak_gflops(size: int = 1024, repeats: int = 10, trials: int = 5,
                       dtype: torch.dtype = torch.float32) -> float:
    """This machine's matrix-multiply rate (GFLOP/s) in ``dtype``, the yardstick for 'peak': the best
    of ``trials`` timings of ``repeats`` [size, size] products (on a shared machine one timing can
    catch another process's load and read low)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
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
    d, ff = H, c.ff_dim  # the Transformer's width is hidden_dim (its embeddings are hidden_dim wide too)
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
                     warmup: Batch, seed: int = 0, precision: str = "fp32") -> Callable[[Batch], tuple[float, int]]:
    """A function that runs one timed optimizer step on a batch (in a resolved ``precision``) and
    returns (seconds, target tokens). One untimed step on ``warmup`` runs first, so allocator and
    thread-pool start-up are not timed."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    with autocast(precision, device):
        loss, n = loss_fn(model, warmup.to(device), teacher_forcing, gen)
    (loss / n).backward()
    opt.zero_grad(set_to_none=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(batch: Batch) -> tuple[float, int]:
        sync()
        start = time.perf_counter()
        batch = batch.to(device)
        with autocast(precision, device):
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


def _fast_batches(examples: list[Example], batch_size: int, n_batches: int) -> tuple[list[Example], list[Batch]]:
    """The examples timed and the length-bucketed batches the trainer would form of them."""
    pool = examples[: batch_size * n_batches]
    return pool, list(bucketed_batches(pool, batch_size, shuffle=True, pool_batches=n_batches, seed=1))


def _fast_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float, gen: torch.Generator):
    return model.loss(batch, teacher_forcing, gen)


def _fresh_model(config: Seq2SeqConfig, device: torch.device) -> Seq2SeqModel:
    """A model with the initial weights of ``config.seed`` (every timed path starts from the same)."""
    torch.manual_seed(config.seed)
    return build_model(config).to(device)


def _rates(timing: dict, macs: float, peak: float | None) -> tuple[float, float, float | None]:
    """(target tokens/s, approximate GFLOP/s, share of ``peak``) of one timed path."""
    # forward multiply-accumulates x 6: forward, and backward's two products per forward one
    gflops = 6 * macs / timing["seconds"] / 1e9
    return timing["tokens"] / timing["seconds"], gflops, (gflops / peak if peak else None)


def benchmark_training(model_name: str, examples: list[Example], batch_size: int, n_batches: int,
                       config: Seq2SeqConfig, device: torch.device, compare: bool = True,
                       peak_gflops: float | None = None, precision: str = "fp32") -> dict:
    """Fast path vs the straightforward reference on the same examples, in one run and one resolved
    ``precision``."""
    from utils.naive import naive_loss

    model = _fresh_model(config, device)
    pool, fast_batches = _fast_batches(examples, batch_size, n_batches)
    steppers = [training_stepper(model, _fast_loss, config.teacher_forcing, device, fast_batches[0],
                                 precision=precision)]
    batch_lists: list[list[Batch]] = [fast_batches]
    compare = compare and model_name in ("rnn", "lstm", "attention")
    if compare:  # the reference on the same model (same initial weights), the same examples unsorted
        ref_model = _fresh_model(config, device)
        plain = [make_batch(pool[i : i + batch_size]) for i in range(0, len(pool), batch_size)]
        steppers.append(training_stepper(ref_model, naive_loss, config.teacher_forcing, device, plain[0],
                                         precision=precision))
        batch_lists.append(plain)
    timings = time_interleaved(steppers, batch_lists)
    fast = timings[0]
    macs = examples_macs(config, pool, fast["tokens"])
    tokens_per_s, gflops, share = _rates(fast, macs, peak_gflops)
    result = {
        "model": model_name,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "batches": len(fast_batches),
        "teacher_forcing": config.teacher_forcing,
        "parameters": model.n_parameters(),
        "train_target_tokens_per_s": round(tokens_per_s, 1),
        "seconds_per_batch": round(fast["seconds"] / len(fast_batches), 4),
        "approx_train_gflops": round(gflops, 2),
    }
    if peak_gflops:
        result["matmul_peak_gflops"] = round(peak_gflops, 1)
        result["share_of_matmul_peak"] = round(share, 3)
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


def benchmark_precision(model_name: str, examples: list[Example], batch_size: int, n_batches: int,
                        config: Seq2SeqConfig, device: torch.device, low: str = "bf16",
                        peaks: dict[str, float] | None = None) -> dict:
    """The fast path in fp32 and in ``low`` precision (same initial weights, same batches), taking
    turns batch by batch."""
    pool, batches = _fast_batches(examples, batch_size, n_batches)
    steppers = [training_stepper(_fresh_model(config, device), _fast_loss, config.teacher_forcing, device, batches[0],
                                 precision=p) for p in ("fp32", low)]
    timings = time_interleaved(steppers, [batches, batches])
    macs = examples_macs(config, pool, timings[0]["tokens"])
    result: dict = {"model": model_name, "device": str(device), "threads": torch.get_num_threads(),
                    "batch_size": batch_size, "batches": len(batches), "teacher_forcing": config.teacher_forcing}
    for name, timing in zip(("fp32", low), timings):
        peak = (peaks or {}).get(name)
        tokens_per_s, gflops, share = _rates(timing, macs, peak)
        result[f"{name}_train_target_tokens_per_s"] = round(tokens_per_s, 1)
        result[f"{name}_approx_train_gflops"] = round(gflops, 2)
        if peak:
            result[f"{name}_matmul_peak_gflops"] = round(peak, 1)
            result[f"{name}_share_of_matmul_peak"] = round(share, 3)
    result[f"{low}_speedup"] = round(timings[0]["seconds"] / timings[1]["seconds"], 2)
    return result


def _decoding_model(config: Seq2SeqConfig, data_dir: str, device: torch.device,
                    checkpoint_dir: str) -> tuple[Seq2SeqModel, list[Example], str]:
    """The trained ``<checkpoint_dir>/<model>_best.pt`` when there is one (output lengths, and so
    cost, depend on training), else a freshly initialised model; the test examples; which it is."""
    path = project_path(checkpoint_dir) / f"{config.model}_best.pt"
    if path.exists():
        model, src_vocab, trg_vocab, _ = load_model(path, device)
        which = str(path)
    else:
        src_vocab, trg_vocab = load_vocabs(data_dir)
        model = _fresh_model(config, device).eval()
        which = "untrained"
    rows = load_split(data_dir, "test", required=True)
    return model, encode_pairs(rows, src_vocab, trg_vocab, with_copy=True), which


def benchmark_decoding(config: Seq2SeqConfig, data_dir: str, device: torch.device, n: int = 1000,
                       batch_size: int = 250, checkpoint_dir: str = "checkpoints", precision: str = "fp32") -> dict:
    """Sequences per second decoding the test split greedily: batched vs one at a time, each timed
    after one untimed warm-up pass, the two taking turns batch by batch (see ``_decoding_model``)."""
    model, examples, which = _decoding_model(config, data_dir, device, checkpoint_dir)
    examples = examples[:n]
    batches = source_length_batches(examples, batch_size)  # the batches decode_examples forms
    # one untimed pass of each kind first (weight caches, allocator, thread pool), as the training
    # benchmark does: the first batched pass was measured 10-30% slower than the next ones
    decode_examples(model, batches[0], batch_size=batch_size, device=device, precision=precision)
    with autocast(precision, device):
        greedy_decode(model, make_batch(examples[:1]).to(device))
    # The two ways take turns, batch by batch, so that both see the same machine load: each batch
    # is decoded at once, then every 10th of its sequences one at a time (all of them would be slow).
    batched_s = single_s = 0.0
    out_lengths: list[int] = []
    sample = 0
    for chunk in batches:
        start = time.perf_counter()
        hyp = decode_examples(model, chunk, batch_size=batch_size, device=device, precision=precision)
        batched_s += time.perf_counter() - start
        out_lengths += map(len, hyp.tokens)
        singles = chunk[::10]
        start = time.perf_counter()
        with autocast(precision, device):
            for e in singles:
                greedy_decode(model, make_batch([e]).to(device))
        single_s += time.perf_counter() - start
        sample += len(singles)
    steps = sum(out_lengths) + len(out_lengths)  # each generated token and the closing <EOS>
    macs = examples_macs(model.config, examples, steps)
    return {
        "decode_model": which,
        "decode_precision": precision,
        "decode_sequences": len(examples),
        "decode_mean_output_tokens": round(sum(out_lengths) / max(len(examples), 1), 1),
        "decode_batch_size": batch_size,
        "decode_batched_seq_per_s": round(len(examples) / batched_s, 1),
        "decode_single_seq_per_s": round(sample / single_s, 1),
        "decode_speedup": round((len(examples) / batched_s) / (sample / single_s), 1),
        # approximate: weight products and the recurrent models' attention only
        "decode_batched_approx_gflops": round(2 * macs / batched_s / 1e9, 1),
    }


def benchmark_decoding_precision(config: Seq2SeqConfig, data_dir: str, device: torch.device, n: int = 1000,
                                 batch_size: int = 250, checkpoint_dir: str = "checkpoints",
                                 low: str = "bf16") -> dict:
    """Batched greedy decoding of the test split in fp32 and in ``low`` precision, taking turns batch
    by batch after one untimed pass each; also how many outputs the two agree on."""
    model, examples, which = _decoding_model(config, data_dir, device, checkpoint_dir)
    batches = source_length_batches(examples[:n], batch_size)
    precisions = ("fp32", low)
    for p in precisions:
        decode_examples(model, batches[0], batch_size=batch_size, device=device, precision=p)
    seconds = {p: 0.0 for p in precisions}
    outputs: dict[str, list[list[int]]] = {p: [] for p in precisions}
    for chunk in batches:
        for p in precisions:
            start = time.perf_counter()
            hyp = decode_examples(model, chunk, batch_size=batch_size, device=device, precision=p)
            seconds[p] += time.perf_counter() - start
            outputs[p] += hyp.tokens
    count = sum(map(len, batches))
    result = {"decode_model": which, "decode_sequences": count, "decode_batch_size": batch_size}
    for p in precisions:
        result[f"{p}_decode_seq_per_s"] = round(count / seconds[p], 1)
        result[f"{p}_decode_mean_output_tokens"] = round(sum(map(len, outputs[p])) / max(count, 1), 1)
    result[f"{low}_decode_speedup"] = round(seconds["fp32"] / seconds[low], 2)
    same = sum(a == b for a, b in zip(*outputs.values()))
    result[f"{low}_decode_same_output_share"] = round(same / max(count, 1), 3)
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
    if args.precision not in PRECISIONS:
        p.error(f"--precision {args.precision!r}: use one of fp32, bf16 or auto")
    try:
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        low = resolve_precision("bf16", device) if args.compare_precision else None
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.model or ["rnn", "lstm", "attention"]
    peaks = ({"fp32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype=torch.bfloat16)}
             if device.type == "cpu" else {})

    if args.data_dir:
        try:
            src_vocab, trg_vocab = load_vocabs(args.data_dir)
            if args.decode:
                load_split(args.data_dir, "test", required=True)
        except (FileNotFoundError, ValueError) as e:
            p.error(f"--decode: {e}" if "empty" in str(e) else str(e))
        n_src, n_trg = len(src_vocab), len(trg_vocab)
        base_examples = encode_pairs(load_split(args.data_dir, "train"), src_vocab, trg_vocab, with_copy=True)
        random.Random(0).shuffle(base_examples)
    else:
        n_src, n_trg = args.src_vocab, args.trg_vocab
        base_examples = synthetic_examples(args.batches * args.batch_size, n_src, n_trg)

    for name in models:
        # the model's own overrides (the Transformer: full teacher forcing, dropout 0.1), as in training
        cfg = make_config(name, src_vocab_size=n_src, trg_vocab_size=n_trg, teacher_forcing=args.teacher_forcing)
        if low:
            res = benchmark_precision(name, base_examples, args.batch_size, args.batches, cfg, device, low, peaks)
        else:
            res = benchmark_training(name, base_examples, args.batch_size, args.batches, cfg, device,
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
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
