"""Mixed precision: the setting and its errors, every model training and decoding under bf16
autocast with its products really in bf16, losses close to fp32, checkpoints crossing precisions.

The bf16 tests run on every CPU: where it has no native bf16 arithmetic, PyTorch emulates it (slower,
the same rounding), so the code path is checked everywhere; only the speed needs native support.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import utils.precision as precision_module
from inference import example_inference
from inference.inference import clear_cache, generate_code
from utils.checkpoint import load_model, save_checkpoint
from utils.data.batch import make_batch
from utils.decoding.search import beam_search, decode_examples, greedy_decode
from utils.models import MODEL_CLASSES, build_model
from utils.precision import AUTO_ON_BF16_CPU, autocast, check_precision, compute_dtype, resolve_precision
from utils.training.trainer import train_model

ALL_MODELS = list(MODEL_CLASSES)
PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "_addmm_activation",
            "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math"}


class ProductDtypes(TorchDispatchMode):
    """Counts the multiply-accumulates of every matrix product, per dtype, forward and backward."""

    def __init__(self):
        super().__init__()
        self.macs: dict[torch.dtype, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in PRODUCTS and isinstance(out, torch.Tensor):
            tensors = [a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 2]
            inner = tensors[0].shape[-1] if tensors else 1
            self.macs[tensors[0].dtype] = self.macs.get(tensors[0].dtype, 0) + out.numel() * inner
        return out


def test_precision_names_and_errors(monkeypatch) -> None:
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match=r"Unknown precision 'half'; use one of 'fp32', 'bf16' or 'auto'\."):
        check_precision("half")
    assert resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match=r"this CPU has no native bf16 arithmetic .*use 'auto' or 'fp32'"):
        resolve_precision("bf16", "cpu")
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == AUTO_ON_BF16_CPU
    assert compute_dtype("cpu") == torch.float32
    with autocast("bf16", "cpu"):
        assert compute_dtype("cpu") == torch.bfloat16


def test_the_config_checks_its_precision(tiny_config) -> None:
    with pytest.raises(ValueError, match="Unknown precision 'fp64'"):
        tiny_config("rnn", precision="fp64")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_trains_in_bf16_with_its_products_in_bf16(name, tiny_config, toy_examples) -> None:
    """Teacher forcing 0.5 (the argmax path of the fused loss too): the loss is within 2% of fp32's on
    the same batch, master gradients are float32, and almost all arithmetic of forward and backward
    runs in bf16 (the custom autograd pieces do not fall back to fp32)."""
    batch = make_batch(toy_examples(24, seed=5, min_len=3, max_len=8))
    losses, grads = {}, {}
    for prec in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(tiny_config(name, num_layers=2, dropout=0.2)).train()
        counter = ProductDtypes()
        with counter:
            with autocast(prec, "cpu"):
                loss, n = model.loss(batch, 0.5, torch.Generator().manual_seed(3))
            (loss / n).backward()
        assert loss.dtype == torch.float32
        losses[prec] = loss.item() / n
        grads[prec] = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads[prec].values())
        if prec == "bf16":
            share = counter.macs.get(torch.bfloat16, 0) / sum(counter.macs.values())
            assert share > 0.9, f"{name}: only {share:.0%} of the product arithmetic ran in bf16 ({counter.macs})"
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)
    assert grads["bf16"].keys() == grads["fp32"].keys()
    cos = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in grads["bf16"].values()]),
                                                torch.cat([g.flatten() for g in grads["fp32"].values()]), 0)
    assert cos > 0.98


@pytest.mark.parametrize("name", ALL_MODELS)
def test_bf16_decoding_beam_one_is_greedy(name, trained_models, toy_examples) -> None:
    model = trained_models[name]
    batch = make_batch(toy_examples(16, seed=21, min_len=1, max_len=9))
    with autocast("bf16", "cpu"):
        greedy = greedy_decode(model, batch, max_len=12)
        beam = beam_search(model, batch, beam_size=1, max_len=12, length_penalty=1.0)
        assert beam_search(model, batch, beam_size=3, max_len=12).tokens  # runs, gives outputs
    assert beam.tokens == greedy.tokens
    assert beam.scores == pytest.approx(greedy.scores, abs=1e-4)
    fp32 = greedy_decode(model, batch, max_len=12)  # the weight cache is not shared across precisions
    assert sum(a == b for a, b in zip(fp32.tokens, greedy.tokens)) >= len(batch.indices) // 2


def test_a_bf16_run_checkpoint_decodes_in_fp32_and_the_reverse(tmp_path, tiny_config, toy_examples, toy_vocab,
                                                               monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: True)  # emulated where it is not native
    train, valid = toy_examples(48, seed=1, min_len=2, max_len=6), toy_examples(12, seed=2, min_len=2, max_len=6)
    for trained_in in ("bf16", "fp32"):
        result = train_model(tiny_config("attention", epochs=2, batch_size=16, precision=trained_in), train, valid,
                             toy_vocab, toy_vocab, checkpoint_dir=tmp_path / trained_in, device="cpu",
                             progress=False, log=lambda _: None)
        assert [h["precision"] for h in result.history] == [trained_in] * 2
        model, *_ , ckpt = load_model(result.best_path)
        assert ckpt["config"]["precision"] == trained_in
        outputs = {p: decode_examples(model, valid, max_len=8, precision=p).tokens for p in ("fp32", "bf16")}
        assert all(len(o) == len(valid) for o in outputs.values())
        path = save_checkpoint(tmp_path / f"{trained_in}.pt", model, toy_vocab, toy_vocab)
        clear_cache()
        for p in ("fp32", "bf16", "auto"):
            assert isinstance(generate_code("t1 t2 t3", path, precision=p), str)


def test_the_cli_names_the_precisions(tmp_path, trained_models, toy_vocab, capsys, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "rnn.pt", trained_models["rnn"], toy_vocab, toy_vocab)
    with pytest.raises(SystemExit) as exit_info:
        example_inference.main(["--checkpoint", str(path), "--docstring", "t1 t2", "--precision", "half"])
    assert exit_info.value.code == 2 and "invalid choice: 'half'" in capsys.readouterr().err
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    clear_cache()
    code = example_inference.main(["--checkpoint", str(path), "--docstring", "t1 t2", "--precision", "bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: precision='bf16' was asked for") and "'auto' or 'fp32'" in err[0]


def test_emulated_bf16_is_allowed_only_when_asked(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setenv(precision_module.EMULATE_ENV, "1")
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"  # emulation is slow: auto never picks it
    monkeypatch.delenv(precision_module.EMULATE_ENV)
    with pytest.raises(ValueError, match="no native bf16"):
        resolve_precision("bf16", "cpu")
