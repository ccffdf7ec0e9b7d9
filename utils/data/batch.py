"""Turning token-id pairs into padded batches: the bookkeeping done once, in one place.

A ``Batch`` shifts the target into decoder input and loss target, builds the source mask and
counts real target tokens. ``bucketed_batches`` sorts examples by length inside large shuffled
pools so that a batch carries little padding (the main speed lever on a CPU), and cuts them into
batches of a number of sequences or, as fairseq and JoeyNMT do, of a number of target pieces. A
model whose source is the long side (the reviewer reads code, up to 160 pieces, and writes a
docstring) sorts ``by_source``: by the source's length in steps of ``SOURCE_BUCKET`` pieces, then the
target's. Sorted by the target alone, its batches were 44% source pieces and 56% padding.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from utils.data.vocabulary import EOS, PAD, SOS, UNK, Vocabulary

SOURCE_BUCKET = 32  # sorted ``by_source``: sources within 32 pieces of each other share a bucket, sorted by target


@dataclass
class Example:
    """One docstring/code pair as token ids, without <SOS>/<EOS>; ``index`` is its place in the split.
    A retrieval model's ``src`` goes on after the docstring: the separator, then the retrieved code."""

    src: list[int]
    trg: list[int]
    index: int = 0
    src_oov: list[str] | None = None  # source words outside the target vocabulary (copy model)
    src_ext: list[int] | None = None  # source ids in the copy model's extended target vocabulary
    trg_ext: list[int] | None = None  # target ids with copyable OOV words mapped to extended ids


@dataclass
class Batch:
    """A padded batch. ``src`` = [B, S] with <SOS>/<EOS>; ``trg_in``/``trg_out`` = [B, T]."""

    src: torch.Tensor          # [B, S]
    src_lengths: torch.Tensor  # [B] on CPU (pack_padded_sequence wants it there)
    trg_in: torch.Tensor       # [B, T]  <SOS> y1 .. yn
    trg_out: torch.Tensor      # [B, T]  y1 .. yn <EOS>
    indices: list[int]
    src_ext: torch.Tensor | None = None  # [B, S] extended ids (copy model)
    trg_out_ext: torch.Tensor | None = None  # [B, T]
    n_oov: int = 0

    @property
    def src_mask(self) -> torch.Tensor:
        return self.src != PAD  # [B, S]

    @property
    def n_tokens(self) -> int:
        return int((self.trg_out != PAD).sum())

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.src), self.src_lengths, move(self.trg_in), move(self.trg_out),
                     self.indices, move(self.src_ext), move(self.trg_out_ext), self.n_oov)


def pad_sequences(seqs: Sequence[Sequence[int]], pad: int = PAD) -> torch.Tensor:
    """Right-pad integer sequences into a [len(seqs), max_len] LongTensor."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def make_batch(examples: Sequence[Example]) -> Batch:
    """Collate examples: wrap the source in <SOS>/<EOS>, shift the target by one."""
    src = [[SOS] + e.src + [EOS] for e in examples]
    batch = Batch(
        src=pad_sequences(src),
        src_lengths=torch.tensor([len(s) for s in src], dtype=torch.long),
        trg_in=pad_sequences([[SOS] + e.trg for e in examples]),   # [B, T]
        trg_out=pad_sequences([e.trg + [EOS] for e in examples]),  # [B, T]
        indices=[e.index for e in examples],
    )
    if examples and examples[0].src_ext is not None:
        # <SOS>/<EOS> positions copy onto <PAD>, which is never generated nor scored
        batch.src_ext = pad_sequences([[PAD] + e.src_ext + [PAD] for e in examples])
        batch.trg_out_ext = pad_sequences([e.trg_ext + [EOS] for e in examples])
        batch.n_oov = max(len(e.src_oov or []) for e in examples)
    return batch


def target_positions(example: Example) -> int:
    """The target positions ``example`` takes in a batch: its pieces and <EOS>."""
    return len(example.trg) + 1


def check_batch_tokens(examples: Sequence[Example], batch_tokens: int) -> None:
    """A ValueError naming the setting and the length when one target does not fit ``batch_tokens``."""
    if batch_tokens <= 0 or not examples:
        return
    longest = max(range(len(examples)), key=lambda i: target_positions(examples[i]))
    need = target_positions(examples[longest])
    if need > batch_tokens:
        raise ValueError(f"batch_tokens={batch_tokens} is smaller than the longest target sequence ({need} "
                         f"pieces with <EOS>, pair {examples[longest].index}): set batch_tokens to at least "
                         f"{need}, or to 0 to batch by batch_size sequences.")


def _cut(order: list[int], examples: Sequence[Example], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Cut length-sorted indices into batches: ``batch_size`` sequences each, or with ``batch_tokens``
    as many as fit in that many padded target positions (sequences x the longest target)."""
    if batch_tokens <= 0:
        return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    chunks: list[list[int]] = [[]]
    longest = 0  # the current batch's longest target (the newest pair's, when sorted by target)
    for i in order:
        width = max(longest, target_positions(examples[i]))
        if chunks[-1] and (len(chunks[-1]) + 1) * width > batch_tokens:
            chunks.append([])
            width = target_positions(examples[i])
        chunks[-1].append(i)
        longest = width
    return chunks if chunks[0] else []


def length_key(examples: Sequence[Example], by_source: bool = False) -> Callable[[int], tuple[int, int]]:
    """The bucketing sort key of example ``i``: its (target, source) lengths, or ``by_source`` its
    source's ``SOURCE_BUCKET`` and then its target's length."""
    if by_source:
        return lambda i: (len(examples[i].src) // SOURCE_BUCKET, len(examples[i].trg))
    return lambda i: (len(examples[i].trg), len(examples[i].src))


def batch_indices(
    examples: Sequence[Example],
    batch_size: int,
    shuffle: bool = True,
    pool_batches: int = 50,
    seed: int = 0,
    batch_tokens: int = 0,
    by_source: bool = False,
) -> list[list[int]]:
    """The examples' indices, batch by batch, as ``bucketed_batches`` cuts them."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    check_batch_tokens(examples, batch_tokens)
    idx = list(range(len(examples)))
    key = length_key(examples, by_source)
    if not shuffle:
        return _cut(sorted(idx, key=key), examples, batch_size, batch_tokens)
    rng = random.Random(seed)
    rng.shuffle(idx)
    mean = sum(map(target_positions, examples)) / max(len(examples), 1)
    pool = pool_batches * (max(1, int(batch_tokens / mean)) if batch_tokens > 0 else batch_size)
    chunks: list[list[int]] = []
    for p in range(0, len(idx), pool):
        chunks.extend(_cut(sorted(idx[p : p + pool], key=key), examples, batch_size, batch_tokens))
    rng.shuffle(chunks)
    return chunks


def bucketed_batches(
    examples: Sequence[Example],
    batch_size: int,
    shuffle: bool = True,
    pool_batches: int = 50,
    seed: int = 0,
    batch_tokens: int = 0,
    by_source: bool = False,
) -> Iterator[Batch]:
    """Yield batches of similar lengths: shuffle, cut into pools of ``pool_batches`` batches,
    sort each pool by (target, source) length (``by_source``: source bucket, target), cut into
    batches, shuffle the batch order.

    A batch holds ``batch_size`` sequences, or with ``batch_tokens`` > 0 at most that many target
    positions, padding included (``check_batch_tokens`` first: every target must fit).
    Without ``shuffle`` the order is a plain length sort of the whole split (evaluation).
    """
    for chunk in batch_indices(examples, batch_size, shuffle, pool_batches, seed, batch_tokens, by_source):
        yield make_batch([examples[i] for i in chunk])


def extend_with_source_oov(
    src_tokens: Sequence[str], trg_tokens: Sequence[str] | None, trg_vocab: Vocabulary
) -> tuple[list[int], list[int] | None, list[str]]:
    """Map source words into the target vocabulary extended by this source's OOV words.

    Returns (source ids, target ids, OOV list); OOV word k gets id ``len(trg_vocab) + k``.
    A target word outside the vocabulary that the source contains becomes copyable.
    """
    oov: list[str] = []
    src_ext = []
    for tok in src_tokens:
        i = trg_vocab.stoi.get(tok)
        if i is None:
            if tok not in oov:
                oov.append(tok)
            i = len(trg_vocab) + oov.index(tok)
        src_ext.append(i)
    trg_ext = None
    if trg_tokens is not None:
        trg_ext = []
        for tok in trg_tokens:
            i = trg_vocab.stoi.get(tok)
            if i is None:
                i = len(trg_vocab) + oov.index(tok) if tok in oov else UNK
            trg_ext.append(i)
    return src_ext, trg_ext, oov


# The separator between the docstring and the retrieved code (``retrieval_input`` "top1"): id
# ``len(src_vocab)``, one past the source vocabulary; such models have one more source embedding.
SEPARATOR = "<SEP>"


def retrieved_code(row: dict) -> list[str]:
    """The code tokens of the row's nearest training function (``utils.data.neighbours``; none: [])."""
    found = row.get("retrieved")
    if found is None:
        raise ValueError("A model with retrieval_input 'top1' needs each row's nearest training function, and "
                         "these rows carry none: the processed data has no neighbours.json. Run "
                         "notebooks/01_preprocess.ipynb again (or `make main`) to write it.")
    return list(found["code_tokens"])


def source_symbols(src_ids: Sequence[int], src_vocab: Vocabulary) -> list[str]:
    """An example's source ids as symbols, the separator included (no <SOS>/<EOS>)."""
    return [SEPARATOR if i == len(src_vocab) else src_vocab.itos[i] for i in src_ids]


def encode_source(doc: Sequence[str], retrieved: Sequence[str] | None, src_vocab: Vocabulary,
                  trg_vocab: Vocabulary, code: Sequence[str] | None = None, with_copy: bool = False) -> Example:
    """One example from source symbols: the docstring's, then (when ``retrieved`` is not None) the
    separator and the retrieved code's; ``code`` the target's symbols (None: no target)."""
    src = src_vocab.encode(doc)
    if retrieved is not None:
        src = src + [len(src_vocab)] + src_vocab.encode(retrieved)
    ex = Example(src=src, trg=trg_vocab.encode(code) if code is not None else [])
    if with_copy:
        # the retrieved code is copyable like the docstring; the separator copies onto <PAD> (never scored)
        readable = list(doc) + list(retrieved or [])
        ex.src_ext, ex.trg_ext, ex.src_oov = extend_with_source_oov(readable, code, trg_vocab)
        if retrieved is not None:
            ex.src_ext.insert(len(doc), PAD)
        ex.trg_ext = ex.trg_ext if code is not None else []
    return ex


def encode_pairs(
    rows: Sequence[dict],
    src_vocab: Vocabulary,
    trg_vocab: Vocabulary,
    with_copy: bool = False,
    retrieval_input: str = "none",
    source_kind: str | None = None,
) -> list[Example]:
    """Turn processed rows (``docstring_tokens``/``code_tokens``) into ``Example``s, in each
    vocabulary's symbols (the tokens, or their BPE pieces); with ``retrieval_input`` "top1" the source
    also holds the row's retrieved code (``row["retrieved"]``, after a separator). ``source_kind``
    (``Seq2SeqConfig.source_kind``) "code" is the reviewer's way round: the code is the source, the
    docstring the target, and ``src_vocab``/``trg_vocab`` are still the docstrings' and the code's."""
    source_kind = source_kind or retrieval_input
    if source_kind == "code":
        return [Example(src=trg_vocab.encode(trg_vocab.symbols(row["code_tokens"])),
                        trg=src_vocab.encode(src_vocab.symbols(row["docstring_tokens"])), index=i)
                for i, row in enumerate(rows)]
    retrieval_input = source_kind
    out = []
    for i, row in enumerate(rows):
        doc, code = src_vocab.symbols(row["docstring_tokens"]), trg_vocab.symbols(row["code_tokens"])
        retrieved = src_vocab.symbols(retrieved_code(row)) if retrieval_input != "none" else None
        ex = encode_source(doc, retrieved, src_vocab, trg_vocab, code, with_copy)
        ex.index = i
        out.append(ex)
    return out
