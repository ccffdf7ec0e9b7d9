"""Shared tiny fixtures for the model, decoding, checkpoint and training tests.

Everything is small (a 12-word vocabulary, 16/32-dimensional models, one layer) and seeded, so
that the learning tests take seconds on a CPU and give the same result on every run.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

import pytest
import torch

from utils.batch import Example, bucketed_batches, encode_pairs
from utils.config import Seq2SeqConfig
from utils.models import Seq2SeqModel, build_model
from utils.vocabulary import SPECIALS, Vocabulary

TOY_WORDS = [f"t{i}" for i in range(12)]

# The tests run tiny tensors: one intra-op thread is as fast unloaded, and many times faster when the
# cores are shared (two threads spin-waiting for each other on a busy 2-core machine cost 10-20x).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_vocab() -> Vocabulary:
    """One vocabulary for both sides of the toy tasks: the specials and 12 words."""
    return Vocabulary(SPECIALS + TOY_WORDS)


def _toy_rows(n: int, seed: int, min_len: int, max_len: int, task: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        src = [rng.choice(TOY_WORDS) for _ in range(rng.randint(min_len, max_len))]
        trg = {"copy": src, "reverse": src[::-1]}[task]
        rows.append({"docstring_tokens": src, "code_tokens": list(trg)})
    return rows


@pytest.fixture(scope="session")
def toy_examples(toy_vocab: Vocabulary) -> Callable[..., list[Example]]:
    """``toy_examples(n, seed, min_len=3, max_len=8, task="copy")``: random sequences and their copy
    (or reverse), built with the copy model's extended ids so that every model can read them."""

    def make(n: int, seed: int, min_len: int = 3, max_len: int = 8, task: str = "copy") -> list[Example]:
        return encode_pairs(_toy_rows(n, seed, min_len, max_len, task), toy_vocab, toy_vocab, with_copy=True)

    return make


@pytest.fixture(scope="session")
def tiny_config(toy_vocab: Vocabulary) -> Callable[..., Seq2SeqConfig]:
    """``tiny_config(model, **overrides)``: 16/32 dimensions, one layer, no dropout, full teacher forcing."""

    def make(model: str, **overrides) -> Seq2SeqConfig:
        params = dict(model=model, src_vocab_size=len(toy_vocab), trg_vocab_size=len(toy_vocab),
                      embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=64,
                      max_positions=64, teacher_forcing=1.0, max_src_len=10, max_trg_len=10,
                      batch_size=32, seed=0)
        params.update(overrides)
        return Seq2SeqConfig(**params)

    return make


def train_steps(model: Seq2SeqModel, examples: Sequence[Example], epochs: int, lr: float = 1e-2,
                batch_size: int = 32, teacher_forcing: float = 1.0, seed: int = 0) -> float:
    """A plain Adam loop over bucketed batches; returns the last batch's per-token loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    per_token = float("nan")
    for epoch in range(epochs):
        for batch in bucketed_batches(examples, batch_size, seed=seed + epoch):
            loss, n = model.loss(batch, teacher_forcing, gen)
            opt.zero_grad(set_to_none=True)
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            per_token = loss.item() / n
    model.eval()
    return per_token


@pytest.fixture(scope="session")
def trainer() -> Callable[..., float]:
    """The plain training loop above, as a fixture."""
    return train_steps


@pytest.fixture(scope="session")
def trained_models(tiny_config, toy_examples) -> dict[str, Seq2SeqModel]:
    """Every model trained a little (a few dozen steps) on the copy task: outputs are non-trivial
    (neither constant nor perfect), which is what the decoding tests need."""
    examples = toy_examples(160, seed=11)
    models = {}
    for name in ("rnn", "lstm", "attention", "copy", "transformer"):
        torch.manual_seed(0)
        model = build_model(tiny_config(name))
        train_steps(model, examples, epochs=8, lr=1e-2)
        models[name] = model.eval()
    return models


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A processed corpus of real Python functions (the running environment's first 60 files, BPE of
    300 pieces, 60 / 15 / 15 pairs): for the studies that train and score on processed splits."""
    from utils.data import preprocess

    out = tmp_path_factory.mktemp("tiny_corpus") / "data"
    preprocess("python", out_dir=out, split_sizes=(60, 15, 15), min_freq=1, vocabulary="bpe", bpe_size=300,
               corpus_packages="environment", max_files=60)
    return out
