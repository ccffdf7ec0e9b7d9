"""Decoded outputs kept on disk between notebooks: 03 decodes the test split, and 04 and 05, which need
the same beams, read them back instead of decoding again.

One entry per (checkpoint bytes, rows, decoding settings): a JSON file (tokens, scores, settings)
and, for models with attention, an ``.npz`` of the attention maps (read with ``allow_pickle=False``;
nothing is unpickled). A different checkpoint, split or setting is another key, so an entry is never
stale; an unreadable entry is decoded again and rewritten. ``store`` "" (or None) decodes every time.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from utils.checkpoint import LoadedModel
from utils.evaluation.results import (
    DecodedSplit,
    LengthPenalties,
    decode_split,
    decoding_label,
    penalty_for,
    source_tokens,
)
from utils.files import atomic_write
from utils.paths import project_path

STORE_DIR = "runs/decoded"  # git-ignored
_FIELDS = ("model", "decoding", "beam_size", "hypotheses", "src_tokens", "src_seen", "scores", "seconds",
           "syntax_aware", "length_penalty")


def store_key(loaded: LoadedModel, rows: Sequence[dict], settings: dict) -> str:
    """A digest of the checkpoint's bytes, every row's source and reference tokens, and ``settings``."""
    h = hashlib.sha256(Path(loaded.path).read_bytes())
    retrieval = loaded.model.config.retrieval_input
    h.update(json.dumps([[source_tokens(r, retrieval), r["code_tokens"]] for r in rows]).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{loaded.name}-{h.hexdigest()[:20]}"


def save_decoded(d: DecodedSplit, folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if any(a is not None for a in d.attention):
        with atomic_write(folder / f"{key}.npz", "wb") as f:
            np.savez(f, **{f"a{i}": a for i, a in enumerate(d.attention) if a is not None})
    with atomic_write(folder / f"{key}.json") as f:
        json.dump({**{name: getattr(d, name) for name in _FIELDS}, "scores": [float(s) for s in d.scores]}, f)


def load_decoded(folder: Path, key: str, n_rows: int) -> DecodedSplit | None:
    """The stored entry, or None when there is none or it cannot be read whole."""
    try:
        data = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        attention: list[np.ndarray | None] = [None] * n_rows
        if (folder / f"{key}.npz").is_file():
            with np.load(folder / f"{key}.npz", allow_pickle=False) as maps:
                for name in maps.files:
                    attention[int(name[1:])] = maps[name]
        d = DecodedSplit(attention=attention, **{name: data[name] for name in _FIELDS})
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return d if len(d) == n_rows else None


def decode_stored(loaded: LoadedModel, rows: Sequence[dict], store: str | Path | None = STORE_DIR, *,
                  beam_size: int = 1, max_len: int = 0, batch_size: int = 128,
                  device: str | torch.device | None = None, syntax_aware: bool = False,
                  length_penalty: LengthPenalties = 1.0) -> DecodedSplit:
    """:func:`utils.evaluation.results.decode_split`, read from ``store`` when these outputs are there
    (``seconds`` is then the run that wrote them), else decoded and written there."""
    alpha = penalty_for(length_penalty, loaded.name, decoding_label(beam_size, syntax_aware)) if beam_size > 1 else None
    settings = dict(beam_size=beam_size, max_len=max_len, batch_size=batch_size, syntax_aware=syntax_aware,
                    length_penalty=alpha, device=str(device), precision=loaded.precision)
    decode = dict(beam_size=beam_size, max_len=max_len, batch_size=batch_size, device=device,
                  syntax_aware=syntax_aware, length_penalty=length_penalty)
    if not store:
        return decode_split(loaded, rows, **decode)
    folder, key = project_path(store), store_key(loaded, rows, settings)
    found = load_decoded(folder, key, len(rows))
    if found is None:
        found = decode_split(loaded, rows, **decode)
        save_decoded(found, folder, key)
    return found


def decode_models(loaded: Mapping[str, LoadedModel], rows: Sequence[dict], beam_size: int = 5, max_len: int = 0,
                  batch_size: int = 128, device: str | torch.device | None = None,
                  syntax_aware: bool | Sequence[bool] = False, greedy: bool = True,
                  length_penalty: LengthPenalties = 1.0, store: str | Path | None = None,
                  log: Callable[[str], None] = print) -> list[DecodedSplit]:
    """Greedy (if ``greedy``) and beam-``beam_size`` outputs for every model (beam size 1: greedy only),
    the beam with ``length_penalty`` (one value, or one per (model, decoding)); each kept in ``store``
    for the notebooks that follow (:func:`decode_stored`; None: decoded, not kept).

    ``syntax_aware`` may list both settings (``[False, True]``) to decode with and without the constraint.
    """
    sizes = ([1] if greedy else []) + ([beam_size] if beam_size > 1 or not greedy else [])
    modes = [syntax_aware] if isinstance(syntax_aware, bool) else list(syntax_aware)
    out = []
    for name, lm in loaded.items():
        for k, mode in ((k, m) for m in modes for k in sizes):
            d = decode_stored(lm, rows, store, beam_size=k, max_len=max_len, batch_size=batch_size, device=device,
                              syntax_aware=mode, length_penalty=length_penalty)
            alpha = "" if d.length_penalty is None else f" (length penalty {d.length_penalty:g})"
            log(f"{name:>12} {d.decoding:>7}: {len(d)} outputs in {d.seconds:.1f} s{alpha}")
            out.append(d)
    return out
