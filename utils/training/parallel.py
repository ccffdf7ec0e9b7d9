"""Training several models at once on a CPU: one process per model, one core each.

On a CPU the models' per-step work is small: a second thread speeds one model up by much less than
two (the attention model at the screening size: 3,800 target pieces per second on one thread, 6,100
on two), so two models side by side, one core each, finish sooner than one after the other on both
cores (docs/benchmarks.md). ``train_models`` runs ``workers`` processes, each training one model at a
time with ``train_model`` (longest first, so the last to finish is short), and returns every model's
``TrainResult`` from its checkpoints. Each model's epoch lines go to ``<checkpoint_dir>/<name>.log``
and, once it has finished, to ``log``. On CUDA, or with one worker, models train one after the other
in this process. Every run resumes from its checkpoints, so an interrupted call continues.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Mapping

import torch

from utils.config import REVIEWER, Seq2SeqConfig, resolve_device
from utils.data.batch import Example
from utils.data.vocabulary import Vocabulary
from utils.paths import project_path
from utils.training.trainer import TrainResult, train_model

# relative cost of an epoch on one core beside another model, from make main at 64/128 with 4,000-piece
# batches in bf16 (docs/benchmarks.md: rnn 127 s, lstm 179, transformer 275, attention 415, copy 435),
# and of reading retrieved code ("+retrieval": 2.9-3.3x their plain epochs, an earlier run's training seconds);
# the reviewer's batches sorted by its code's length (utils.data.batch) took 113-122 s an epoch alone on two
# threads where the target-sorted ones took 203-232 s, so its 2.5 (364 s beside another model) becomes 1.4
EPOCH_COST = {"rnn": 1.0, "lstm": 1.4, "transformer": 2.2, "attention": 3.3, "copy": 3.4, REVIEWER: 1.4}
RETRIEVAL_COST = 3.0


def resolve_workers(workers: int, device: torch.device, n_models: int) -> int:
    """Processes to train in: ``workers`` if positive, else (0, "auto") one per CPU core on a CPU, at
    most one per model; always 1 on CUDA (one GPU, used by one model at a time)."""
    if workers < 0:
        raise ValueError(f"workers must be 0 (one per core) or more, got {workers}.")
    if device.type != "cpu":
        return 1
    return max(1, min(workers or (os.cpu_count() or 1), n_models))


def model_vocabs(config: Seq2SeqConfig, src_vocab: Vocabulary, trg_vocab: Vocabulary) -> tuple[Vocabulary, Vocabulary]:
    """(source, target) vocabularies of the model: the docstrings' and the code's, swapped for the reviewer."""
    return (trg_vocab, src_vocab) if config.reviews else (src_vocab, trg_vocab)


def training_cost(config: Seq2SeqConfig) -> float:
    """A model's whole training in units of an rnn epoch: its epoch's cost times its epochs (the
    horizon of its schedule, or the cap of early stopping); the longest are started first."""
    retrieval = RETRIEVAL_COST if config.retrieval_input != "none" else 1.0
    return EPOCH_COST.get(config.name, EPOCH_COST.get(config.model, 1.0)) * retrieval * config.epochs


def _train_in_worker(config: Seq2SeqConfig, examples: tuple[list[Example], list[Example]],
                     vocabs: tuple[Vocabulary, Vocabulary], checkpoint_dir: str, resume: bool) -> str:
    """A worker's job: train one model on one thread, its epoch lines into ``<name>.log``."""
    torch.set_num_threads(1)
    log_path = project_path(checkpoint_dir) / f"{config.name}.log"
    with open(log_path, "a", encoding="utf-8") as f:
        def log(line: str) -> None:
            print(line, file=f, flush=True)
        train_model(config, *examples, *vocabs, checkpoint_dir=checkpoint_dir, device="cpu", resume=resume,
                    progress=False, log=log)
    return config.name


def train_models(configs: Mapping[str, Seq2SeqConfig], examples: Mapping[str, tuple[list[Example], list[Example]]],
                 src_vocab: Vocabulary, trg_vocab: Vocabulary, checkpoint_dir: str | Path,
                 device: str | torch.device | None = None, resume: bool = True, workers: int = 0,
                 log: Callable[[str], None] = print) -> dict[str, TrainResult]:
    """Train every model of ``configs`` (name -> config) on ``examples[config.source_kind]`` (train,
    valid); their results in ``configs``' order. ``src_vocab``/``trg_vocab`` are the docstrings' and the
    code's: the reviewer (code -> docstring) takes them the other way round."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    n = resolve_workers(workers, device, len(configs))
    if n > 1:
        project_path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        order = sorted(configs, key=lambda name: -training_cost(configs[name]))
        log(f"training {len(configs)} models in {n} processes, one core each; epoch lines in "
            f"{checkpoint_dir}/<model>.log")
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_train_in_worker, configs[name], examples[configs[name].source_kind],
                                model_vocabs(configs[name], src_vocab, trg_vocab), str(checkpoint_dir), resume)
                    for name in order]
            try:
                for job in as_completed(jobs):
                    name = job.result()  # a worker's exception is raised here
                    log((project_path(checkpoint_dir) / f"{name}.log").read_text(encoding="utf-8").rstrip())
            except BaseException:
                for job in jobs:  # the models not started yet are not started; the checkpoints keep the rest
                    job.cancel()
                raise
    results = {}
    for name, config in configs.items():  # the finished runs reload at once; with one worker, they train here
        results[name] = train_model(config, *examples[config.source_kind], *model_vocabs(config, src_vocab, trg_vocab),
                                    checkpoint_dir=checkpoint_dir, device=device, resume=resume or n > 1,
                                    log=log if n == 1 else (lambda _: None))
    return results
