"""The straightforward reference (``utils.naive``) computes what the fast path computes: the same
logits, attention, loss and gradients, on sources without padding."""
from __future__ import annotations

import random

import pytest
import torch

from utils.batch import make_batch
from utils.models import build_model
from utils.naive import naive_forward, naive_loss
from utils.vocabulary import PAD

RECURRENT = ["rnn", "lstm", "attention"]  # the models utils.naive has a reference for


@pytest.mark.parametrize("name", RECURRENT)
def test_fast_path_equals_straightforward_reference(name, tiny_config, toy_examples) -> None:
    """Same sources lengths (the reference encoder does not pack), ragged targets, identical draws."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    examples = toy_examples(40, seed=6, min_len=5, max_len=5)
    rng = random.Random(0)
    for e in examples:  # ragged targets: drop a random tail
        e.trg = e.trg[: rng.randint(1, len(e.trg))]
    batch = make_batch(examples)
    assert (batch.src_lengths == batch.src.size(1)).all()
    real = batch.trg_out != PAD
    for tf in (1.0, 0.5, 0.0):
        with torch.no_grad():
            fast, fast_attn = model(batch.src, batch.src_lengths, batch.trg_in, tf, torch.Generator().manual_seed(7))
            ref, ref_attn = naive_forward(model, batch.src, batch.trg_in, tf, torch.Generator().manual_seed(7))
            fast_loss, n = model.loss(batch, tf, torch.Generator().manual_seed(7))
            ref_loss, m = naive_loss(model, batch, tf, torch.Generator().manual_seed(7))
        assert torch.allclose(fast[real], ref[real], atol=1e-5), tf
        if name == "attention":
            assert torch.allclose(fast_attn[real], ref_attn[real], atol=1e-5)
        assert n == m == batch.n_tokens
        assert torch.allclose(fast_loss, ref_loss, rtol=1e-5), (tf, float(fast_loss), float(ref_loss))


@pytest.mark.parametrize("name", RECURRENT)
def test_fast_path_gradients_equal_reference(name, tiny_config, toy_examples) -> None:
    """Training mode (step-by-step encoder, deferred weight gradients, fused loss): same gradients."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2))
    examples = toy_examples(8, seed=8, min_len=4, max_len=4)
    for k, e in enumerate(examples):  # ragged targets
        e.trg = e.trg[: 1 + k % len(e.trg)]
    batch = make_batch(examples)
    grads = []
    for loss_fn in (lambda: model.loss(batch, 0.5, torch.Generator().manual_seed(1)),
                    lambda: naive_loss(model, batch, 0.5, torch.Generator().manual_seed(1))):
        model.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_fast, g_ref in zip(*grads):
        assert torch.allclose(g_fast, g_ref, atol=1e-5)


def test_naive_reference_has_no_transformer_or_copy_path(tiny_config, toy_examples) -> None:
    batch = make_batch(toy_examples(2, seed=0))
    with pytest.raises(TypeError, match="No straightforward reference"):
        naive_forward(build_model(tiny_config("transformer")), batch.src, batch.trg_in)
