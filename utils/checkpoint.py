"""Self-contained checkpoints: weights, configuration, both vocabularies and the training history.

Saved atomically (``utils.files.atomic_write``) so an interrupted or failed save never leaves a broken file;
loaded with ``torch.load(..., weights_only=True)``, so a checkpoint can never run code.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from utils.config import Seq2SeqConfig
from utils.data.vocabulary import Vocabulary
from utils.files import atomic_write, disk_full
from utils.models import Seq2SeqModel, build_model
from utils.paths import SHIPPED_DIR, TRAIN_HINT, check_not_shipped, project_path

FORMAT = "seq2seq-checkpoint-v1"
REQUIRED_KEYS = ("format", "config", "model_state", "src_vocab", "trg_vocab")
# The trained weights that come with the repository, and their manifest (utils.evaluation.shipped
# writes both: ``make release``); training never writes there by default.
MANIFEST_FILE = "manifest.json"
RESTORE_HINT = "restore the shipped weights with `git checkout -- checkpoints`"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit what it is used with."""


def save_checkpoint(path: str | Path, model: Seq2SeqModel, src_vocab: Vocabulary, trg_vocab: Vocabulary,
                    history: list[dict] | None = None, **extra: Any) -> Path:
    """Write a checkpoint atomically (never into the shipped weights' folder); ``extra`` holds e.g.
    optimizer state and epoch for resuming."""
    path = Path(path)
    check_not_shipped(path.parent)
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "src_vocab": src_vocab.itos,
        "trg_vocab": trg_vocab.itos,
        # a subword vocabulary's BPE model (JSON text), so the checkpoint is enough to read and write code
        "src_subwords": src_vocab.subwords,
        "trg_subwords": trg_vocab.subwords,
        "history": history or [],
        **extra,
    }
    try:
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)
    except OSError as e:
        if not disk_full(e):
            raise
        kept = f"the previous {path.name} is kept as it was" if path.exists() else f"no {path.name} was written"
        raise CheckpointError(f"Could not save checkpoint {path}: the disk is full; {kept}. "
                              "Free some space and run again (training resumes from the last saved epoch).") from None
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_manifest(folder: str | Path | None = None) -> dict | None:
    """The shipped weights' manifest (``checkpoints/manifest.json``), or None where there is none; a
    damaged one is a ``CheckpointError`` naming it and the restore command."""
    path = project_path(folder or SHIPPED_DIR) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise CheckpointError(f"{path} is damaged (not the JSON manifest of the shipped weights); {RESTORE_HINT}.")
    return manifest


def shipped_entry(path: str | Path) -> tuple[dict, dict | None] | None:
    """For a file in the shipped folder with a manifest: the manifest and the file's entry (None when
    it is not listed); None for files anywhere else, or before any weights were shipped."""
    path = Path(path)
    if path.resolve().parent != project_path(SHIPPED_DIR).resolve():
        return None
    manifest = shipped_manifest()
    return None if manifest is None else (manifest, manifest.get("files", {}).get(path.name))


def run_or_shipped(checkpoint_dir: str | Path, models: Sequence[str], log: Callable[[str], None] = print) -> Path:
    """Where to read trained ``models`` from: the run's ``checkpoint_dir`` when it holds any of their
    ``<model>_best.pt``, else the shipped weights (the whole folder, never a mix), said in one line;
    a FileNotFoundError naming both ways out when neither holds any."""
    def holds(folder: str | Path) -> bool:
        return any((project_path(folder) / f"{m}_best.pt").is_file() for m in models)

    if holds(checkpoint_dir):
        return project_path(checkpoint_dir)
    if holds(SHIPPED_DIR):
        log(f"note: {checkpoint_dir} holds no trained checkpoint of {', '.join(models)}: using the shipped weights "
            f"({SHIPPED_DIR}/, from the main job) for every model.")
        return project_path(SHIPPED_DIR)
    raise FileNotFoundError(f"No trained checkpoint (<model>_best.pt) of {', '.join(models)} in {checkpoint_dir} "
                            f"nor in the shipped weights ({SHIPPED_DIR}/): train them with `make main`, or restore the "
                            f"shipped ones (`git checkout -- checkpoints`) and score them with `make evaluate`.")


def verify_shipped(path: str | Path) -> None:
    """For a file in the shipped folder: a ``CheckpointError`` naming it and the restore command
    unless the manifest lists it with this very sha256 (damaged, truncated or replaced). Files
    anywhere else (a run's own checkpoints) are not checked."""
    path = Path(path)
    shipped = shipped_entry(path)
    if shipped is None:
        return  # a run's own checkpoint, or no weights shipped yet
    entry = shipped[1]
    if entry is None:
        raise CheckpointError(f"{path} is not one of the shipped weights listed in {SHIPPED_DIR}/{MANIFEST_FILE}; "
                              f"move your own checkpoints elsewhere, or {RESTORE_HINT}.")
    if path.is_file() and file_sha256(path) != entry["sha256"]:
        raise CheckpointError(f"{path} is damaged or was replaced: its sha256 differs from the one in "
                              f"{SHIPPED_DIR}/{MANIFEST_FILE}; {RESTORE_HINT}.")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint (a shipped one against its manifest's hash first); one clear
    ``CheckpointError`` says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; {TRAIN_HINT}.")
    verify_shipped(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, KeyError, IndexError, zipfile.BadZipFile, pickle.UnpicklingError,
            OSError, ValueError) as e:
        # a KeyError/IndexError from the unpickler names a byte of the file ('101'): no help to anyone
        reason = "" if isinstance(e, (KeyError, IndexError)) else \
            (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0][:200]
        raise CheckpointError(f"Checkpoint {path} cannot be read (truncated, or not a checkpoint of this project)"
                              f"{': ' + reason if reason else ''}.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no '{FORMAT}' marker).")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks {', '.join(missing)}; it is incomplete.")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str | Path = "checkpoint",
                          device: str | torch.device = "cpu",
                          expected_model: str | None = None) -> tuple[Seq2SeqModel, Vocabulary, Vocabulary]:
    """Rebuild the model (in eval mode) and both vocabularies from a loaded checkpoint."""
    config = Seq2SeqConfig.from_dict(ckpt["config"])
    if expected_model is not None and config.name != expected_model:
        raise CheckpointError(f"Checkpoint {path} holds a '{config.name}' model, not '{expected_model}'.")
    vocabs = []
    for side in ("src", "trg"):
        subwords = ckpt.get(f"{side}_subwords")
        if config.vocabulary == "bpe" and not isinstance(subwords, str):
            raise CheckpointError(f"Checkpoint {path} has a BPE vocabulary but no tokenizer JSON ({side}_subwords); "
                                  "it is incomplete: train it again.")
        try:
            vocabs.append(Vocabulary(ckpt[f"{side}_vocab"], subwords))
        except ValueError as e:
            raise CheckpointError(f"Checkpoint {path}: {e}") from None
    src_vocab, trg_vocab = vocabs
    if (len(src_vocab), len(trg_vocab)) != (config.src_vocab_size, config.trg_vocab_size):
        raise CheckpointError(f"Checkpoint {path}: its vocabularies do not match its configuration.")
    model = build_model(config)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"Checkpoint {path}: weights do not fit a '{config.model}' model "
                              f"({str(e).splitlines()[0]}).") from None
    return model.to(device).eval(), src_vocab, trg_vocab


def load_model(path: str | Path, device: str | torch.device = "cpu", expected_model: str | None = None,
               src_vocab: Vocabulary | None = None,
               trg_vocab: Vocabulary | None = None) -> tuple[Seq2SeqModel, Vocabulary, Vocabulary, dict]:
    """Load a checkpoint and rebuild its model; given vocabularies must equal the checkpoint's.

    Returns (model, src_vocab, trg_vocab, checkpoint dict).
    """
    ckpt = load_checkpoint(path, device)
    model, sv, tv = model_from_checkpoint(ckpt, path, device, expected_model)
    for name, given, own in (("source", src_vocab, sv), ("target", trg_vocab, tv)):
        if given is not None and given != own:
            raise CheckpointError(
                f"Checkpoint {path} was trained with a different {name} vocabulary "
                f"({len(own)} tokens) than the one given ({len(given)} tokens); "
                "use the vocabulary saved with the checkpoint or retrain.")
    return model, sv, tv, ckpt


@dataclass
class LoadedModel:
    """A trained model ready to decode, with what its checkpoint recorded about its training: what
    evaluation (``utils.evaluation.results.load_trained``) and inference (``inference.load_generator``) hold."""

    model: Seq2SeqModel
    src_vocab: Vocabulary
    trg_vocab: Vocabulary
    path: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    precision: str = "fp32"  # the resolved arithmetic it decodes in (utils.precision)
    ended_by: str = ""  # how its training ended: "schedule", "patience" or "cap" (utils.training.trainer)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: str | Path, device: str | torch.device = "cpu",
                        expected_model: str | None = None, precision: str = "fp32") -> "LoadedModel":
        """The model of an already loaded checkpoint dict, in eval mode (the weights are not kept twice)."""
        model, src_vocab, trg_vocab = model_from_checkpoint(ckpt, path, device, expected_model)
        return cls(model.eval(), src_vocab, trg_vocab, Path(path), list(ckpt.get("history") or []),
                   ckpt.get("best_epoch"), precision, ckpt.get("ended_by", ""))

    @property
    def name(self) -> str:
        return self.model.config.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_parameters(self) -> int:
        return self.model.n_parameters()

    @property
    def training_seconds(self) -> float:
        """Sum of the recorded epochs' wall time (NaN if the history has none)."""
        secs = [h["epoch_seconds"] for h in self.history if "epoch_seconds" in h]
        return float(sum(secs)) if secs else float("nan")

    @property
    def max_src_len(self) -> int:
        """Source symbols the model reads (without <SOS>/<EOS>): the config's limit, within the
        Transformer's position table."""
        c = self.model.config
        limit = int(c.max_src_len)
        if c.model == "transformer":
            limit = min(limit, int(c.max_positions) - 2)
        return max(1, limit)

    @property
    def max_trg_len(self) -> int | None:
        """Most symbols the model can generate, where it has a hard limit (the Transformer's positions)."""
        c = self.model.config
        return int(c.max_positions) if c.model == "transformer" else None
