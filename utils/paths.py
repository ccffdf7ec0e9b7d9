"""Where the repository lives, so notebooks and scripts resolve paths the same way from any cwd."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
# How to get trained checkpoints, for every "no checkpoint" message.
TRAIN_HINT = "train with `make main` (or run notebooks/02_train.ipynb with jupyter or papermill)"


# The trained weights that come with the repository: only `make release` writes there.
SHIPPED_DIR = "checkpoints"


class ShippedWeightsError(ValueError):
    """Something other than ``make release`` was about to write into the shipped weights' folder."""


def check_not_shipped(folder: str | Path) -> None:
    """A ShippedWeightsError if ``folder`` is the shipped weights' folder (``checkpoints/``)."""
    if project_path(folder).resolve() == project_path(SHIPPED_DIR).resolve():
        raise ShippedWeightsError(f"{folder} holds the shipped weights, which only `make release` replaces: write "
                                  f"into a run's own folder instead (e.g. runs/full/checkpoints). Nothing was written.")


def project_path(path: str | Path) -> Path:
    """Return ``path`` unchanged if absolute, else resolved against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def user_path(path: str | Path) -> Path:
    """A path a user typed: as given when it exists from the working directory (or is absolute),
    else relative to the repository root (so ``checkpoints/x.pt`` works from any folder)."""
    p = Path(path).expanduser()
    return p.resolve() if p.is_absolute() or p.exists() else project_path(p)


def git_commit() -> str:
    """The repository's current commit (full hash), "unknown" outside a git checkout: what a result ran at."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
