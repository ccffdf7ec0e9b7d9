"""Paths resolve against the repository root whatever the working directory."""
from __future__ import annotations

from pathlib import Path

from utils.paths import REPO_ROOT, project_path


def test_repo_root_holds_the_project() -> None:
    assert (REPO_ROOT / "utils" / "paths.py").is_file()
    assert (REPO_ROOT / "notebooks").is_dir()


def test_relative_paths_resolve_against_the_root(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository
    assert project_path("checkpoints/x.pt") == REPO_ROOT / "checkpoints" / "x.pt"
    assert project_path(Path("data")) == REPO_ROOT / "data"


def test_absolute_and_home_paths_stay(tmp_path, monkeypatch) -> None:
    assert project_path(tmp_path / "a.pt") == tmp_path / "a.pt"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert project_path("~/b.pt") == tmp_path / "b.pt"
