"""The one configuration object: every hyperparameter and model choice, saved in each checkpoint."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from utils.precision import check_precision

MODEL_NAMES = ("rnn", "lstm", "attention", "copy", "transformer")
VOCABULARIES = ("word", "bpe")
TEACHER_FORCING_SCHEDULES = ("constant", "linear")
LR_SCHEDULES = ("constant", "plateau", "inverse_sqrt", "linear")
# The batch of target positions that ``lr`` is meant for when batches are counted in tokens: about what
# 64 functions of the default corpus take (57 pieces and <EOS> on average, padding apart).
LR_REFERENCE_TOKENS = 4000
FAST_PATHS = ("auto", "on", "off")
# What a model reads beside the docstring: nothing, or the code of the nearest training function
# (retrieve and edit, ``utils.data.neighbours``). A model name with RETRIEVAL_SUFFIX reads it.
RETRIEVAL_INPUTS = ("none", "top1")
RETRIEVAL_SUFFIX = "+retrieval"
# How the RNN and the LSTM read the docstring (``utils.models.recurrent``): "original" (the final state
# starts the decoder), "reverse" (the docstring read backwards), "context" (the final state also fed to
# every decoder step and to the output layer)
RECURRENT_VARIANTS = ("original", "reverse", "context")
RECURRENT_MODELS = ("rnn", "lstm")
# Which way a model translates: the five generators write code for a docstring; the reviewer, a
# Transformer trained the other way (code -> docstring), scores how well a candidate function explains
# a docstring (``utils.decoding.rerank``). It is never offered as a generator.
DIRECTIONS = ("docstring_to_code", "code_to_docstring")
REVIEWER = "reviewer"
REVIEWER_DIRECTION = DIRECTIONS[1]


@dataclass
class Seq2SeqConfig:
    """Hyperparameters shared by all models (defaults: the original study's settings)."""

    model: str = "attention"
    src_vocab_size: int = 0
    trg_vocab_size: int = 0
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 2
    dropout: float = 0.5
    # Transformer only
    n_heads: int = 4
    ff_dim: int = 512
    max_positions: int = 128
    # Length limits (tokens, without <SOS>/<EOS>)
    max_src_len: int = 50
    max_trg_len: int = 80
    # Training
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    batch_size: int = 64
    # Target positions per training batch, padding included (fairseq's --max-tokens); 0 batches by
    # ``batch_size`` sequences. The rate then scales with the batch: ``learning_rate``.
    batch_tokens: int = 0
    teacher_forcing: float = 0.5
    # "constant": every step feeds the reference with probability ``teacher_forcing``; "linear":
    # that probability falls from 1.0 to ``teacher_forcing`` over the first
    # ``teacher_forcing_decay_epochs`` epochs, then stays (scheduled sampling, Bengio et al. 2015)
    teacher_forcing_schedule: str = "constant"
    teacher_forcing_decay_epochs: int = 5
    label_smoothing: float = 0.0
    # After ``warmup_steps`` steps of linear warmup: "constant"; "plateau": the learning rate is
    # multiplied by ``lr_decay`` after every epoch whose validation loss does not improve;
    # "inverse_sqrt": it falls as 1/sqrt(step) (Vaswani et al. 2017; needs a warmup); "linear": it
    # falls linearly to zero at the end of epoch ``epochs``, so the run ends by its schedule (budgeted
    # training, Li et al. 2020)
    lr_schedule: str = "constant"
    lr_decay: float = 0.5
    epochs: int = 25
    patience: int = 3
    warmup_steps: int = 0
    seed: int = 42
    # Arithmetic: "fp32", "bf16" (autocast) or "auto" (see utils.precision)
    precision: str = "auto"
    # The training loss: "on" the CPU shortcut (``utils.fast.fast_loss``), "off" the model's own
    # (``Seq2SeqModel.loss``), "auto" on a CPU only (see ``resolve_fast_path``). The same function
    # either way, so not a setting a resumed run must match.
    fast_path: str = "auto"
    # Symbols: "word" (whole tokens, <UNK> for rare ones) or "bpe" (subword pieces, utils.data.subwords)
    vocabulary: str = "word"
    # "none": the source is the docstring; "top1": the docstring, a separator (id ``src_vocab_size``,
    # one past the vocabulary) and the code of the nearest training function (``utils.data.neighbours``)
    retrieval_input: str = "none"
    # RNN and LSTM only: one of RECURRENT_VARIANTS
    recurrent_variant: str = "original"
    # One of DIRECTIONS; "code_to_docstring" is the reviewer (a Transformer reading code only)
    direction: str = "docstring_to_code"

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"Unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}.")
        check_precision(self.precision)
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"Unknown vocabulary {self.vocabulary!r}; use 'word' or 'bpe'.")
        if self.teacher_forcing_schedule not in TEACHER_FORCING_SCHEDULES:
            raise ValueError(f"Unknown teacher_forcing_schedule {self.teacher_forcing_schedule!r}; use "
                             f"{' or '.join(map(repr, TEACHER_FORCING_SCHEDULES))}.")
        if self.fast_path not in FAST_PATHS:
            raise ValueError(f"Unknown fast_path {self.fast_path!r}; use 'auto', 'on' or 'off'.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}; use {' or '.join(map(repr, LR_SCHEDULES))}.")
        if self.lr_schedule == "inverse_sqrt" and self.warmup_steps < 1:
            raise ValueError("lr_schedule='inverse_sqrt' needs warmup_steps of at least 1 (it falls from the "
                             f"rate reached at the end of the warmup); got warmup_steps={self.warmup_steps}.")
        for name in ("epochs", "patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {getattr(self, name)!r}.")
        if not self.lr >= 0:
            raise ValueError(f"lr must be 0 or more, got {self.lr!r}.")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {self.warmup_steps!r}.")
        if self.batch_tokens < 0:
            raise ValueError(f"batch_tokens must be 0 (batches of batch_size sequences) or positive, got "
                             f"{self.batch_tokens}.")
        if self.retrieval_input not in RETRIEVAL_INPUTS:
            raise ValueError(f"Unknown retrieval_input {self.retrieval_input!r}; use "
                             f"{' or '.join(map(repr, RETRIEVAL_INPUTS))}.")
        if self.recurrent_variant not in RECURRENT_VARIANTS:
            raise ValueError(f"Unknown recurrent_variant {self.recurrent_variant!r}; use "
                             f"{' or '.join(map(repr, RECURRENT_VARIANTS))}.")
        if self.recurrent_variant != "original" and self.model not in RECURRENT_MODELS:
            raise ValueError(f"recurrent_variant {self.recurrent_variant!r} is for the RNN and the LSTM, "
                             f"not {self.model!r}.")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Unknown direction {self.direction!r}; use {' or '.join(map(repr, DIRECTIONS))}.")
        if self.direction != DIRECTIONS[0] and (self.model != "transformer" or self.retrieval_input != "none"):
            raise ValueError(f"direction {self.direction!r} (the reviewer) is for the Transformer reading code alone, "
                             f"not {self.model!r} with retrieval_input {self.retrieval_input!r}.")
        if not 0.0 <= self.teacher_forcing <= 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"teacher_forcing must lie in [0, 1] and label_smoothing in [0, 1); got "
                             f"{self.teacher_forcing} and {self.label_smoothing}.")

    @property
    def name(self) -> str:
        """The run's name (checkpoint files, table rows): the model, with RETRIEVAL_SUFFIX if it reads
        retrieved code; ``REVIEWER`` for the model trained from code to docstring."""
        if self.reviews:
            return REVIEWER
        return self.model + (RETRIEVAL_SUFFIX if self.retrieval_input != "none" else "")

    @property
    def reviews(self) -> bool:
        """Whether this is the reviewer: it reads code and writes (scores) docstrings."""
        return self.direction == REVIEWER_DIRECTION

    @property
    def source_kind(self) -> str:
        """What the model reads, the key of its encoded examples: "code" (the reviewer), else its
        ``retrieval_input`` ("none": the docstring alone)."""
        return "code" if self.reviews else self.retrieval_input

    @property
    def learning_rate(self) -> float:
        """Adam's peak rate: ``lr``, times sqrt(batch_tokens / LR_REFERENCE_TOKENS) for token batches
        (the square-root rule for adaptive optimizers, Malladi et al. 2022)."""
        return self.lr * (self.batch_tokens / LR_REFERENCE_TOKENS) ** 0.5 if self.batch_tokens else self.lr

    @property
    def source_symbols(self) -> int:
        """Rows of the source embedding: the vocabulary, and the separator when it reads retrieved code."""
        return self.src_vocab_size + (self.retrieval_input != "none")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Seq2SeqConfig":
        """Rebuild from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def model_names(models: str | Sequence[str]) -> list[str]:
    """Model names from a list, or from one string ("attention", "rnn,lstm", "rnn lstm": what
    ``papermill -p models ...`` passes); every name checked against ``MODEL_NAMES``."""
    names = re.split(r"[\s,]+", models.strip(" []")) if isinstance(models, str) else list(models)
    names = [n.strip("'\"") if isinstance(n, str) else n for n in names if n != ""]
    unknown = [n for n in names if split_name(n)[0] not in MODEL_NAMES]
    if unknown or not names:
        raise ValueError(f"Unknown or missing model name(s) {unknown or models!r}; choose from "
                         f"{', '.join(MODEL_NAMES)}, each also with '{RETRIEVAL_SUFFIX}' (a list, or one "
                         "string such as 'rnn,lstm').")
    return names


def split_name(name: object) -> tuple[object, bool]:
    """("copy", True) for "copy+retrieval", ("copy", False) for "copy" (anything else as given)."""
    if isinstance(name, str) and name.endswith(RETRIEVAL_SUFFIX):
        return name[: -len(RETRIEVAL_SUFFIX)], True
    return name, False


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/"auto" picks CUDA when available, else CPU; anything else is used as given."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"Unknown device {device!r}: use 'cpu', 'cuda' or 'auto'.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'.")
    return dev


def resolve_fast_path(setting: str, device: str | torch.device) -> bool:
    """Whether training on ``device`` takes the fast path (``utils.fast.fast_loss``) rather than the
    model's own loss (``Seq2SeqModel.loss``): "on", "off", or "auto": on a CPU, where it measures
    faster, off on CUDA, where cuDNN's packed ``nn.RNN``/``nn.LSTM`` and full-batch kernels are fast."""
    if setting not in FAST_PATHS:
        raise ValueError(f"Unknown fast_path {setting!r}; use 'auto', 'on' or 'off'.")
    return setting == "on" or (setting == "auto" and torch.device(device).type == "cpu")


# Settings a model needs whatever the shared parameters say. The Transformer is trained with full
# teacher forcing (its decoder then runs all steps in parallel) and a lower dropout.
MODEL_OVERRIDES: dict[str, dict[str, Any]] = {
    "transformer": {"teacher_forcing": 1.0, "dropout": 0.1},
}
# ... and a warmup of at least this many steps (a longer shared warmup stands)
MIN_WARMUP: dict[str, int] = {"transformer": 400}


def model_settings(per_model: Any, name: str) -> dict[str, Any]:
    """The settings a parameter file's ``per_model`` gives the model ``name`` ("copy+retrieval" also
    takes those of "copy", the reviewer those of "transformer"); each model and setting checked."""
    if per_model is None:
        return {}
    if not isinstance(per_model, dict):
        raise ValueError(f"per_model must map model names to their settings, got {per_model!r}.")
    known = {f.name for f in fields(Seq2SeqConfig)} - {"model"}
    for model, settings in per_model.items():
        if split_name(model)[0] not in (*MODEL_NAMES, REVIEWER) or not isinstance(settings, dict):
            raise ValueError(f"per_model: {model!r} is not a model name with a mapping of settings; use one of "
                             f"{', '.join(MODEL_NAMES)}, e.g. per_model: {{transformer: {{lr: 0.006}}}}.")
        if unknown := sorted(set(settings) - known):
            raise ValueError(f"per_model: {model} has unknown settings {', '.join(unknown)}.")
    base = "transformer" if name == REVIEWER else split_name(name)[0]
    return {**per_model.get(base, {}), **per_model.get(name, {})}


def make_config(name: str, **params: Any) -> Seq2SeqConfig:
    """A config for the model ``name`` from shared parameters (unknown keys ignored), then its overrides,
    then what ``params["per_model"]`` gives this model (:func:`model_settings`).

    "<model>+retrieval" reads retrieved code as ``params["retrieval_input"]`` says ("top1" if not
    given); a plain name never does. Its Transformer's position table then holds the whole source. A
    shared ``recurrent_variant`` applies to the RNN and the LSTM only. ``REVIEWER`` is the Transformer
    the other way round: code (up to the target limit) in, docstring (up to the source limit) out.
    """
    if name == REVIEWER:
        own = {"transformer": model_settings(params.get("per_model"), REVIEWER)}
        cfg = make_config("transformer", **{**params, "per_model": own})
        return replace(cfg, direction=REVIEWER_DIRECTION, max_src_len=cfg.max_trg_len, max_trg_len=cfg.max_src_len,
                       src_vocab_size=cfg.trg_vocab_size, trg_vocab_size=cfg.src_vocab_size)
    model, retrieval = split_name(name)
    own = model_settings(params.get("per_model"), name)
    known = {f.name for f in fields(Seq2SeqConfig)}
    params = {k: v for k, v in params.items() if k in known and k != "retrieval_input"} | \
        {"retrieval_input": params.get("retrieval_input", "top1") if retrieval else "none"}
    if model not in RECURRENT_MODELS:
        params.pop("recurrent_variant", None)
    if retrieval and params["retrieval_input"] == "none":
        raise ValueError(f"Model {name!r} reads retrieved code, but retrieval_input is 'none'; set "
                         f"retrieval_input to one of {', '.join(RETRIEVAL_INPUTS[1:])}, or drop {name!r}.")
    cfg = Seq2SeqConfig(model=model, **{**params, **MODEL_OVERRIDES.get(model, {}), **own})
    cfg.warmup_steps = max(cfg.warmup_steps, MIN_WARMUP.get(model, 0))
    if retrieval:  # docstring, separator, retrieved code (a training function: within the target limit)
        cfg.max_positions = max(cfg.max_positions, cfg.max_src_len + 1 + cfg.max_trg_len + 2)
    return cfg
