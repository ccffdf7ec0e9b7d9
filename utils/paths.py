"""Where the repository lives, so notebooks and scripts resolve paths the same way from any cwd."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[1]


def project_path(path: str | Path) -> Path:
    """Return ``path`` unchanged if absolute, else resolved against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
