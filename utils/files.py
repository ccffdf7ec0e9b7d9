"""Writing result files safely: a file is replaced whole or not at all.

Every file the pipeline writes (processed splits, vocabularies, manifests, checkpoints, CSV tables,
figures) goes through ``atomic_write``: the content goes to a temporary file next to the target,
which then replaces the target in one rename. A run killed or out of disk mid-write leaves the
previous file as it was, never half of a new one.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

from utils.paths import project_path

TMP_SUFFIX = ".tmp"


def disk_full(error: BaseException) -> bool:
    """True when ``error`` says the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path``, on any error it is removed.

    ``mode`` is "w" (text) or "wb" (binary); folders are created; relative paths start at the
    repository root.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', not {mode!r}.")
    target = project_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the resolved path."""
    with atomic_write(path) as f:
        f.write(text)
    return project_path(path)


def save_csv(table: pd.DataFrame, out_path: str | Path, index: bool = False) -> Path:
    """Write ``table`` as CSV, atomically (folders created; relative paths from the repository root)."""
    path = project_path(out_path)
    with atomic_write(path) as f:
        table.to_csv(f, index=index)
    return path


def read_format(path: Path, marker: str) -> dict | None:
    """The JSON object in ``path`` when it is UTF-8 JSON carrying ``"format": marker``, else None."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) and payload.get("format") == marker else None


def replace_folder(new: Path, final: Path) -> None:
    """Put the finished folder ``new`` in the place of ``final`` whole; the old one is removed only once
    the new one is there, so a failure before this call leaves ``final`` as it was."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
