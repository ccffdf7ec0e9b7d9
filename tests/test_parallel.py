"""Training several models side by side: how many processes, and that two processes give each model
the run it would have had alone (same history, reloadable checkpoints, logs, errors passed on)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from utils.config import REVIEWER, make_config
from utils.training.parallel import EPOCH_COST, model_vocabs, resolve_workers, train_models, training_cost
from utils.training.trainer import train_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_workers_one_per_core_at_most_one_per_model_and_one_on_cuda(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_workers(0, CPU, 7) == 2 and resolve_workers(0, CPU, 1) == 1
    assert resolve_workers(3, CPU, 7) == 3 and resolve_workers(3, CPU, 2) == 2
    assert resolve_workers(0, CUDA, 7) == 1 and resolve_workers(4, CUDA, 7) == 1
    with pytest.raises(ValueError, match="workers must be 0 \\(one per core\\) or more, got -1"):
        resolve_workers(-1, CPU, 7)


def test_the_training_cost_counts_the_epochs_and_the_retrieved_code() -> None:
    """The longest training starts first: an epoch's cost times the epochs, so an rnn with many epochs
    can outlast an attention model with few; reading retrieved code costs more per epoch."""
    cost = {name: training_cost(make_config(name, epochs=4)) for name in ("rnn", "attention", "copy+retrieval")}
    assert cost["rnn"] < cost["attention"] < cost["copy+retrieval"]
    assert training_cost(make_config("attention", epochs=8)) == 2 * cost["attention"]
    assert training_cost(make_config("rnn", epochs=40)) > cost["attention"]


@pytest.fixture(scope="module")
def two_configs(tiny_config):
    return {name: tiny_config(name, epochs=2, batch_size=16, lr=1e-2, patience=3, max_trg_len=8)
            for name in ("rnn", "lstm")}


@pytest.fixture(scope="module")
def toy_splits(toy_examples):
    return {"none": (toy_examples(48, seed=1, min_len=2, max_len=6), toy_examples(12, seed=2, min_len=2, max_len=6))}


def test_the_reviewer_takes_the_vocabularies_the_other_way_round(toy_vocab) -> None:
    other = object()  # stands for the code's vocabulary
    assert model_vocabs(make_config("transformer"), toy_vocab, other) == (toy_vocab, other)
    assert model_vocabs(make_config("reviewer"), toy_vocab, other)[0] is other
    # its own epoch cost (it reads code), not that of the Transformer it is built as
    for name in (REVIEWER, "transformer"):
        assert training_cost(make_config(name, epochs=3)) == pytest.approx(3 * EPOCH_COST[name])


def test_two_workers_train_what_one_after_the_other_trains(tmp_path, two_configs, toy_splits, toy_vocab) -> None:
    lines: list[str] = []
    together = train_models(two_configs, toy_splits, toy_vocab, toy_vocab, checkpoint_dir=tmp_path / "two",
                            device="cpu", workers=2, log=lines.append)
    assert list(together) == ["rnn", "lstm"]  # the configs' order, whichever finished first
    for name, result in together.items():
        alone = train_model(two_configs[name], *toy_splits["none"], toy_vocab, toy_vocab,
                            checkpoint_dir=tmp_path / "one", device="cpu", progress=False, log=lambda _: None)
        assert [h["val_loss"] for h in result.history] == pytest.approx([h["val_loss"] for h in alone.history],
                                                                         rel=1e-5)
        assert result.resumed_from_epoch == 2  # reloaded from the worker's checkpoints, not trained again
        log_text = (tmp_path / "two" / f"{name}.log").read_text()
        assert "epoch 2: train loss" in log_text and log_text.rstrip() in lines
    assert lines[0].startswith("training 2 models in 2 processes")


def test_a_failing_worker_raises_its_error_in_the_caller(tmp_path, two_configs, toy_splits, toy_vocab) -> None:
    configs = {**two_configs, "lstm": dataclasses.replace(two_configs["lstm"], batch_tokens=3)}
    with pytest.raises(ValueError, match="batch_tokens=3 is smaller than the longest target sequence"):
        train_models(configs, toy_splits, toy_vocab, toy_vocab, checkpoint_dir=tmp_path, device="cpu",
                     workers=2, log=lambda _: None)


def test_one_worker_trains_here_with_the_epoch_lines_in_the_log(tmp_path, two_configs, toy_splits,
                                                                toy_vocab) -> None:
    lines: list[str] = []
    results = train_models(two_configs, toy_splits, toy_vocab, toy_vocab, checkpoint_dir=tmp_path, device="cpu",
                           workers=1, log=lines.append)
    assert [r.resumed_from_epoch for r in results.values()] == [0, 0]
    assert sum("epoch 2: train loss" in line for line in lines) == 2
    assert not list(tmp_path.glob("*.log"))
