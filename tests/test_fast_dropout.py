"""utils.fast.dropout: the 16-bit dropout mask drops at the right rate and keeps the expectation, and
``cheap_dropout`` swaps it into a model's ``nn.Dropout`` modules for one block only."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from utils.fast.dropout import bit_dropout, cheap_dropout, dropout_mask


@pytest.mark.parametrize("p", [0.5, 0.1, 0.3])
def test_dropout_mask_rate_and_scale(p) -> None:
    torch.manual_seed(0)
    mask = dropout_mask(torch.Size([400, 1000]), p, torch.device("cpu"))
    dropped = (mask == 0).float().mean().item()
    assert abs(dropped - p) < 0.005                       # 400k draws: ~5 standard errors
    kept = mask[mask > 0]
    assert torch.allclose(kept, kept[0].expand_as(kept))  # one scale for all kept elements
    assert abs(kept[0].item() - 1 / (1 - p)) < 1e-3
    assert abs(mask.mean().item() - 1.0) < 0.01           # expectation preserved


def test_dropout_mask_is_exact_for_one_half_and_varies_by_position() -> None:
    torch.manual_seed(1)
    mask = dropout_mask(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    # the four 16-bit slices of one 64-bit draw are independent: no column pattern
    cols = (mask.view(-1, 4) == 0).float().mean(0)
    assert cols.min() > 0.35 and cols.max() < 0.65


def test_bit_dropout_train_eval_and_gradient() -> None:
    x = torch.randn(32, 16, requires_grad=True)
    assert bit_dropout(x, 0.5, training=False) is x and bit_dropout(x, 0.0) is x
    torch.manual_seed(3)
    y = bit_dropout(x, 0.5)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)  # gradient is the mask
    assert torch.allclose(y[y != 0], 2 * x[y != 0])


def test_cheap_dropout_swaps_every_dropout_module_for_the_block() -> None:
    model = nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.25)))
    x = torch.randn(64, 8)
    with cheap_dropout(model):
        torch.manual_seed(4)
        inside = model[0](x)
        torch.manual_seed(4)
        assert torch.equal(inside, x * dropout_mask(x.shape, 0.5, x.device))  # the 16-bit mask
        assert model[1][1].forward is not nn.Dropout.forward
        model.eval()
        assert model[0](x) is x  # eval mode: no dropout
        model.train()
    torch.manual_seed(4)
    outside = model[0](x)
    torch.manual_seed(4)
    assert torch.equal(outside, nn.functional.dropout(x, 0.5, True))  # PyTorch's own again
    assert "forward" not in vars(model[0]) and "forward" not in vars(model[1][1])


def test_cheap_dropout_restores_the_modules_after_an_error() -> None:
    model = nn.Sequential(nn.Dropout(0.5))
    with pytest.raises(RuntimeError, match="boom"), cheap_dropout(model):
        raise RuntimeError("boom")
    assert "forward" not in vars(model[0])
