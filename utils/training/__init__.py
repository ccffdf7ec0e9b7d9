"""Training: fitting a model's weights to the training pairs.

``trainer`` is the one trainer every model goes through (``train_model``: Adam, the learning-rate
schedule, gradient clipping, teacher forcing, early stopping on the teacher-forced validation loss,
resumable checkpoints), with the loss on a split it also reports (``evaluate_loss``); after every
epoch it decodes the validation sources greedily and records their token accuracy. ``parallel``
trains several models at once on a CPU, one process and one core each (``train_models``,
``resolve_workers``). Training reads the data, the models, their CPU shortcut (``utils.fast``), the
checkpoints, greedy decoding and the token accuracy of ``utils.metrics``; evaluation and the studies
sit above it.
"""
from __future__ import annotations

from utils.training.parallel import resolve_workers, train_models
from utils.training.trainer import TrainResult, train_model

__all__ = ["TrainResult", "resolve_workers", "train_model", "train_models"]
