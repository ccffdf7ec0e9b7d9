"""utils.fast.encoder: the step-by-step encoder equals the packed PyTorch module (outputs, final states
and gradients), and one ``StackWeights.step`` equals one step of ``nn.RNN`` / ``nn.LSTM``."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from utils.fast.encoder import StackWeights, first_rows, run_encoder

MODULES = [(nn.RNN, False), (nn.LSTM, False), (nn.LSTM, True)]


def _batch(B: int = 6, S: int = 9, E: int = 5):
    x = torch.randn(B, S, E)
    lengths = torch.tensor([3, 9, 1, 5, 9, 2])
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    return x, lengths


def stack_hidden(hidden):
    """Per-layer states (lists of L [n, H], a pair for LSTMs) -> [L, n, H], the form PyTorch's modules use."""
    if isinstance(hidden, tuple):
        return tuple(torch.stack(list(h)) for h in hidden)
    return torch.stack(list(hidden))


def _flat(hidden):
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


@pytest.mark.parametrize("cls,bidirectional", MODULES)
def test_step_by_step_encoder_equals_packed_module(cls, bidirectional) -> None:
    torch.manual_seed(0)
    module = cls(5, 7, 2, batch_first=True, bidirectional=bidirectional)
    x, lengths = _batch()
    results = []
    for training in (True, False):  # train: step by step (no dropout given); eval: the packed module
        module.train(training)
        module.zero_grad()
        out, hidden = run_encoder(module, x, lengths, lambda t: t)
        (out.pow(2).sum() + sum(h.sin().sum() for h in _flat(hidden))).backward()
        results.append([out.detach()] + [h.detach() for h in _flat(hidden)]
                       + [p.grad.clone() for p in module.parameters()])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)
    out = results[0][0]
    for i, n in enumerate(lengths):  # zero on padding, as pad_packed_sequence gives
        assert (out[i, n:] == 0).all()


def test_encoder_applies_dropout_between_layers_only() -> None:
    module = nn.LSTM(5, 7, 2, batch_first=True)
    x, lengths = _batch()
    calls = []
    run_encoder(module, x, lengths, lambda t: calls.append(t.shape) or t)
    assert calls == [torch.Size([6, 9, 7])]  # once: between layer 0 and layer 1


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM])
def test_stack_step_equals_one_module_step(cls) -> None:
    torch.manual_seed(0)
    module = cls(5, 7, 2)
    emb = torch.randn(4, 5)
    h = torch.randn(2, 4, 7)
    hidden = (h, torch.randn(2, 4, 7)) if cls is nn.LSTM else h
    with torch.no_grad():
        ref_out, ref_hidden = module(emb.unsqueeze(0), hidden)
        w = StackWeights.of_module(module)
        out, new_hidden = w.step(w.input_gates(emb), hidden, lambda t: t)
        # the per-layer lists a step returns are read by the next step as the stacked form is
        out2, hidden2 = w.step(w.input_gates(emb), new_hidden, lambda t: t)
        out2_stacked, _ = w.step(w.input_gates(emb), stack_hidden(new_hidden), lambda t: t)
        ref_out2, _ = module(emb.unsqueeze(0), ref_hidden)
    assert torch.allclose(out, ref_out[0], atol=1e-6)
    for a, b in zip(_flat(stack_hidden(new_hidden)), _flat(ref_hidden)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(out2, ref_out2[0], atol=1e-6)
    assert torch.equal(out2, out2_stacked)


@pytest.mark.parametrize("lstm", [False, True])
def test_first_rows_cuts_both_forms_of_layer_states(lstm: bool) -> None:
    stacked = torch.randn(2, 5, 3)       # [L, n, H]
    layers = list(stacked.unbind(0))     # L x [n, H], what a step returns
    for form in (stacked, layers):
        hidden = (form, form) if lstm else form
        cut = first_rows(hidden, 2)
        as_tensor = cut if isinstance(form, Tensor) else stack_hidden(cut)
        for got in _flat(as_tensor):
            assert torch.equal(got, stacked[:, :2])
        # all rows: nothing is sliced (no autograd node per step for nothing)
        whole = first_rows(form, 5)
        assert whole is form if isinstance(form, Tensor) else all(a is b for a, b in zip(whole, form))
