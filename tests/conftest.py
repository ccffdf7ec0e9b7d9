"""Shared tiny fixtures for the model, decoding, checkpoint and training tests.

Everything is small (a 12-word vocabulary, 16/32-dimensional models, one layer) and seeded, so
that the learning tests take seconds on a CPU and give the same result on every run.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Callable, Sequence

import pytest
import torch

from utils.checkpoint import save_checkpoint
from utils.config import Seq2SeqConfig
from utils.data.batch import Example, bucketed_batches, encode_pairs
from utils.data.tokenizer import tokenize_code
from utils.data.vocabulary import SPECIALS, Vocabulary
from utils.evaluation.decoded_store import decode_models
from utils.evaluation.results import load_trained
from utils.models import Seq2SeqModel, build_model

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
def toy_rows() -> Callable[..., list[dict]]:
    """``toy_rows(n, seed, min_len=3, max_len=8, task="copy")``: the toy pairs as processed rows."""

    def make(n: int, seed: int, min_len: int = 3, max_len: int = 8, task: str = "copy") -> list[dict]:
        return _toy_rows(n, seed, min_len, max_len, task)

    return make


@pytest.fixture(scope="session")
def toy_examples(toy_vocab: Vocabulary) -> Callable[..., list[Example]]:
    """``toy_examples(n, seed, min_len=3, max_len=8, task="copy")``: random sequences and their copy
    (or reverse), built with the copy model's extended ids so that every model can read them."""

    def make(n: int, seed: int, min_len: int = 3, max_len: int = 8, task: str = "copy") -> list[Example]:
        return encode_pairs(_toy_rows(n, seed, min_len, max_len, task), toy_vocab, toy_vocab, with_copy=True)

    return make


@pytest.fixture(scope="session")
def tiny_config(toy_vocab: Vocabulary) -> Callable[..., Seq2SeqConfig]:
    """``tiny_config(model, **overrides)``: 16/32 dimensions, one layer, no dropout, full teacher forcing;
    "rnn:reverse" is the RNN with ``recurrent_variant`` "reverse"."""

    def make(model: str, **overrides) -> Seq2SeqConfig:
        model, _, variant = model.partition(":")
        if variant:
            overrides = {"recurrent_variant": variant, **overrides}
        params = dict(model=model, src_vocab_size=len(toy_vocab), trg_vocab_size=len(toy_vocab),
                      embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=64,
                      max_positions=64, teacher_forcing=1.0, max_src_len=10, max_trg_len=10,
                      batch_size=32, seed=0, precision="fp32")  # exact comparisons hold on every CPU
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


# every model, and two of the recurrent variants ("model:variant", as ``tiny_config`` reads them)
VARIANT_MODELS = ("rnn", "lstm", "attention", "copy", "transformer", "rnn:reverse", "lstm:context")


@pytest.fixture(scope="session")
def trained_models(tiny_config, toy_examples) -> dict[str, Seq2SeqModel]:
    """Every model trained a little (a few dozen steps) on the copy task: outputs are non-trivial
    (neither constant nor perfect), which is what the decoding tests need."""
    examples = toy_examples(160, seed=11)
    models = {}
    for name in VARIANT_MODELS:
        torch.manual_seed(0)
        model = build_model(tiny_config(name))
        train_steps(model, examples, epochs=8, lr=1e-2)
        models[name] = model.eval()
    return models


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A processed corpus of real Python functions (the running environment's first 60 files, BPE of
    300 pieces, 60 / 15 / 15 pairs): for the studies that train and score on processed splits."""
    from utils.data.processed import preprocess

    out = tmp_path_factory.mktemp("tiny_corpus") / "data"
    preprocess("python", out_dir=out, split_sizes=(60, 15, 15), min_freq=1, vocabulary="bpe", bpe_size=300,
               corpus_packages="environment", max_files=60)
    return out


# -- tiny untrained models saved as real checkpoints (evaluation, length penalty, attention analysis)

SOURCES = [
    ("Return the sum of a and b .", "def add(a, b):\n    return a + b\n"),
    ("Return the larger of x and y .", "def larger(x, y):\n    if x > y:\n        return x\n    return y\n"),
    ("Scale values by factor .", "def scale(values, factor):\n    return [v * factor for v in values]\n"),
    ("Return the first item .", "def first(items):\n    return items[0]\n"),
    ("Count the words in text , a long docstring that goes on for quite a number of tokens so that it "
     "falls into the longer bucket of the table .", "def count(text):\n    return len(text.split())\n"),
]


HISTORY = [
    {"epoch": 1, "train_loss": 5.0, "val_loss": 4.5, "val_ppl": math.exp(4.5), "val_token_acc_greedy": 3.0,
     "train_seconds": 1.0, "epoch_seconds": 1.5, "train_tokens_per_s": 100.0},
    {"epoch": 2, "train_loss": 4.0, "val_loss": 4.0, "val_ppl": math.exp(4.0), "val_token_acc_greedy": 6.0,
     "train_seconds": 2.0, "epoch_seconds": 2.5, "train_tokens_per_s": 110.0},
]


@pytest.fixture(scope="session")
def saved_history() -> list[dict]:
    """The training history every checkpoint of ``ckpt_dir`` carries."""
    return HISTORY


@pytest.fixture(scope="session")
def rows() -> list[dict]:
    return [{"docstring_tokens": doc.split(), "code_tokens": tokenize_code(code), "code": code,
             "func_name": code.split("(")[0][4:], "summary": doc} for doc, code in SOURCES]


@pytest.fixture(scope="session")
def vocabs(rows):
    # "b" and "factor" stay out of the target vocabulary, so outputs can hold <UNK>
    src = Vocabulary.build((r["docstring_tokens"] for r in rows), min_freq=1)
    trg = Vocabulary.build(([t for t in r["code_tokens"] if t not in ("b", "factor")] for r in rows), min_freq=1)
    return src, trg


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory, vocabs):
    src, trg = vocabs
    folder = tmp_path_factory.mktemp("ckpt")
    for name in ("rnn", "attention", "copy", "transformer"):
        torch.manual_seed(0)
        config = Seq2SeqConfig(model=name, src_vocab_size=len(src), trg_vocab_size=len(trg), embed_dim=16,
                               hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=32)
        save_checkpoint(folder / f"{name}_best.pt", build_model(config), src, trg, history=HISTORY, best_epoch=2)
    torch.manual_seed(0)  # the reviewer: a Transformer from code to docstring, its vocabularies the other way round
    config = Seq2SeqConfig(model="transformer", src_vocab_size=len(trg), trg_vocab_size=len(src), embed_dim=16,
                           hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=32,
                           direction="code_to_docstring")
    save_checkpoint(folder / "reviewer_best.pt", build_model(config), trg, src, history=HISTORY, best_epoch=2)
    return folder


@pytest.fixture(scope="session")
def loaded(ckpt_dir):
    # fp32 on every CPU ("auto" is bf16 where the CPU has it), so outputs compare exactly
    return load_trained(ckpt_dir, ["rnn", "lstm", "attention", "copy", "transformer"], "cpu", log=lambda s: None,
                        precision="fp32")


@pytest.fixture(scope="session")
def decoded(loaded, rows):
    two = {name: loaded[name] for name in ("rnn", "attention")}
    return decode_models(two, rows, beam_size=2, max_len=12, log=lambda s: None)


@pytest.fixture()
def tiny_word_corpus(tmp_path) -> Path:
    """A processed corpus written here (40 pairs over 8 words, word vocabularies, 24 / 8 / 8 pairs, a
    manifest with its length limits): for the study commands that read a parameter file's data_dir."""
    import json

    folder = tmp_path / "data"
    folder.mkdir()
    words = [f"w{i}" for i in range(8)]
    rows = [{"docstring_tokens": [words[(k + j) % 8] for j in range(3 + k % 4)]} for k in range(40)]
    for r in rows:
        r["code_tokens"] = ["def", "f", "("] + r["docstring_tokens"][:2] + [")", ":"]
    for name, part in (("train", rows[:24]), ("valid", rows[24:32]), ("test", rows[32:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    Vocabulary.build([r["docstring_tokens"] for r in rows], min_freq=1).save(folder / "src_vocab.json")
    Vocabulary.build([r["code_tokens"] for r in rows], min_freq=1).save(folder / "trg_vocab.json")
    (folder / "manifest.json").write_text(json.dumps({"max_lengths": {"src": 10, "trg": 12}}))
    return folder
