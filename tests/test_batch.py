"""Batches: target shifting, source wrapping, lengths, bucketing and the copy model's extended ids."""
from __future__ import annotations

import random

import pytest
import torch

from utils.data.batch import (
    SOURCE_BUCKET,
    Example,
    batch_indices,
    bucketed_batches,
    encode_pairs,
    extend_with_source_oov,
    make_batch,
    pad_sequences,
)
from utils.data.vocabulary import EOS, PAD, SOS, SPECIALS, UNK, Vocabulary


def _examples(n: int, seed: int = 0, max_src: int = 30, max_trg: int = 40) -> list[Example]:
    rng = random.Random(seed)
    return [Example(src=[rng.randrange(4, 50) for _ in range(rng.randint(1, max_src))],
                    trg=[rng.randrange(4, 60) for _ in range(rng.randint(1, max_trg))], index=i)
            for i in range(n)]


def test_pad_sequences() -> None:
    out = pad_sequences([[5, 6, 7], [8], []])
    assert out.dtype == torch.long
    assert out.tolist() == [[5, 6, 7], [8, PAD, PAD], [PAD, PAD, PAD]]
    assert pad_sequences([[], []]).shape == (2, 1)  # never a zero-width tensor


def test_make_batch_shifts_targets_and_wraps_sources() -> None:
    examples = [Example(src=[5, 6, 7], trg=[9, 10], index=3), Example(src=[8], trg=[11, 12, 13, 14], index=7)]
    b = make_batch(examples)
    assert b.indices == [3, 7]
    # source: <SOS> x <EOS>, right-padded; lengths count the wrapping tokens
    assert b.src.tolist() == [[SOS, 5, 6, 7, EOS], [SOS, 8, EOS, PAD, PAD]]
    assert b.src_lengths.tolist() == [5, 3]
    assert b.src_lengths.device.type == "cpu"
    assert b.src_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    # target: decoder input starts with <SOS>, loss target ends with <EOS>, same length
    assert b.trg_in.shape == b.trg_out.shape == (2, 5)
    assert b.trg_in[:, :3].tolist() == [[SOS, 9, 10], [SOS, 11, 12]]
    assert b.trg_in[1].tolist() == [SOS, 11, 12, 13, 14]
    assert b.trg_out.tolist() == [[9, 10, EOS, PAD, PAD], [11, 12, 13, 14, EOS]]
    assert (b.trg_in[:, 0] == SOS).all()
    # trg_out is trg_in shifted left by one on every real position
    inner = b.trg_in[:, 1:] != PAD
    assert torch.equal(b.trg_in[:, 1:][inner], b.trg_out[:, :-1][inner])
    assert b.n_tokens == 3 + 5  # real target tokens, <EOS> included
    assert b.src_ext is None and b.trg_out_ext is None and b.n_oov == 0


def test_batch_invariants_on_random_examples() -> None:
    examples = _examples(40, seed=1)
    b = make_batch(examples)
    for k, e in enumerate(examples):
        assert b.src_lengths[k] == len(e.src) + 2
        assert b.src[k, : len(e.src) + 2].tolist() == [SOS] + e.src + [EOS]
        assert (b.src[k, len(e.src) + 2:] == PAD).all()
        assert b.trg_in[k, : len(e.trg) + 1].tolist() == [SOS] + e.trg
        assert b.trg_out[k, : len(e.trg) + 1].tolist() == e.trg + [EOS]
        assert (b.trg_out[k, len(e.trg) + 1:] == PAD).all()
    assert b.n_tokens == sum(len(e.trg) + 1 for e in examples)


def test_decoder_input_holds_no_eos() -> None:
    """``trg_in`` is ``<SOS> y1 .. yn`` then padding: as many real tokens as ``trg_out`` has."""
    examples = _examples(40, seed=1)
    b = make_batch(examples)
    assert not (b.trg_in == EOS).any()
    assert torch.equal(b.trg_in != PAD, b.trg_out != PAD)
    for k, e in enumerate(examples):
        assert b.trg_in[k].tolist() == [SOS] + e.trg + [PAD] * (b.trg_in.size(1) - len(e.trg) - 1)


def test_batch_to_keeps_everything() -> None:
    rows = [{"docstring_tokens": ["a", "zz"], "code_tokens": ["zz", "b"]}]
    v = Vocabulary(SPECIALS + ["a", "b"])
    b = make_batch(encode_pairs(rows, v, v, with_copy=True)).to(torch.device("cpu"))
    assert b.src_ext is not None and b.trg_out_ext is not None and b.n_oov == 1
    assert b.indices == [0]


@pytest.mark.parametrize("shuffle", [True, False])
def test_bucketed_batches_yield_every_example_once(shuffle: bool) -> None:
    examples = _examples(203, seed=2)
    batches = list(bucketed_batches(examples, batch_size=16, shuffle=shuffle, pool_batches=4, seed=5))
    seen = [i for b in batches for i in b.indices]
    assert sorted(seen) == list(range(len(examples)))
    assert all(1 <= len(b.indices) <= 16 for b in batches)
    assert len(batches) == -(-len(examples) // 16)
    for b in batches:  # each batch really holds the examples it names
        for k, i in enumerate(b.indices):
            assert b.src[k, 1 : len(examples[i].src) + 1].tolist() == examples[i].src


def test_bucketed_batches_deterministic_for_a_seed() -> None:
    examples = _examples(150, seed=3)
    order = lambda seed: [b.indices for b in bucketed_batches(examples, 8, seed=seed)]  # noqa: E731
    assert order(4) == order(4)
    assert order(4) != order(5)


def test_unshuffled_batches_are_length_sorted() -> None:
    examples = _examples(100, seed=4)
    keys = [(len(examples[i].trg), len(examples[i].src))
            for b in bucketed_batches(examples, 7, shuffle=False) for i in b.indices]
    assert keys == sorted(keys)


def test_bucketing_reduces_padding() -> None:
    examples = _examples(800, seed=6, max_src=50, max_trg=80)

    def padded_cells(batches) -> int:
        return sum(b.src.numel() + b.trg_out.numel() for b in batches)

    shuffled = list(range(len(examples)))
    random.Random(0).shuffle(shuffled)
    plain = [make_batch([examples[i] for i in shuffled[k : k + 32]]) for k in range(0, len(examples), 32)]
    bucketed = list(bucketed_batches(examples, 32, seed=0))
    real = sum(len(e.src) + 2 + len(e.trg) + 1 for e in examples)
    assert padded_cells(bucketed) >= real
    # random batching pads roughly to the maximum; bucketing stays close to the real size
    assert padded_cells(bucketed) < 0.75 * padded_cells(plain)


def test_bucketed_batches_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(bucketed_batches(_examples(3), 0))


@pytest.mark.parametrize("shuffle", [True, False])
def test_token_batches_hold_at_most_batch_tokens_target_positions(shuffle: bool) -> None:
    """Every example once; each batch's padded target (sequences x longest target with <EOS>) within
    the budget, and full: one more pair of its length would not have fitted."""
    examples = _examples(403, seed=8, max_trg=40)
    batches = list(bucketed_batches(examples, batch_size=1, shuffle=shuffle, seed=2, batch_tokens=300))
    assert sorted(i for b in batches for i in b.indices) == list(range(len(examples)))
    assert all(b.trg_out.numel() <= 300 for b in batches)
    assert sum(b.trg_out.numel() for b in batches) / len(batches) > 0.75 * 300  # batches are filled up
    sizes = {len(b.indices) for b in batches}
    assert max(sizes) > 20 and min(sizes) <= 300 // 41  # short targets share a batch, long ones sit few to one
    assert [b.indices for b in batches] == [list(c) for c in batch_indices(examples, 1, shuffle, seed=2,
                                                                             batch_tokens=300)]


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_by_source_pad_long_sources_less_and_keep_the_target_budget(shuffle: bool) -> None:
    """The reviewer's batching: long sources (code) and short targets (docstrings). Sorted by source
    bucket, the padded source shrinks; every example once, every batch within the target budget."""
    examples = _examples(600, seed=10, max_src=160, max_trg=30)
    by_target = list(bucketed_batches(examples, 1, shuffle=shuffle, seed=3, batch_tokens=400))
    by_source = list(bucketed_batches(examples, 1, shuffle=shuffle, seed=3, batch_tokens=400, by_source=True))
    assert sorted(i for b in by_source for i in b.indices) == list(range(len(examples)))
    assert all(b.trg_out.numel() <= 400 for b in by_source)
    assert sum(b.src.numel() for b in by_source) < 0.7 * sum(b.src.numel() for b in by_target)
    if not shuffle:
        keys = [(len(examples[i].src) // SOURCE_BUCKET, len(examples[i].trg)) for b in by_source for i in b.indices]
        assert keys == sorted(keys)


def test_token_batches_smaller_than_the_longest_target_are_refused() -> None:
    examples = _examples(50, seed=9, max_trg=40)
    longest = max(len(e.trg) for e in examples) + 1
    with pytest.raises(ValueError, match=f"batch_tokens={longest - 1} is smaller than the longest target "
                                         f"sequence \\({longest} pieces"):
        next(bucketed_batches(examples, 64, batch_tokens=longest - 1))
    assert sum(len(b.indices) for b in bucketed_batches(examples, 64, batch_tokens=longest)) == 50


def test_extend_with_source_oov_ids() -> None:
    v = Vocabulary(SPECIALS + ["def", "(", ")", "x"])
    V = len(v)
    src_ext, trg_ext, oov = extend_with_source_oov(
        ["get", "x", "name", "get"], ["def", "name", "(", "x", ")", "other"], v)
    assert oov == ["get", "name"]                     # first-seen order, each OOV word once
    assert src_ext == [V, v.stoi["x"], V + 1, V]      # a repeated OOV word keeps its id
    # copyable OOV target words get their extended id, others stay <UNK>
    assert trg_ext == [v.stoi["def"], V + 1, v.stoi["("], v.stoi["x"], v.stoi[")"], UNK]
    # without a target
    assert extend_with_source_oov(["x"], None, v) == ([v.stoi["x"]], None, [])


def test_encode_pairs_with_copy_feeds_the_batch() -> None:
    src_v = Vocabulary(SPECIALS + ["return", "the"])
    trg_v = Vocabulary(SPECIALS + ["def", "return"])
    rows = [{"docstring_tokens": ["return", "the", "foo"], "code_tokens": ["def", "foo", "return", "bar"]},
            {"docstring_tokens": ["the"], "code_tokens": ["def"]}]
    examples = encode_pairs(rows, src_v, trg_v, with_copy=True)
    assert examples[0].src == [src_v.stoi["return"], src_v.stoi["the"], UNK]
    assert examples[0].trg == [trg_v.stoi["def"], UNK, trg_v.stoi["return"], UNK]
    assert examples[0].src_oov == ["the", "foo"]
    V = len(trg_v)
    assert examples[0].src_ext == [trg_v.stoi["return"], V, V + 1]
    assert examples[0].trg_ext == [trg_v.stoi["def"], V + 1, trg_v.stoi["return"], UNK]
    b = make_batch(examples)
    assert b.n_oov == 2
    assert b.src_ext.shape == b.src.shape
    assert b.trg_out_ext.shape == b.trg_out.shape
    assert b.src_ext[0].tolist() == [PAD, trg_v.stoi["return"], V, V + 1, PAD]  # <SOS>/<EOS> copy nothing
    assert b.trg_out_ext[0].tolist() == [trg_v.stoi["def"], V + 1, trg_v.stoi["return"], UNK, EOS]
    assert b.trg_out_ext[1].tolist() == [trg_v.stoi["def"], EOS, PAD, PAD, PAD]
    # ids below the target vocabulary size agree with the plain target
    plain = b.trg_out_ext < V
    assert torch.equal(b.trg_out_ext[plain], b.trg_out[plain])


def test_the_reviewer_reads_the_code_and_writes_the_docstring() -> None:
    from utils.data.batch import encode_pairs
    from utils.data.vocabulary import Vocabulary

    rows = [{"docstring_tokens": ["Add", "them"], "code_tokens": ["def", "add", "(", ")"]}]
    docs = Vocabulary.build([rows[0]["docstring_tokens"]], min_freq=1)
    code = Vocabulary.build([rows[0]["code_tokens"]], min_freq=1)
    forward, = encode_pairs(rows, docs, code)
    back, = encode_pairs(rows, docs, code, source_kind="code")
    assert (back.src, back.trg) == (code.encode(rows[0]["code_tokens"]), docs.encode(rows[0]["docstring_tokens"]))
    assert (forward.src, forward.trg) == (docs.encode(rows[0]["docstring_tokens"]), code.encode(rows[0]["code_tokens"]))
