"""utils.fast.layers: the fused linear cross-entropy and the loop-deferred gradients compute what the
plain PyTorch operations compute."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.fast.layers import (
    LoopEmbedding,
    LoopMemory,
    LoopWeight,
    linear_cross_entropy,
    missing_ranges,
)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("filled", [[], [(0, 3)], [(2, 5), (7, 9)], [(0, 12)]])
def test_linear_cross_entropy_matches_cross_entropy_and_its_gradients(filled, smoothing) -> None:
    """Rows of the logits buffer filled beforehand (``filled``) are used as they are; the rest are
    computed; value and gradients equal those of the plain cross-entropy of ``layer(x)``, with and
    without label smoothing."""
    torch.manual_seed(0)
    layer = nn.Linear(8, 11)
    x = torch.randn(12, 8, requires_grad=True)
    targets = torch.randint(0, 11, (12,))
    logits = torch.full((12, 11), float("nan"))  # rows never filled must not be read
    with torch.no_grad():
        for start, end in filled:
            logits[start:end] = layer(x[start:end])
    loss = linear_cross_entropy(x, layer, targets, logits, missing_ranges(filled, 12), smoothing)
    (2.5 * loss).backward()
    fused = [loss.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()]
    x.grad = None
    layer.zero_grad()
    ref = F.cross_entropy(layer(x), targets, reduction="sum", label_smoothing=smoothing)
    (2.5 * ref).backward()
    for a, b in zip(fused, [ref.detach(), x.grad, layer.weight.grad, layer.bias.grad]):
        assert torch.allclose(a, b, atol=1e-5)
    # without a buffer every row is computed
    assert torch.allclose(linear_cross_entropy(x, layer, targets, smoothing=smoothing), ref, atol=1e-5)


def test_missing_ranges() -> None:
    assert missing_ranges([], 5) == [(0, 5)]
    assert missing_ranges([(0, 2), (4, 5)], 5) == [(2, 4)]
    assert missing_ranges([(1, 2), (2, 3)], 6) == [(0, 1), (3, 6)]
    assert missing_ranges([(0, 6)], 6) == []


def _loop(n_rows, use_loop: bool, w: torch.Tensor, values: torch.Tensor, table: nn.Embedding):
    """A toy recurrent loop over shrinking row blocks that uses a weight, attention over values and
    an embedding lookup at every step; returns a scalar."""
    weight = LoopWeight(w) if use_loop else None
    memory = LoopMemory(values) if use_loop else None
    lookup = LoopEmbedding(table) if use_loop else None
    h = torch.zeros(n_rows[0], w.size(1))
    ids = torch.tensor([0, 3, 1, 2, 4, 0])
    total = 0.0
    for t, n in enumerate(n_rows):
        h = h[:n]
        emb = lookup(ids[:n]) if use_loop else table(ids[:n])
        pre = (weight(h + emb) if use_loop else (h + emb) @ w.t())
        scores = torch.softmax(pre[:, : values.size(1)], 1)                        # [n, S]
        ctx = memory.attend(scores) if use_loop else torch.bmm(scores.unsqueeze(1), values[:n]).squeeze(1)
        h = torch.tanh(pre[:, : h.size(1)] + ctx[:, : h.size(1)])
        total = total + (h * (t + 1)).sum()
        ids = ids.roll(1)
    return total


def test_loop_deferred_gradients_equal_autograd() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 5, requires_grad=True)
    values = torch.randn(6, 4, 5, requires_grad=True)
    table = nn.Embedding(7, 5, padding_idx=0)
    grads = []
    for use_loop in (True, False):
        for p in (w, values, table.weight):
            p.grad = None
        _loop([6, 6, 4, 4, 1], use_loop, w, values, table).backward()
        grads.append([w.grad.clone(), values.grad.clone(), table.weight.grad.clone()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)
    assert (grads[0][2][0] == 0).all()  # the padding row gets no gradient


def test_loop_helpers_without_gradients_are_plain_operations() -> None:
    w = torch.randn(3, 4, requires_grad=True)
    with torch.no_grad():
        lw = LoopWeight(w)
        assert not lw.deferred and lw.tensor is w
        x = torch.randn(2, 4)
        assert torch.allclose(lw(x), x @ w.t())
        table = nn.Embedding(5, 4, padding_idx=0)
        assert torch.equal(LoopEmbedding(table)(torch.tensor([1, 0])), table(torch.tensor([1, 0])))
