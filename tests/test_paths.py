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


def test_nothing_but_make_release_writes_into_the_shipped_weights(tmp_path, tiny_config, toy_vocab,
                                                                    toy_examples) -> None:
    import pytest

    from utils.checkpoint import save_checkpoint
    from utils.data.retrieval_database import save_retrieval_database
    from utils.models import build_model
    from utils.paths import SHIPPED_DIR, ShippedWeightsError, check_not_shipped
    from utils.training.trainer import train_model

    shipped = project_path(SHIPPED_DIR)
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    check_not_shipped(tmp_path)  # any other folder is fine
    for folder in (SHIPPED_DIR, shipped, shipped / "."):
        with pytest.raises(ShippedWeightsError, match="only `make release` replaces"):
            check_not_shipped(folder)
    config = tiny_config("rnn", epochs=1)
    with pytest.raises(ShippedWeightsError, match="Nothing was written"):
        train_model(config, toy_examples(8, 1), toy_examples(4, 2), toy_vocab, toy_vocab, checkpoint_dir=SHIPPED_DIR,
                    device="cpu", progress=False)
    with pytest.raises(ShippedWeightsError):
        save_checkpoint(shipped / "rnn_best.pt", build_model(config), toy_vocab, toy_vocab)
    with pytest.raises(ShippedWeightsError):
        save_retrieval_database(tmp_path, SHIPPED_DIR, toy_vocab)
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before
