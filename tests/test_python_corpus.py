"""Extracting functions from Python sources into CodeSearchNet-style rows."""
from __future__ import annotations

import ast
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from utils.data.python_corpus import build_python_corpus
from utils.data.tokenizer import tokenize_code

STDLIB = Path(sysconfig.get_paths()["stdlib"])

MODULE = '''
import functools


class Store:
    """A store."""

    def __init__(self):
        """Make the store ready for use."""
        self.items = []

    @functools.lru_cache(maxsize=None)
    def lookup(self, key):
        """Find the value stored under key.

        More detail that is not part of the summary.
        """

        return self.items[key]

    def test_lookup(self):
        """Check that lookup works fine."""
        assert self.lookup(0)

    def short(self): return 1

    def no_doc(self, x):
        y = x + 1
        return y

    def tiny_doc(self, x):
        """Tiny."""
        return x

    def only_doc(self):
        """Only a docstring and nothing else.
        """


def copy_one(a, b):
    """Add a to b and return it."""
    return a + b


class Other:
    def copy_one(a, b):
        """Add the numbers and return them."""
        # same code as copy_one once comments are gone
        return a + b
'''


def _write_package(root: Path) -> Path:
    pkg = root / "pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "mod.py").write_text(MODULE)
    (pkg / "tests" / "helpers.py").write_text(MODULE)  # test folder: skipped
    (pkg / "test_mod.py").write_text(MODULE)  # test file: skipped
    (pkg / "broken.py").write_text("def f(:\n")
    (pkg / "latin.py").write_bytes(b"x = '\xff'\n")  # not UTF-8 and no coding cookie
    return pkg


def test_build_python_corpus_applies_codesearchnet_filters(tmp_path: Path) -> None:
    stats: Counter = Counter()
    rows = build_python_corpus(roots=[_write_package(tmp_path)], stats=stats)
    assert [r["func_name"] for r in rows] == ["Store.lookup", "copy_one"]
    assert stats["files_seen"] == 5 and stats["files_test_skipped"] == 2
    assert stats["files_unparseable"] == 1 and stats["files_undecodable"] == 1
    assert stats["functions_seen"] == 9
    for key in ("dropped_test_name", "dropped_dunder", "dropped_short", "dropped_no_docstring",
                "dropped_short_docstring", "dropped_docstring_only", "dropped_duplicate"):
        assert stats[key] == 1, key
    lookup = rows[0]
    assert lookup["code"] == ("@functools.lru_cache(maxsize=None)\ndef lookup(self, key):\n"
                              "    return self.items[key]\n")
    assert '"""Find the value' in lookup["original_string"]
    assert lookup["summary"] == "Find the value stored under key."
    assert lookup["docstring_tokens"] == ["Find", "the", "value", "stored", "under", "key", "."]
    assert lookup["code_tokens"] == tokenize_code(lookup["code"])
    assert (lookup["repo"], lookup["path"], lookup["lineno"]) == ("pkg", "mod.py", 12)  # the decorator line


def test_keep_docstring_keeps_it_in_the_target(tmp_path: Path) -> None:
    rows = build_python_corpus(roots=[_write_package(tmp_path)], keep_docstring=True)
    assert rows[0]["code"] == rows[0]["original_string"]
    assert '"""Find the value' in rows[0]["code"]


def test_stdlib_rows_parse_and_are_deterministic() -> None:
    roots = [STDLIB / "json", STDLIB / "textwrap.py"]
    rows = build_python_corpus(roots=roots)
    assert rows and all(r["repo"] == "stdlib" for r in rows)
    assert {r["path"] for r in rows} <= {"json/__init__.py", "json/decoder.py", "json/encoder.py",
                                         "json/scanner.py", "json/tool.py", "textwrap.py"}
    for r in rows:
        ast.parse(r["code"])
        assert r["summary"] not in r["code"]
    assert build_python_corpus(roots=roots) == rows


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_python_corpus(roots=[tmp_path / "nowhere"])

