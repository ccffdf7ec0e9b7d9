"""Loading CodeSearchNet rows from local files (and the hub's error when offline)."""
from __future__ import annotations

import ast
import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from utils.data.codesearchnet import load_codesearchnet

GOOD_CODE = 'def add(a, b):\n    """Add two numbers together."""\n    return a + b\n'
METHOD_CODE = 'def scale(self, k):\n        """Scale all values by k."""\n        self.v = [x * k for x in self.v]\n'
CSN_ROWS = [
    {"repo": "r/a", "path": "a.py", "func_name": "add", "code": GOOD_CODE,
     "docstring": "Add two numbers together.", "partition": "train"},
    {"repo": "r/a", "path": "b.py", "func_name": "V.scale", "code": METHOD_CODE,
     "docstring": "Scale all values by k.\n\nDetails.", "partition": "test"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": None, "docstring": "Has no code at all.",
     "partition": "train"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": "", "docstring": "Has empty code here.",
     "partition": "train"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": 42, "docstring": "Has int code here.",
     "partition": "train"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": GOOD_CODE, "docstring": None, "partition": "train"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": GOOD_CODE, "docstring": 7, "partition": "train"},
    {"repo": "r/a", "path": "c.py", "func_name": "x", "code": 'def p(x):\n    """Print it out now."""\n    print x\n',
     "docstring": "Print it out now.", "partition": "train"},
]


def _check_csn(rows: list[dict], stats: Counter) -> None:
    assert [r["func_name"] for r in rows] == ["add", "V.scale"]
    assert rows[0]["code"] == "def add(a, b):\n    return a + b\n"
    assert rows[1]["docstring_tokens"] == ["Scale", "all", "values", "by", "k", "."]
    assert "Scale all" not in rows[1]["code"] and ast.parse(rows[1]["code"])
    assert stats["rows_seen"] == len(CSN_ROWS)
    assert (stats["rows_missing_code"], stats["rows_missing_docstring"], stats["rows_unparseable"]) == (3, 2, 1)


def test_load_codesearchnet_jsonl_skips_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "csn.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in CSN_ROWS)
    stats: Counter = Counter()
    _check_csn(load_codesearchnet([path], stats=stats), stats)
    train_only = load_codesearchnet([path], split="train")
    assert [r["func_name"] for r in train_only] == ["add"]


def test_load_codesearchnet_parquet_skips_and_counts_bad_rows(tmp_path: Path) -> None:
    # A parquet column has one type, so the int-valued rows become nulls here (ints are covered by the jsonl test).
    table = pa.table({k: [r[k] if not isinstance(r[k], int) else None for r in CSN_ROWS] for k in CSN_ROWS[0]})
    path = tmp_path / "csn.parquet"
    pq.write_table(table, path)
    stats: Counter = Counter()
    rows = load_codesearchnet([path], stats=stats)
    assert [r["func_name"] for r in rows] == ["add", "V.scale"]
    assert stats["rows_missing_code"] == 3 and stats["rows_missing_docstring"] == 2
    pq.write_table(pa.table({"code": [GOOD_CODE]}), tmp_path / "nodoc.parquet")
    with pytest.raises(ValueError, match="has no docstring column"):
        load_codesearchnet([tmp_path / "nodoc.parquet"])


def test_load_codesearchnet_bad_paths_and_offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; check the path in codesearchnet_files"):
        load_codesearchnet([tmp_path / "missing.parquet"])
    (tmp_path / "data.csv").write_text("code\n")
    with pytest.raises(ValueError, match="must end in .parquet"):
        load_codesearchnet([tmp_path / "data.csv"])
    import datasets

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"codesearchnet_files=\[\.\.\.\].*source='python'"):
        load_codesearchnet()

