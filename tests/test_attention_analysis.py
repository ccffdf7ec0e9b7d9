"""Attention statistics and the choice of heatmap examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.evaluation.attention_analysis import (
    attention_copy_alignment,
    attention_entropy,
    attention_statistics,
    pick_heatmap_examples,
)
from utils.evaluation.results import DecodedSplit


def _split(attention, src, hyps) -> DecodedSplit:
    return DecodedSplit("m", "greedy", 1, hyps, attention, src, src, [0.0] * len(hyps), 0.0)


def test_attention_statistics_hand_checked():
    src = [["<SOS>", "scale", "values", "by", "factor", "<EOS>"]]
    hyp = [["def", "scale", "(", "values", ")"]]
    a = np.full((5, 6), 0.02)
    a[:, 0] = 0.9  # mostly on <SOS> ...
    a[1] = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # ... but "scale" looks at "scale"
    stats = attention_statistics(_split([a], src, hyp))
    assert stats["copy_total"] == 2 and stats["copy_hits"] == 1 and stats["copy_alignment"] == 50.0
    assert stats["chance_alignment"] == pytest.approx(100 / 6)
    assert stats["n_outputs"] == 1 and stats["n_tokens"] == 5
    u = np.full((5, 6), 1 / 6)
    stats = attention_statistics(_split([u], src, hyp))
    assert stats["mean_entropy"] == pytest.approx(math.log(6)) == pytest.approx(stats["uniform_entropy"])


def test_attention_statistics_on_decoded(rows, decoded):
    stats = attention_statistics(decoded[2], rows)
    assert stats["n_outputs"] == len(rows)
    assert 0 <= stats["mean_entropy"] <= stats["uniform_entropy"] + 1e-9
    with pytest.raises(ValueError, match="no attention"):
        attention_statistics(decoded[0], rows)
    with pytest.raises(ValueError):
        attention_statistics(decoded[2], rows[::-1])


def test_pick_heatmap_examples(decoded):
    d = decoded[2]
    idx = pick_heatmap_examples(d, n=3)
    assert len(idx) == 3 and len(set(idx)) == 3
    assert all(d.attention[i] is not None and d.hypotheses[i] for i in idx)
    assert pick_heatmap_examples(decoded[0], n=3) == []  # no attention


def test_attention_entropy_uniform_and_one_hot():
    s = 7
    assert attention_entropy(np.full((3, s), 1 / s)) == pytest.approx(math.log(s))
    assert attention_entropy(torch.eye(4)) == pytest.approx(0.0)
    # mean of one uniform-over-2 row (log 2) and one one-hot row (0)
    assert attention_entropy([[0.5, 0.5], [1.0, 0.0]]) == pytest.approx(math.log(2) / 2)


def test_attention_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        attention_entropy(np.ones(3) / 3)
    with pytest.raises(ValueError, match="distributions"):
        attention_entropy(np.ones((2, 3)))


def test_attention_copy_alignment_counts():
    src = ["<SOS>", "return", "user", "name", "<EOS>"]
    out = ["return", "user", ".", "name", "<EOS>"]
    attn = np.zeros((5, 5))
    for row, col in enumerate([1, 2, 0, 2, 4]):
        attn[row, col] = 1.0
    # counted steps: "user" (argmax -> user, hit) and "name" (argmax -> user, miss);
    # "return" is a keyword and "." is not a name.
    assert attention_copy_alignment(attn, src, out) == (1, 2)
    assert attention_copy_alignment(torch.tensor(attn), src, out) == (1, 2)
    with pytest.raises(ValueError, match="does not match"):
        attention_copy_alignment(attn, src[:-1], out)
