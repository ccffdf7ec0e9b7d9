"""The trainer: reproducible losses, resuming, early stopping, checkpoints kept consistent."""
from __future__ import annotations

import math

import pytest
import torch

from utils.checkpoint import CheckpointError, load_checkpoint
from utils.training import train_model
from utils.vocabulary import SPECIALS, Vocabulary

# Fields of a history record that depend on the computation, not on the clock.
METRICS = ("epoch", "train_loss", "val_loss", "val_ppl", "val_token_acc_greedy", "lr")


@pytest.fixture(scope="module")
def splits(toy_examples):
    return toy_examples(48, seed=1, min_len=2, max_len=6), toy_examples(12, seed=2, min_len=2, max_len=6)


@pytest.fixture()
def run(splits, tiny_config, toy_vocab):
    """``run(checkpoint_dir, model="rnn", **config) -> (TrainResult, log lines)``."""

    def go(ckpt_dir, model: str = "rnn", resume: bool = True, log=None, **overrides):
        params = dict(epochs=4, batch_size=16, lr=1e-2, patience=3, max_trg_len=8)
        params.update(overrides)
        lines: list[str] = []
        result = train_model(tiny_config(model, **params), *splits, toy_vocab, toy_vocab,
                             checkpoint_dir=ckpt_dir, device="cpu", resume=resume, progress=False,
                             log=log or lines.append)
        return result, lines

    return go


def _metrics(history):
    return [{k: h[k] for k in METRICS} for h in history]


def test_history_records(tmp_path, run) -> None:
    result, lines = run(tmp_path, epochs=3)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for h in result.history:
        assert math.isclose(h["val_ppl"], math.exp(h["val_loss"]), rel_tol=1e-9)
        assert 0.0 <= h["val_token_acc_greedy"] <= 100.0
        assert h["train_tokens_per_s"] > 0 and h["lr"] == pytest.approx(1e-2)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]  # it learns
    assert len(lines) == 3 and "epoch 3: train loss" in lines[-1]
    assert result.resumed_from_epoch == 0 and result.notes == []
    assert result.best_path == tmp_path / "rnn_best.pt" and result.last_path == tmp_path / "rnn_last.pt"
    assert not result.model.training


@pytest.mark.parametrize("model", ["lstm", "copy"])
def test_same_seed_same_losses(tmp_path, run, model) -> None:
    """Dropout and teacher-forcing draws included: two runs agree exactly on CPU."""
    kw = dict(model=model, epochs=2, dropout=0.3, num_layers=2, teacher_forcing=0.5)
    a, _ = run(tmp_path / "a", **kw)
    b, _ = run(tmp_path / "b", **kw)
    assert _metrics(a.history) == _metrics(b.history)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    c, _ = run(tmp_path / "c", seed=1, **kw)
    assert _metrics(c.history) != _metrics(a.history)  # the seed matters


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_where_it_stopped(tmp_path, run) -> None:
    kw = dict(epochs=4, dropout=0.3, num_layers=2, teacher_forcing=0.5)
    full, _ = run(tmp_path / "full", **kw)

    def crash_in_epoch_3(line: str) -> None:  # dies before epoch 3's _last.pt is written
        if "epoch 3:" in line:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "cut", log=crash_in_epoch_3, **kw)
    assert load_checkpoint(tmp_path / "cut" / "rnn_last.pt")["epoch"] == 2
    resumed, lines = run(tmp_path / "cut", **kw)
    assert resumed.resumed_from_epoch == 2
    assert any("after epoch 2" in n for n in resumed.notes)
    assert "resuming after epoch 2" in lines[0]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert _metrics(resumed.history) == _metrics(full.history)
    for p, q in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(p, q)


def test_more_epochs_continue_a_finished_run(tmp_path, run) -> None:
    run(tmp_path / "cut", epochs=2)
    resumed, _ = run(tmp_path / "cut", epochs=4)
    full, _ = run(tmp_path / "full", epochs=4)
    assert resumed.resumed_from_epoch == 2
    assert any("after epoch 2" in n for n in resumed.notes)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert _metrics(resumed.history) == _metrics(full.history)


def test_finished_run_returns_at_once(tmp_path, run) -> None:
    first, _ = run(tmp_path, epochs=2)
    last_bytes = first.last_path.read_bytes()
    again, lines = run(tmp_path, epochs=2)
    assert again.resumed_from_epoch == 2
    assert _metrics(again.history) == _metrics(first.history)
    assert not any("train loss" in line for line in lines)  # no epoch was trained
    assert first.last_path.read_bytes() == last_bytes       # nor saved
    for p, q in zip(again.model.parameters(), first.model.parameters()):
        assert torch.equal(p, q)


def test_resume_false_starts_over(tmp_path, run) -> None:
    first, _ = run(tmp_path, epochs=2)
    again, lines = run(tmp_path, epochs=2, resume=False)
    assert again.resumed_from_epoch == 0 and len(lines) == 2
    assert _metrics(again.history) == _metrics(first.history)


def test_early_stopping_and_best_checkpoint(tmp_path, run) -> None:
    """lr = 0: the validation loss never changes, so epoch 1 stays best and training stops after
    ``patience`` epochs without improvement."""
    result, lines = run(tmp_path, lr=0.0, epochs=10, patience=2)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert len({h["val_loss"] for h in result.history}) == 1
    assert result.best_epoch == 1
    assert "no improvement (2/2)" in lines[-1]
    best = load_checkpoint(result.best_path)
    assert best["best_epoch"] == 1
    assert _metrics(best["history"]) == _metrics(result.history)  # the full curves, not epoch 1's
    last = load_checkpoint(result.last_path)
    assert last["finished"] and last["bad_epochs"] == 2 and last["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn_best.pt", "rnn_last.pt"]  # no .tmp left


def test_returned_model_is_the_best_one(tmp_path, run, toy_vocab) -> None:
    result, _ = run(tmp_path, epochs=3, lr=0.05)
    best = load_checkpoint(result.best_path)
    best_val = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best_val
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, best["model_state"][name])
    assert _metrics(best["history"]) == _metrics(result.history)


def test_resume_with_another_architecture(tmp_path, run) -> None:
    run(tmp_path, epochs=1)
    with pytest.raises(CheckpointError) as err:
        run(tmp_path, epochs=2, hidden_dim=16)
    msg = str(err.value)
    assert str(tmp_path / "rnn_last.pt") in msg
    assert "different model" in msg and "hidden_dim=32" in msg and "resume=False" in msg
    run(tmp_path, epochs=1, hidden_dim=16, resume=False)  # the way out the message gives


def test_resume_with_other_training_settings(tmp_path, run) -> None:
    run(tmp_path, epochs=1)
    with pytest.raises(CheckpointError) as err:
        run(tmp_path, epochs=2, lr=1e-3, teacher_forcing=0.0)
    msg = str(err.value)
    assert "other training settings" in msg and "lr=0.01 (now 0.001)" in msg and "teacher_forcing" in msg
    assert "different model" not in msg


def test_resume_with_another_vocabulary(tmp_path, splits, tiny_config, toy_vocab) -> None:
    """Same sizes, other words (the data was preprocessed again): not resumed into the old run."""
    kw = dict(checkpoint_dir=tmp_path, device="cpu", progress=False, log=lambda s: None)
    train_model(tiny_config("rnn", epochs=1), *splits, toy_vocab, toy_vocab, **kw)
    words = toy_vocab.itos[len(SPECIALS):]
    other = Vocabulary(SPECIALS + words[::-1])
    with pytest.raises(CheckpointError, match="another target vocabulary"):
        train_model(tiny_config("rnn", epochs=2), *splits, toy_vocab, other, **kw)


def test_empty_splits_rejected(tmp_path, tiny_config, toy_vocab, splits) -> None:
    with pytest.raises(ValueError, match="non-empty train and valid"):
        train_model(tiny_config("rnn"), [], splits[1], toy_vocab, toy_vocab, checkpoint_dir=tmp_path,
                    progress=False, log=lambda s: None)
