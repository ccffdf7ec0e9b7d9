"""The trainer: reproducible losses, resuming, early stopping, checkpoints kept consistent."""
from __future__ import annotations

import math
import os

import pytest
import torch

from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import Seq2SeqConfig
from utils.data.vocabulary import SPECIALS, Vocabulary
from utils.training.trainer import schedule_factor, schedule_steps, teacher_forcing_ratio, train_model

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
    with pytest.raises(CheckpointError, match="recurrent_variant='original' .now 'reverse'."):
        run(tmp_path, epochs=2, hidden_dim=16, recurrent_variant="reverse")  # same weights' shapes, another model


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


# A training run in its own process, for the kill tests below. argv: checkpoint dir, result file, and
# where to stop: "never", "batch:<epoch>:<n>" (after n batches of that epoch) or "save:<name>" (halfway
# through writing that checkpoint). At the stop it prints STOPPED and waits to be killed.
TRAIN_SCRIPT = r'''
import io, json, os, random, sys, time
import torch
import utils.training.trainer as training
from utils.data.batch import encode_pairs
from utils.config import Seq2SeqConfig
from utils.data.vocabulary import SPECIALS, Vocabulary

torch.set_num_threads(1)
ckpt_dir, result_file, stop = sys.argv[1:4]

def stopped():
    print("STOPPED", flush=True)
    time.sleep(120)

if stop.startswith("batch:"):
    _, stop_epoch, stop_after = stop.split(":")
    real_batches, calls = training.bucketed_batches, []
    def batches(examples, batch_size, shuffle=True, seed=0, batch_tokens=0, by_source=False):
        if shuffle:
            calls.append(seed)
        for i, batch in enumerate(real_batches(examples, batch_size, shuffle=shuffle, seed=seed,
                                               batch_tokens=batch_tokens, by_source=by_source)):
            if shuffle and len(calls) == int(stop_epoch) and i == int(stop_after):
                stopped()
            yield batch
    training.bucketed_batches = batches
elif stop.startswith("save:"):
    real_save = torch.save
    def save(obj, f, *args, **kwargs):
        if getattr(f, "name", "").endswith(stop[5:] + ".tmp"):
            buffer = io.BytesIO()
            real_save(obj, buffer)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            stopped()
        real_save(obj, f, *args, **kwargs)
    torch.save = save

words = [f"w{i}" for i in range(10)]
rng = random.Random(0)
def rows(n):
    out = []
    for _ in range(n):
        src = [rng.choice(words) for _ in range(rng.randint(2, 7))]
        out.append({"docstring_tokens": src, "code_tokens": src[::-1]})
    return out
vocab = Vocabulary(SPECIALS + words)
train, valid = (encode_pairs(rows(n), vocab, vocab, with_copy=True) for n in (96, 16))
config = Seq2SeqConfig(model="attention", src_vocab_size=len(vocab), trg_vocab_size=len(vocab), embed_dim=16,
                       hidden_dim=32, num_layers=2, dropout=0.3, teacher_forcing=0.5, max_src_len=10,
                       max_trg_len=10, batch_size=16, epochs=3, patience=3, lr=1e-2, seed=3,
                       batch_tokens=64, lr_schedule="inverse_sqrt", warmup_steps=4)  # the schedule resumes too
result = training.train_model(config, train, valid, vocab, vocab, checkpoint_dir=ckpt_dir, device="cpu",
                              progress=False)
torch.save({"model": result.model.state_dict(), "history": result.history}, result_file)
'''


def _train_process(tmp_path, name: str, stop: str = "never") -> None:
    """Run TRAIN_SCRIPT; with a stop, SIGKILL it when it gets there (mid-epoch or mid-save)."""
    import signal
    import subprocess
    import sys

    from utils.paths import REPO_ROOT

    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    cmd = [sys.executable, str(script), str(tmp_path / name), str(tmp_path / f"{name}.result"), stop]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    output = []
    try:
        for line in proc.stdout:
            output.append(line)
            if line.strip() == "STOPPED":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.stdout.close()
    if stop == "never":
        assert proc.returncode == 0, "".join(output)
    else:
        assert proc.returncode == -signal.SIGKILL and output[-1].strip() == "STOPPED", "".join(output)


def test_a_killed_run_resumes_to_the_same_weights_and_history(tmp_path) -> None:
    """SIGKILL mid-epoch, then again halfway through writing a checkpoint: the run loses at most the
    epoch in progress and ends exactly where an uninterrupted run ends."""
    _train_process(tmp_path, "whole")
    _train_process(tmp_path, "killed", stop="batch:2:3")  # mid-way through epoch 2
    assert load_checkpoint(tmp_path / "killed" / "attention_last.pt")["epoch"] == 1
    _train_process(tmp_path, "killed", stop="save:attention_last.pt")  # resumes, dies writing epoch 2's checkpoint
    assert (tmp_path / "killed" / "attention_last.pt.tmp").is_file()  # half a checkpoint, never renamed
    assert load_checkpoint(tmp_path / "killed" / "attention_last.pt")["epoch"] == 1  # the old one is intact
    _train_process(tmp_path, "killed")

    whole, killed = (torch.load(tmp_path / f"{n}.result", weights_only=True) for n in ("whole", "killed"))
    assert _metrics(killed["history"]) == _metrics(whole["history"]) and len(whole["history"]) == 3
    assert whole["model"].keys() == killed["model"].keys()
    assert all(torch.equal(whole["model"][k], killed["model"][k]) for k in whole["model"])
    for name in ("attention_best.pt", "attention_last.pt"):
        a, b = (load_checkpoint(tmp_path / run / name) for run in ("whole", "killed"))
        assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert not (tmp_path / "killed" / "attention_last.pt.tmp").exists()


def test_teacher_forcing_schedules() -> None:
    """Constant: the configured ratio at every step; linear: 1.0 at the first step, falling to the
    configured ratio at the end of the decay epochs, and staying there."""
    constant = Seq2SeqConfig(teacher_forcing=0.5)
    assert [teacher_forcing_ratio(constant, s, 10) for s in (0, 5, 100)] == [0.5, 0.5, 0.5]
    linear = Seq2SeqConfig(teacher_forcing=0.5, teacher_forcing_schedule="linear", teacher_forcing_decay_epochs=2)
    ratios = [teacher_forcing_ratio(linear, s, 10) for s in (0, 10, 20, 30)]
    assert ratios == pytest.approx([1.0, 0.75, 0.5, 0.5])


def test_linear_schedule_is_recorded_per_epoch(tmp_path, run) -> None:
    result, _ = run(tmp_path, epochs=2, teacher_forcing=0.0, teacher_forcing_schedule="linear",
                    teacher_forcing_decay_epochs=2)
    first, second = (h["teacher_forcing"] for h in result.history)
    assert 1.0 > first > 0.5 > second > 0.0  # the mean ratio of each epoch's steps


def test_plateau_schedule_lowers_the_learning_rate_after_an_epoch_without_improvement(tmp_path, run) -> None:
    """With a learning rate of 0 the validation loss never improves after epoch 1: "plateau" halves
    the rate's factor after each such epoch (kept in the checkpoint for resuming); "constant" does not."""
    for schedule, factor in (("plateau", 0.25), ("constant", 1.0)):
        run(tmp_path / schedule, epochs=3, lr=0.0, patience=5, lr_schedule=schedule)
        assert load_checkpoint(tmp_path / schedule / "rnn_last.pt", "cpu")["lr_factor"] == factor
    result, _ = run(tmp_path / "real", epochs=3, lr=1e-2, patience=5, lr_schedule="plateau", lr_decay=0.1)
    lrs = [h["lr"] for h in result.history]
    improved = [h["val_loss"] < min([math.inf] + [g["val_loss"] for g in result.history[:i]])
                for i, h in enumerate(result.history)]
    expected, factor = [], 1.0
    for ok in improved:  # the rate an epoch ends with: lowered after each epoch that did not improve
        expected.append(1e-2 * factor)
        factor *= 1.0 if ok else 0.1
    assert lrs[0] == pytest.approx(1e-2) and lrs == pytest.approx(expected)


def test_checkpoint_from_before_the_recipe_fields_resumes(tmp_path, run) -> None:
    """A ``_last.pt`` whose config lacks the newer training fields was trained with their defaults:
    it resumes, and a run asking for other values is told what differs."""
    run(tmp_path, epochs=1)
    path = tmp_path / "rnn_last.pt"
    ckpt = torch.load(path, weights_only=True)
    for key in ("teacher_forcing_schedule", "teacher_forcing_decay_epochs", "label_smoothing", "lr_schedule",
                "lr_decay"):
        del ckpt["config"][key]
    del ckpt["lr_factor"]
    torch.save(ckpt, path)
    result, lines = run(tmp_path, epochs=2)
    assert result.resumed_from_epoch == 1 and len(result.history) == 2
    with pytest.raises(CheckpointError, match="label_smoothing=0.0 \\(now 0.1\\)"):
        run(tmp_path, epochs=3, label_smoothing=0.1)


def test_learning_rate_schedules_warm_up_then_hold_or_fall() -> None:
    """Linear warmup to the peak over warmup_steps; then "constant" (and "plateau", whose cuts come per
    epoch) hold it, "inverse_sqrt" falls as 1/sqrt(step): a quarter of the peak at 16x the warmup."""
    isqrt = Seq2SeqConfig(lr_schedule="inverse_sqrt", warmup_steps=10)
    assert [schedule_factor(isqrt, s) for s in (0, 4, 9, 39, 159)] == pytest.approx([0.1, 0.5, 1.0, 0.5, 0.25])
    for schedule in ("constant", "plateau"):
        held = Seq2SeqConfig(lr_schedule=schedule, warmup_steps=10)
        assert [schedule_factor(held, s) for s in (0, 9, 500)] == pytest.approx([0.1, 1.0, 1.0])
    assert schedule_factor(Seq2SeqConfig(), 0) == 1.0  # no warmup: the peak from the first step


def test_token_batches_train_with_the_scaled_rate_on_the_schedule(tmp_path, run, splits) -> None:
    """Batches of at most 40 target positions; the rate each epoch ends with follows inverse_sqrt from
    the peak lr * sqrt(40 / LR_REFERENCE_TOKENS), step by step."""
    from utils.config import LR_REFERENCE_TOKENS
    from utils.data.batch import batch_indices

    result, _ = run(tmp_path, epochs=2, batch_tokens=40, lr_schedule="inverse_sqrt", warmup_steps=3)
    train = splits[0]
    steps = [len(batch_indices(train, 16, seed=e, batch_tokens=40)) for e in (1, 2)]  # seed 0 + epoch
    assert steps[0] > len(train) / 16  # smaller batches than 16 sequences: more steps
    peak = 1e-2 * (40 / LR_REFERENCE_TOKENS) ** 0.5
    ends = [peak * (3 / (sum(steps[:e]) + 1)) ** 0.5 for e in (1, 2)]  # the factor of the step after the last
    assert [h["lr"] for h in result.history] == pytest.approx(ends)


def test_a_token_batch_smaller_than_a_target_is_refused_before_training(tmp_path, run) -> None:
    with pytest.raises(ValueError, match="batch_tokens=4 is smaller than the longest target sequence"):
        run(tmp_path, batch_tokens=4)
    assert not any(tmp_path.iterdir())  # nothing written


def test_linear_schedule_warms_up_then_falls_to_zero_at_its_horizon() -> None:
    linear = Seq2SeqConfig(lr_schedule="linear", warmup_steps=10)
    factors = [schedule_factor(linear, s, 110) for s in (0, 9, 10, 60, 109, 110, 200)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.01, 0.0, 0.0])


def test_a_linear_warmup_longer_than_the_horizon_is_scaled_to_half_of_it(tmp_path, run) -> None:
    """The Transformer's 400-step minimum warmup on a run of about 130 steps (params/quick.yaml): the rate
    still peaks and falls to 0, so a run labelled "schedule" really ended by it."""
    long = Seq2SeqConfig(lr_schedule="linear", warmup_steps=400)
    factors = [schedule_factor(long, s, 20) for s in (0, 9, 10, 15, 19, 20)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.1, 0.0])
    assert schedule_factor(long, 399, 2000) == 1.0 and schedule_factor(long, 0, 2000) == 1 / 400  # room: kept
    result, _ = run(tmp_path, epochs=2, lr_schedule="linear", warmup_steps=400)
    assert result.ended_by == "schedule" and result.history[-1]["lr"] == 0.0


def test_schedule_steps_count_every_epochs_batches(splits) -> None:
    from utils.data.batch import batch_indices

    config = Seq2SeqConfig(epochs=3, batch_size=16, batch_tokens=40)
    expected = sum(len(batch_indices(splits[0], 16, seed=config.seed + e, batch_tokens=40)) for e in (1, 2, 3))
    assert schedule_steps(splits[0], config) == expected


def test_a_linear_run_ends_by_its_schedule_and_says_so(tmp_path, run) -> None:
    """The rate after the last step is zero; the best checkpoint records how and when training ended:
    "schedule" for a linear run, "cap" for a constant one stopped by ``epochs``, "patience" for early stopping."""
    result, _ = run(tmp_path / "linear", epochs=3, lr_schedule="linear", warmup_steps=2)
    assert result.history[-1]["lr"] == 0.0 and result.history[0]["lr"] > result.history[1]["lr"] > 0.0
    assert result.ended_by == "schedule"
    best = load_checkpoint(tmp_path / "linear" / "rnn_best.pt")
    assert best["ended_by"] == "schedule" and best["epochs_run"] == 3
    capped, _ = run(tmp_path / "constant", epochs=2, lr_schedule="constant")
    assert capped.ended_by == "cap" and load_checkpoint(tmp_path / "constant" / "rnn_best.pt")["ended_by"] == "cap"
    stalled, _ = run(tmp_path / "stalled", epochs=6, lr=0.0, patience=2, lr_schedule="linear")
    assert stalled.ended_by == "patience" and len(stalled.history) == 3


def test_an_interrupted_linear_run_resumes_on_the_same_schedule(tmp_path, run) -> None:
    """Cut after epoch 2 of 4 and restarted: the rate continues where it was (no second warmup, the
    same horizon), and the run ends exactly as an uninterrupted one."""
    kw = dict(epochs=4, dropout=0.3, lr_schedule="linear", warmup_steps=3)
    full, _ = run(tmp_path / "full", **kw)

    def crash_in_epoch_3(line: str) -> None:
        if "epoch 3:" in line:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "cut", log=crash_in_epoch_3, **kw)
    resumed, _ = run(tmp_path / "cut", **kw)
    assert resumed.resumed_from_epoch == 2
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]
    assert _metrics(resumed.history) == _metrics(full.history) and resumed.ended_by == "schedule"
    with pytest.raises(CheckpointError, match="linear schedule that ends after epoch 4 \\(now 6\\)"):
        run(tmp_path / "cut", **{**kw, "epochs": 6})


@pytest.mark.parametrize("name, value", [("epochs", 0), ("patience", 0), ("epochs", 2.5), ("lr", -1e-3),
                                         ("warmup_steps", -1)])
def test_invalid_training_settings_are_refused_with_their_name(name, value) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Seq2SeqConfig(**{name: value})
