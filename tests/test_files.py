"""Atomic writes: a file is replaced whole or not at all."""
from __future__ import annotations

import errno

import pandas as pd
import pytest

from utils.files import atomic_write, disk_full, save_csv, write_text


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "sub" / "out.txt"
    write_text(path, "first\n")
    with atomic_write(path) as f:
        f.write("second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]
    with atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_a_failed_write_keeps_the_previous_file(tmp_path) -> None:
    path = tmp_path / "results.csv"
    save_csv(pd.DataFrame({"model": ["rnn"], "bleu": [5.0]}), path)
    before = path.read_text()

    class Broken(pd.DataFrame):
        def to_csv(self, f, **kw):  # half a table, then the process "dies"
            f.write("model,bleu\nrnn,")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_csv(Broken({"model": ["lstm"]}), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_file_never_written_stays_absent(tmp_path) -> None:
    with pytest.raises(OSError):
        with atomic_write(tmp_path / "x.json") as f:
            f.write("{")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_and_bad_mode() -> None:
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied")) and not disk_full(ValueError())
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write("x", "a"):
            pass


def test_save_csv_creates_folders(tmp_path):
    path = save_csv(pd.DataFrame({"a": [1, 2]}), tmp_path / "new" / "deeper" / "t.csv")
    assert path.is_file() and pd.read_csv(path)["a"].tolist() == [1, 2]


def test_read_format_takes_only_json_with_the_marker(tmp_path) -> None:
    from utils.files import read_format

    path = tmp_path / "f.json"
    for text, expected in (('{"format": "x", "a": 1}', {"format": "x", "a": 1}), ('{"format": "y"}', None),
                           ("[1]", None), ("not json", None)):
        path.write_text(text)
        assert read_format(path, "x") == expected
    path.write_bytes(b"\xff\xfe")
    assert read_format(path, "x") is None


def test_replace_folder_swaps_the_new_folder_in_whole(tmp_path) -> None:
    from utils.files import replace_folder

    final, new = tmp_path / "shipped", tmp_path / "shipped.new"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    (tmp_path / "shipped.old").mkdir()  # left by an earlier swap that failed half-way
    replace_folder(new, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped"]
    (tmp_path / "fresh").mkdir()
    replace_folder(tmp_path / "fresh", tmp_path / "absent")  # nothing to replace: the new one moves in
    assert (tmp_path / "absent").is_dir() and not (tmp_path / "fresh").exists()
