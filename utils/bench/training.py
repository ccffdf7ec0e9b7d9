"""Timing training steps, and what the timed work costs.

The fast path (length-bucketed batches, packed encoder, keys projected once, vocabulary projection
over real tokens only) is timed against the models' own training loss (``Seq2SeqModel.loss``) on the same
model (same initial weights) and the same examples (``benchmark_training``), or in fp32 and in bf16
(``benchmark_precision``). Whatever is compared takes turns batch by batch (``time_interleaved``), so
both see the same machine load. Costs are rough counts of multiply-accumulates (``train_macs``) and
this machine's matrix-multiply rate (``matmul_peak_gflops``). The command line is ``utils.bench.steps``.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import torch

from utils.config import Seq2SeqConfig
from utils.data.batch import Batch, Example, bucketed_batches, make_batch
from utils.fast import fast_loss
from utils.models import Seq2SeqModel, build_model
from utils.precision import autocast


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
    """``train_macs`` of the plain loss on ``batches``: the encoder over the real source tokens (a
    packed batch), the decoder, its attention over every source position and the vocabulary
    projection at every padded target position."""
    total = 0.0
    for b in batches:
        (B, S), T = b.src.shape, b.trg_in.size(1)
        total += train_macs(config, int(b.src_lengths.sum()), B * T, S)
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
    return fast_loss(model, batch, teacher_forcing, gen)


def _plain_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float, gen: torch.Generator):
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
    model = _fresh_model(config, device)
    pool, fast_batches = _fast_batches(examples, batch_size, n_batches)
    steppers = [training_stepper(model, _fast_loss, config.teacher_forcing, device, fast_batches[0],
                                 precision=precision)]
    batch_lists: list[list[Batch]] = [fast_batches]
    compare = compare and model_name in ("rnn", "lstm", "attention")
    if compare:  # the reference on the same model (same initial weights), the same examples unsorted
        ref_model = _fresh_model(config, device)
        plain = [make_batch(pool[i : i + batch_size]) for i in range(0, len(pool), batch_size)]
        steppers.append(training_stepper(ref_model, _plain_loss, config.teacher_forcing, device, plain[0],
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
