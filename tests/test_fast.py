"""The CPU shortcut (``utils.fast``) computes what the models compute (``model(...)``, ``model.loss``),
for every model: the same scores, attention, loss and gradients, on ragged sources and
targets, under teacher forcing 1.0, 0.5 and 0.0, with and without label smoothing; and training on
either path gives the same losses."""
from __future__ import annotations

import random

import pytest
import torch

from utils.data.batch import encode_pairs, make_batch
from utils.data.vocabulary import PAD, SPECIALS, Vocabulary
from utils.fast import fast_forward, fast_loss
from utils.models import build_model
from utils.training import trainer
from utils.training.trainer import train_model

# every model, and the RNN and LSTM variants (utils.models.recurrent): "rnn:reverse" is the RNN
# with recurrent_variant "reverse"
MODELS = ["rnn", "lstm", "attention", "copy", "transformer", "rnn:reverse", "rnn:context", "lstm:reverse",
          "lstm:context"]
RATIOS = [1.0, 0.5, 0.0]


@pytest.fixture(scope="module")
def small_vocab(toy_vocab) -> Vocabulary:
    """A target vocabulary without four of the toy words: targets hold <UNK> (copied ids for the copy model)."""
    return Vocabulary(list(toy_vocab.itos[: len(SPECIALS) + 8]))


@pytest.fixture(scope="module")
def ragged_batch(toy_rows, toy_vocab, small_vocab):
    """``ragged_batch(n, seed)``: sources of 2 to 8 words (padded), targets their copy cut at a random length."""

    def make(n: int, seed: int):
        rows = toy_rows(n, seed, min_len=2, max_len=8)
        rng = random.Random(seed)
        for row in rows:
            row["code_tokens"] = row["code_tokens"][: rng.randint(1, len(row["code_tokens"]))]
        batch = make_batch(encode_pairs(rows, toy_vocab, small_vocab, with_copy=True))
        assert len(set(batch.src_lengths.tolist())) > 1 and batch.n_oov > 0  # padded sources, words to copy
        return batch

    return make


def _model(name, tiny_config, small_vocab):
    model, _, variant = name.partition(":")
    torch.manual_seed(0)
    return build_model(tiny_config(model, num_layers=2, trg_vocab_size=len(small_vocab),
                                   recurrent_variant=variant or "original"))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


@pytest.mark.parametrize("name", MODELS)
def test_fast_scores_and_loss_equal_the_models(name, tiny_config, small_vocab, ragged_batch) -> None:
    model = _model(name, tiny_config, small_vocab).eval()
    batch = ragged_batch(40, seed=6)
    real = batch.trg_out != PAD
    for tf in RATIOS:
        with torch.no_grad():
            fast, fast_attn = fast_forward(model, batch, tf, _gen())
            plain, plain_attn = model(batch.src, batch.src_lengths, batch.trg_in, tf, _gen(), batch.src_ext,
                                      batch.n_oov)
            assert torch.allclose(fast[real], plain[real], atol=1e-5), tf
            if model.has_attention:
                assert torch.allclose(fast_attn[real], plain_attn[real], atol=1e-5), tf
            else:
                assert fast_attn is None and plain_attn is None
            for smoothing in (0.0, 0.1):
                fast, n = fast_loss(model, batch, tf, _gen(), smoothing)
                plain, m = model.loss(batch, tf, _gen(), smoothing)
                assert n == m == batch.n_tokens
                assert torch.allclose(fast, plain, rtol=1e-5), (tf, smoothing, float(fast), float(plain))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tf", RATIOS)
def test_fast_gradients_equal_the_models(name, tf, tiny_config, small_vocab, ragged_batch) -> None:
    """Training mode (step-by-step encoder, deferred weight gradients, fused loss): the same gradients."""
    model = _model(name, tiny_config, small_vocab)
    batch = ragged_batch(12, seed=8)
    for smoothing in (0.0, 0.1):
        grads = []
        for loss_fn in (lambda *args: fast_loss(model, *args), model.loss):
            model.zero_grad()
            loss, n = loss_fn(batch, tf, _gen(), smoothing)
            (loss / n).backward()
            grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()])
        for (pname, _), g_fast, g_plain in zip(model.named_parameters(), *grads):
            assert torch.allclose(g_fast, g_plain, atol=1e-6), (pname, smoothing)


def test_copy_loss_equals_cross_entropy_of_its_distribution(tiny_config, toy_vocab) -> None:
    """The fast path's copy loss, built from each row's log-sum-exp and target logit, has the value and
    gradients of the cross-entropy of the model's full extended distribution (``model.loss``), with
    source words outside the vocabulary among the targets (reachable only by copying)."""
    rng = random.Random(0)
    words = [w for w in toy_vocab.itos if w not in SPECIALS] + ["oov_a", "oov_b", "oov_c"]
    rows = []
    for _ in range(8):
        doc = [rng.choice(words) for _ in range(rng.randint(3, 7))]
        rows.append({"docstring_tokens": doc, "code_tokens": [rng.choice(doc + words) for _ in range(6)]})
    batch = make_batch(encode_pairs(rows, toy_vocab, toy_vocab, with_copy=True))
    assert batch.n_oov > 0 and (batch.trg_out_ext >= len(toy_vocab)).any()
    torch.manual_seed(0)
    model = build_model(tiny_config("copy", num_layers=2))
    results = []
    for loss_fn in (lambda *args: fast_loss(model, *args), model.loss):
        model.zero_grad()
        loss, _ = loss_fn(batch, 0.5, torch.Generator().manual_seed(1))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (fused, fused_grads), (full, full_grads) = results
    assert torch.allclose(fused, full, rtol=1e-5)
    assert len(fused_grads) == len(full_grads)
    for a, b in zip(fused_grads, full_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fast_path_needs_a_known_model(ragged_batch) -> None:
    with pytest.raises(TypeError, match="No fast path for Module"):
        fast_loss(torch.nn.Module(), ragged_batch(8, seed=0))


@pytest.mark.parametrize("name", ["lstm", "attention", "rnn:context"])
def test_training_off_the_fast_path_gives_the_same_losses(name, tmp_path, tiny_config, toy_examples,
                                                          toy_vocab, monkeypatch) -> None:
    """``fast_path`` "on" and "off" train the same function (dropout off: its masks are drawn in
    another order), and a run resumes under the other path (``fast_path`` is no training field)."""
    splits = toy_examples(48, seed=1, min_len=2, max_len=6), toy_examples(12, seed=2, min_len=2, max_len=6)
    calls = []  # the fast loss's calls, per run
    monkeypatch.setattr(trainer, "fast_loss", lambda *args: calls.append(1) or fast_loss(*args))
    histories, fast_calls = {}, {}
    name, _, variant = name.partition(":")
    variant = {"recurrent_variant": variant} if variant else {}
    for path in ("on", "off"):
        config = tiny_config(name, **variant, fast_path=path, epochs=2, batch_size=16, lr=1e-2, teacher_forcing=0.5,
                             label_smoothing=0.1, dropout=0.0, max_trg_len=8)
        result = train_model(config, *splits, toy_vocab, toy_vocab, checkpoint_dir=tmp_path / path, device="cpu",
                             progress=False, log=lambda s: None)
        histories[path], fast_calls[path] = result.history, len(calls)
    assert fast_calls["on"] > 0 and fast_calls["off"] == fast_calls["on"]  # training and validation batches
    for on, off in zip(histories["on"], histories["off"], strict=True):
        assert on["train_loss"] == pytest.approx(off["train_loss"], rel=1e-4)
        assert on["val_loss"] == pytest.approx(off["val_loss"], rel=1e-4)
    more = tiny_config(name, **variant, fast_path="off", epochs=3, batch_size=16, lr=1e-2, teacher_forcing=0.5,
                       label_smoothing=0.1, dropout=0.0, max_trg_len=8)
    resumed = train_model(more, *splits, toy_vocab, toy_vocab, checkpoint_dir=tmp_path / "on", device="cpu",
                          progress=False, log=lambda s: None)
    assert resumed.resumed_from_epoch == 2 and len(resumed.history) == 3
