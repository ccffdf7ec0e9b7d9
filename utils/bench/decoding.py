"""Timing greedy decoding of the test split: batched against one sequence at a time
(``benchmark_decoding``), or batched in fp32 and in bf16 (``benchmark_decoding_precision``), on the
trained checkpoint when there is one. The command line is ``utils.bench.steps --decode``.
"""
from __future__ import annotations

import time

import torch

from utils.bench.training import _fresh_model, examples_macs
from utils.checkpoint import load_model
from utils.config import Seq2SeqConfig
from utils.data.batch import Example, encode_pairs, make_batch
from utils.data.processed import load_split, load_vocabs
from utils.decoding.search import decode_examples, greedy_decode, source_length_batches
from utils.models import Seq2SeqModel
from utils.paths import project_path
from utils.precision import autocast


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
