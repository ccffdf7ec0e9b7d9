"""The trainer: Adam, gradient clipping, teacher forcing, early stopping, resumable checkpoints.

Each epoch records, kept apart and labelled:
- ``train_loss``: mean cross-entropy per target token while training (dropout on, teacher forcing
  at the configured ratio);
- ``val_loss`` / ``val_ppl``: teacher-forced validation loss and its perplexity (the honest one:
  every step reads the reference prefix, as perplexity is defined);
- ``val_token_acc_greedy``: free-running greedy decoding of the validation sources, token accuracy
  against the references in percent (no reference tokens are fed to the model).

Losses come from the model (``model.loss``) or from the CPU shortcut to the same function
(``utils.fast.fast_loss``), as ``Seq2SeqConfig.fast_path`` resolves on the training device
(``training_loss``).
"""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.config import Seq2SeqConfig, resolve_device, resolve_fast_path
from utils.data.batch import Batch, Example, batch_indices, bucketed_batches, check_batch_tokens
from utils.data.vocabulary import Vocabulary
from utils.decoding.search import decode_examples
from utils.fast import fast_loss
from utils.metrics import token_accuracy
from utils.models import Seq2SeqModel, build_model
from utils.paths import check_not_shipped, project_path
from utils.precision import autocast, grad_scaler, resolve_precision

# Fields that change the architecture: a checkpoint that differs in any of them cannot be resumed.
ARCHITECTURE_FIELDS = ("model", "vocabulary", "src_vocab_size", "trg_vocab_size", "embed_dim", "hidden_dim",
                       "num_layers", "n_heads", "ff_dim", "max_positions", "retrieval_input",
                       "recurrent_variant", "direction")
# Fields that change how training goes on: resuming with other values would mix two runs in one
# history. (``epochs`` and ``patience`` may change: more epochs continue a finished run.)
TRAINING_FIELDS = ("dropout", "lr", "weight_decay", "clip", "batch_size", "batch_tokens", "teacher_forcing",
                   "teacher_forcing_schedule", "teacher_forcing_decay_epochs", "label_smoothing", "lr_schedule",
                   "lr_decay", "warmup_steps", "seed", "max_src_len", "max_trg_len", "precision")
# ``fast_path`` is not among them: the fast and the plain loss compute the same function
# (tests/test_fast.py), so a checkpoint may resume under the other one.
# what a checkpoint saved before a field existed trained with
_DEFAULTS = {f.name: f.default for f in fields(Seq2SeqConfig)}


@dataclass
class TrainResult:
    model: Seq2SeqModel
    history: list[dict]
    best_path: Path
    last_path: Path
    seconds: float
    resumed_from_epoch: int = 0
    best_epoch: int = 0
    notes: list[str] = field(default_factory=list)
    ended_by: str = ""  # "schedule", "patience" or "cap" (``ended_by``)


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def training_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float, generator: torch.Generator | None,
                  smoothing: float, fast: bool) -> tuple[torch.Tensor, int]:
    """The summed loss over ``batch``'s target tokens, and their number: the model's own (``model.loss``)
    or, with ``fast``, the CPU shortcut (``fast_loss``), the same function either way."""
    if fast:
        return fast_loss(model, batch, teacher_forcing, generator, smoothing)
    return model.loss(batch, teacher_forcing, generator, smoothing)


@torch.no_grad()
def evaluate_loss(model: Seq2SeqModel, examples: Sequence[Example], batch_size: int,
                  device: torch.device, precision: str = "fp32", fast_path: str = "auto",
                  batch_tokens: int = 0, by_source: bool = False) -> float:
    """Teacher-forced mean cross-entropy per target token (dropout off), in a resolved ``precision``,
    on the loss path ``fast_path`` chooses (``resolve_fast_path``), batched as in training."""
    model.eval()
    fast = resolve_fast_path(fast_path, device)
    total, tokens = 0.0, 0
    for batch in bucketed_batches(examples, batch_size, shuffle=False, batch_tokens=batch_tokens, by_source=by_source):
        with autocast(precision, device):
            loss, n = training_loss(model, batch.to(device), 1.0, None, 0.0, fast)
        total += float(loss)
        tokens += n
    return total / max(tokens, 1)


def greedy_token_accuracy(model: Seq2SeqModel, examples: Sequence[Example], device: torch.device,
                          max_len: int, batch_size: int = 128, precision: str = "fp32") -> float:
    """Mean per-example token accuracy (percent) of free-running greedy outputs, on target ids."""
    hyp = decode_examples(model, examples, batch_size=batch_size, max_len=max_len, device=device,
                          precision=precision)
    refs = [e.trg_ext if e.trg_ext is not None else e.trg for e in examples]
    accs = [token_accuracy(h, r) for h, r in zip(hyp.tokens, refs)]
    return 100.0 * sum(accs) / max(len(accs), 1)


def schedule_factor(config: Seq2SeqConfig, step: int, total_steps: int = 0) -> float:
    """The learning rate at ``step`` (0-based) over ``config.learning_rate``: a linear warmup over
    ``warmup_steps``, then 1; for "inverse_sqrt", sqrt(warmup_steps / (step + 1)); for "linear", a
    straight line from 1 after the warmup to 0 after ``total_steps`` (the schedule's horizon), its
    warmup at most half the horizon (a longer one would end the run before the rate fell at all).
    ("plateau"'s reductions come on top, per epoch: ``TrainingState.lr_factor``.)"""
    warmup = config.warmup_steps
    if config.lr_schedule == "linear" and total_steps:
        warmup = min(warmup, total_steps // 2)
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "inverse_sqrt":
        return (warmup / (step + 1)) ** 0.5
    if config.lr_schedule == "linear":
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return 1.0


def schedule_steps(examples: Sequence[Example], config: Seq2SeqConfig) -> int:
    """The optimizer steps of ``config.epochs`` epochs over ``examples`` (each epoch's batches, as
    ``train_epoch`` makes them): the horizon of the "linear" schedule."""
    return sum(len(batch_indices(examples, config.batch_size, shuffle=True, seed=config.seed + epoch,
                                 batch_tokens=config.batch_tokens, by_source=config.reviews))
               for epoch in range(1, config.epochs + 1))


def ended_by(state: "TrainingState", config: Seq2SeqConfig) -> str:
    """How a finished run ended: "patience" (early stopping), "schedule" (a "linear" schedule reached
    zero) or "cap" (the epoch limit, in the middle of any other schedule)."""
    if state.bad_epochs >= config.patience:
        return "patience"
    return "schedule" if config.lr_schedule == "linear" else "cap"


def teacher_forcing_ratio(config: Seq2SeqConfig, step: int, steps_per_epoch: int) -> float:
    """The probability of feeding the reference at training step ``step`` (0-based): constant, or
    falling linearly from 1.0 to ``config.teacher_forcing`` over its decay epochs."""
    if config.teacher_forcing_schedule == "constant":
        return config.teacher_forcing
    progress = min(1.0, step / max(1, config.teacher_forcing_decay_epochs * steps_per_epoch))
    return 1.0 - (1.0 - config.teacher_forcing) * progress


def _check_resumable(ckpt: dict, config: Seq2SeqConfig, src_vocab: Vocabulary, trg_vocab: Vocabulary,
                     path: Path) -> None:
    """A CheckpointError unless ``ckpt`` was saved by this very run: same architecture, training
    settings and vocabularies."""
    saved = ckpt["config"]
    changed = lambda names: [f"{f}={saved.get(f, _DEFAULTS[f])!r} (now {getattr(config, f)!r})"  # noqa: E731
                             for f in names if saved.get(f, _DEFAULTS[f]) != getattr(config, f)]
    problems = []
    if arch := changed(ARCHITECTURE_FIELDS):
        problems.append(f"a different model ({', '.join(arch)})")
    if train := changed(TRAINING_FIELDS):
        problems.append(f"other training settings ({', '.join(train)})")
    vocabs = [name for name, key, vocab in (("source", "src_vocab", src_vocab), ("target", "trg_vocab", trg_vocab))
              if list(ckpt[key]) != list(vocab.itos)]
    if vocabs:
        problems.append(f"another {' and '.join(vocabs)} vocabulary (the data was preprocessed again?)")
    if config.lr_schedule == "linear" and saved.get("epochs") != config.epochs:
        problems.append(f"a linear schedule that ends after epoch {saved.get('epochs')} (now {config.epochs}); "
                        "its horizon cannot move")
    if problems:
        raise CheckpointError(f"{path} cannot be resumed: it was saved with {'; '.join(problems)}. "
                              "Delete it, or pass resume=False, to start this model over.")


@dataclass
class TrainingState:
    """What carries over from epoch to epoch, saved in ``<model>_last.pt`` to resume from."""

    history: list[dict] = field(default_factory=list)
    epoch: int = 0                # epochs finished
    best_val: float = math.inf    # lowest validation loss so far
    best_epoch: int = 0
    bad_epochs: int = 0           # epochs since the last improvement
    lr_factor: float = 1.0        # the learning rate's reduction so far ("plateau" schedule)
    total_steps: int = 0          # the "linear" schedule's horizon, fixed when the run starts

    def finished(self, config: Seq2SeqConfig) -> bool:
        """Early-stopped, or at the epoch limit (a run resumed with more epochs goes on)."""
        return self.bad_epochs >= config.patience or self.epoch >= config.epochs


@dataclass
class Optimisation:
    """The optimizer and everything else a resumed run must restore to continue exactly."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # teacher-forcing draws

    @classmethod
    def create(cls, model: Seq2SeqModel, config: Seq2SeqConfig, state: TrainingState, precision: str,
               device: torch.device) -> "Optimisation":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: schedule_factor(config, s, state.total_steps) * state.lr_factor)
        scaler = grad_scaler(precision, device)  # fp16 only; bf16 and fp32 need none
        return cls(optimizer, scheduler, scaler, torch.Generator().manual_seed(config.seed))


def _resume(path: Path, config: Seq2SeqConfig, src_vocab: Vocabulary, trg_vocab: Vocabulary,
            model: Seq2SeqModel, opt: Optimisation, state: TrainingState, device: torch.device) -> None:
    """Restore weights, optimizer, random generators and ``state`` (in place) from ``path``."""
    ckpt = load_checkpoint(path, device)
    _check_resumable(ckpt, config, src_vocab, trg_vocab, path)
    model.load_state_dict(ckpt["model_state"])
    opt.optimizer.load_state_dict(ckpt["optimizer_state"])
    opt.scheduler.load_state_dict(ckpt["scheduler_state"])
    if "scaler_state" in ckpt:
        opt.scaler.load_state_dict(ckpt["scaler_state"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    opt.generator.set_state(ckpt["tf_rng"].cpu())
    state.history, state.epoch, state.best_val = list(ckpt["history"]), ckpt["epoch"], ckpt["best_val"]
    state.best_epoch, state.bad_epochs = ckpt["best_epoch"], ckpt["bad_epochs"]
    state.lr_factor = ckpt.get("lr_factor", 1.0)
    state.total_steps = ckpt.get("total_steps", state.total_steps)  # the horizon stays where it was


def train_epoch(model: Seq2SeqModel, examples: Sequence[Example], config: Seq2SeqConfig, epoch: int,
                opt: Optimisation, device: torch.device, precision: str, progress: bool = True) -> dict:
    """One pass over the training pairs (``epoch`` counts from 1): the record's training figures."""
    model.train()
    fast = resolve_fast_path(config.fast_path, device)
    batching = dict(shuffle=True, seed=config.seed + epoch, batch_tokens=config.batch_tokens, by_source=config.reviews)
    n_batches = len(batch_indices(examples, config.batch_size, **batching))
    bar = tqdm(bucketed_batches(examples, config.batch_size, **batching), total=n_batches,
               desc=f"{config.name} epoch {epoch}", disable=not progress,
               file=sys.stdout, ascii=True, ncols=110, mininterval=10.0)
    total_loss, total_tokens, ratios, e0 = 0.0, 0, [], time.perf_counter()
    for i, batch in enumerate(bar):
        batch = batch.to(device)
        ratios.append(teacher_forcing_ratio(config, (epoch - 1) * n_batches + i, n_batches))
        with autocast(precision, device):  # the backward pass runs in the forward's dtypes
            loss, n = training_loss(model, batch, ratios[-1], opt.generator, config.label_smoothing, fast)
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss / n).backward()
        opt.scaler.unscale_(opt.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        total_loss += loss.item()
        total_tokens += n
        bar.set_postfix(loss=f"{total_loss / total_tokens:.3f}",
                        tok_s=f"{total_tokens / (time.perf_counter() - e0):.0f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - e0
    return {"train_loss": total_loss / max(total_tokens, 1), "train_seconds": seconds,
            "train_tokens_per_s": total_tokens / max(seconds, 1e-9),
            "teacher_forcing": sum(ratios) / max(len(ratios), 1)}


def _validate(model: Seq2SeqModel, valid_examples: Sequence[Example], config: Seq2SeqConfig, device: torch.device,
              precision: str, epoch: int, trained: dict) -> dict:
    """The epoch's record: its training figures, the teacher-forced validation loss and perplexity,
    and the free-running greedy token accuracy."""
    val_loss = evaluate_loss(model, valid_examples, config.batch_size, device, precision, config.fast_path,
                             config.batch_tokens, config.reviews)
    return {
        "epoch": epoch,
        "train_loss": trained["train_loss"],
        "val_loss": val_loss,
        "val_ppl": math.exp(min(val_loss, 50.0)),
        "val_token_acc_greedy": greedy_token_accuracy(model, valid_examples, device, config.max_trg_len + 1,
                                                      precision=precision),
        "train_seconds": trained["train_seconds"],
        "train_tokens_per_s": trained["train_tokens_per_s"],
        "teacher_forcing": trained["teacher_forcing"],
        "precision": precision,
    }


def _end_of_epoch(record: dict, state: TrainingState, config: Seq2SeqConfig, model: Seq2SeqModel,
                  opt: Optimisation, vocabs: tuple[Vocabulary, Vocabulary], paths: tuple[Path, Path],
                  log: Callable[[str], None]) -> None:
    """Keep the epoch's record, the best checkpoint when it improved, the schedule's reduction when
    it did not, and the checkpoint to resume from."""
    state.history.append(record)
    improved = record["val_loss"] < state.best_val
    if improved:
        state.best_val, state.best_epoch, state.bad_epochs = record["val_loss"], state.epoch, 0
        save_checkpoint(paths[0], model, *vocabs, state.history, best_epoch=state.best_epoch)
    else:
        state.bad_epochs += 1
        if config.lr_schedule == "plateau":
            state.lr_factor *= config.lr_decay
    log(f"[{config.name}] epoch {state.epoch}: train loss {record['train_loss']:.3f} | val loss "
        f"{record['val_loss']:.3f} (ppl {record['val_ppl']:.1f}, teacher-forced) | greedy val token acc "
        f"{record['val_token_acc_greedy']:.1f}% | {record['train_tokens_per_s']:.0f} tok/s | "
        f"{record['epoch_seconds']:.0f}s"
        + (" | best" if improved else f" | no improvement ({state.bad_epochs}/{config.patience})"))
    save_checkpoint(paths[1], model, *vocabs, state.history,
                    optimizer_state=opt.optimizer.state_dict(), scheduler_state=opt.scheduler.state_dict(),
                    scaler_state=opt.scaler.state_dict(), torch_rng=torch.get_rng_state(),
                    tf_rng=opt.generator.get_state(), epoch=state.epoch, best_val=state.best_val,
                    best_epoch=state.best_epoch, bad_epochs=state.bad_epochs, finished=state.finished(config),
                    lr_factor=state.lr_factor, total_steps=state.total_steps)


def train_model(
    config: Seq2SeqConfig,
    train_examples: Sequence[Example],
    valid_examples: Sequence[Example],
    src_vocab: Vocabulary,
    trg_vocab: Vocabulary,
    checkpoint_dir: str | Path,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train ``config.model``; keep ``<name>_best.pt`` (lowest validation loss) and ``<name>_last.pt``
    (``config.name``: the model, with "+retrieval" when it reads retrieved code).

    With ``resume`` an existing ``_last.pt`` continues from its last finished epoch; a finished run
    (early-stopped or at ``config.epochs``) returns at once with the best model.
    """
    if not train_examples or not valid_examples:
        raise ValueError("Training needs non-empty train and valid splits; run notebooks/01_preprocess.ipynb first.")
    check_batch_tokens(train_examples, config.batch_tokens)
    check_not_shipped(checkpoint_dir)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    ckpt_dir = project_path(checkpoint_dir)
    best_path, last_path = ckpt_dir / f"{config.name}_best.pt", ckpt_dir / f"{config.name}_last.pt"
    config = copy.deepcopy(config)
    config.src_vocab_size, config.trg_vocab_size = len(src_vocab), len(trg_vocab)
    config.vocabulary = "bpe" if trg_vocab.is_subword else "word"

    precision = resolve_precision(config.precision, device)
    set_seed(config.seed)
    model = build_model(config).to(device)
    state = TrainingState(total_steps=schedule_steps(train_examples, config) if config.lr_schedule == "linear" else 0)
    opt = Optimisation.create(model, config, state, precision, device)
    notes: list[str] = []
    if resume and last_path.exists():
        _resume(last_path, config, src_vocab, trg_vocab, model, opt, state, device)
        notes.append(f"resumed from {last_path} after epoch {state.epoch}")
        log(f"[{config.name}] resuming after epoch {state.epoch} ({last_path})")
    start_epoch = state.epoch

    t0 = time.perf_counter()
    while not state.finished(config):
        state.epoch += 1
        e0 = time.perf_counter()
        trained = train_epoch(model, train_examples, config, state.epoch, opt, device, precision, progress)
        record = _validate(model, valid_examples, config, device, precision, state.epoch, trained)
        record.update(epoch_seconds=time.perf_counter() - e0, lr=opt.optimizer.param_groups[0]["lr"])
        _end_of_epoch(record, state, config, model, opt, (src_vocab, trg_vocab), (best_path, last_path), log)
    seconds = time.perf_counter() - t0

    end = _load_best(model, state, config, (src_vocab, trg_vocab), (best_path, last_path), device)
    return TrainResult(model, state.history, best_path, last_path, seconds, start_epoch, state.best_epoch, notes,
                       end)


def _load_best(model: Seq2SeqModel, state: TrainingState, config: Seq2SeqConfig,
               vocabs: tuple[Vocabulary, Vocabulary], paths: tuple[Path, Path], device: torch.device) -> str:
    """Load the best checkpoint's weights into ``model`` (eval mode); make it carry the full curves
    and how the run ended (returned: ``ended_by``)."""
    best_path, last_path = paths
    if not best_path.exists():
        raise CheckpointError(f"No best checkpoint at {best_path}; delete {last_path} and train again.")
    best = load_checkpoint(best_path, device)
    model.load_state_dict(best["model_state"])
    model.eval()
    end = ended_by(state, config)
    if len(best["history"]) != len(state.history) or best.get("ended_by") != end:
        save_checkpoint(best_path, model, *vocabs, state.history, best_epoch=state.best_epoch, ended_by=end,
                        epochs_run=state.epoch)
    return end
