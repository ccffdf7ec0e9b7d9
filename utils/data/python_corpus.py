"""Functions of Python source files (the standard library, installed packages) as docstring -> code rows.

Rows follow the CodeSearchNet schema (repo, path, func_name, original_string, language, code, code_tokens,
docstring, docstring_tokens, partition) plus ``summary``, ``url``, ``lineno``. ``code`` is the generation target:
the function without its docstring statement; ``docstring_tokens`` tokenize the docstring's first paragraph.
The row building, deduplication and parallel map here also serve ``utils.data.codesearchnet``.
"""
from __future__ import annotations

import ast
import hashlib
import multiprocessing
import os
import platform
import tokenize
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from utils.data.corpus_sources import (
    SKIPPED_DIRS,
    distribution_files,
    environment_roots,
    is_test_path,
    python_files,
    stdlib_root,
)
from utils.data.tokenizer import docstring_summary, tokenize_code, tokenize_docstring

# The partitions a row's ``partition`` names once the corpus is split (CodeSearchNet's).
SPLITS = ("train", "valid", "test")

_MIN_FUNCTION_LINES = 3
_MIN_DOC_TOKENS = 3
_PARALLEL_MIN_JOBS = 200

SHARED_DROPS = ("dropped_short_docstring", "dropped_docstring_only", "dropped_irregular_layout",
                 "dropped_untokenizable", "dropped_duplicate")
_PYTHON_DROPS = ("dropped_test_name", "dropped_dunder", "dropped_short", "dropped_no_docstring", *SHARED_DROPS)

FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)


# ----------------------------------------------------------------------------------------------- extraction

def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _function_target(lines: list[str], node: ast.AST, keep_docstring: bool) -> tuple[str, str] | str:
    """(original_string, code) of a function at column 0, code without its docstring; else a drop reason."""
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    seg = lines[start - 1:node.end_lineno]
    indent = seg[0][:len(seg[0]) - len(seg[0].lstrip())]
    if not seg[0].lstrip().startswith(("@", "def", "async")):
        return "dropped_irregular_layout"
    # Strip the def line's indentation; lines lacking it are blank or inside a string literal and stay as they are.
    seg = [line[len(indent):] if line.startswith(indent) else line for line in seg]
    original = "\n".join(seg).rstrip() + "\n"
    code = original
    ds = node.body[0]
    if not keep_docstring and _is_docstring(ds):
        first, last = lines[ds.lineno - 1].encode("utf-8"), lines[ds.end_lineno - 1].encode("utf-8")
        after = last[ds.end_col_offset:].strip()
        if first[:ds.col_offset].strip() or (after and not after.startswith(b"#")):
            return "dropped_irregular_layout"  # docstring shares a line with other code
        lo, hi = ds.lineno - start, ds.end_lineno - start + 1
        while hi < len(seg) and not seg[hi].strip():
            hi += 1  # blank lines after the docstring go with it
        code = "\n".join(seg[:lo] + seg[hi:]).rstrip() + "\n"
    return original, code


def _tokenize_target(code: str) -> list[str] | None:
    """Code tokens of a standalone function, or None if it does not parse or tokenize."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for invalid escapes in old code
            ast.parse(code)
        return tokenize_code(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _iter_functions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every function, methods as ``Class.method``, in source order."""
    found: list[tuple[str, ast.AST]] = []
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:  # iterative: deeply nested files must not hit the recursion limit
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, FUNCTION_NODES):
                found.append((prefix + child.name, child))
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, f"{prefix}{child.name}."))
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                stack.append((child, prefix))  # functions can sit inside if/try/with blocks
    found.sort(key=lambda item: (item[1].lineno, item[1].col_offset))
    return found


def _functions_in_file(job: tuple[str, str, str, str, bool]) -> tuple[list[dict], Counter]:
    """Rows for one source file, with per-file counts (runs in worker processes)."""
    file_path, repo, rel_path, url_base, keep_docstring = job
    stats: Counter = Counter()
    try:
        with open(file_path, "rb") as f:
            raw = f.read()
        encoding, _ = tokenize.detect_encoding(iter(raw.splitlines(keepends=True)).__next__)
        source = raw.decode(encoding)
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        stats["files_undecodable"] += 1
        return [], stats
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        stats["files_unparseable"] += 1
        return [], stats
    stats["files_parsed"] += 1
    lines = source.split("\n")
    rows = []
    for qualname, node in _iter_functions(tree):
        stats["functions_seen"] += 1
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        docstring = ast.get_docstring(node)
        if "test" in qualname.lower():
            stats["dropped_test_name"] += 1
        elif node.name.startswith("__") and node.name.endswith("__"):
            stats["dropped_dunder"] += 1
        elif node.end_lineno - start + 1 < _MIN_FUNCTION_LINES:
            stats["dropped_short"] += 1
        elif docstring is None:
            stats["dropped_no_docstring"] += 1
        else:
            row = make_row(lines, node, docstring, keep_docstring, stats)
            if row is not None:
                row.update(repo=repo, path=rel_path, func_name=qualname, lineno=start,
                           url=f"{url_base}#L{start}-L{node.end_lineno}")
                rows.append(row)
    return rows, stats


def make_row(lines: list[str], node: ast.AST, docstring: str, keep_docstring: bool, stats: Counter) -> dict | None:
    """Schema row for one function (repo/path/name left for the caller), or None with the reason counted."""
    summary = docstring_summary(docstring)
    doc_tokens = tokenize_docstring(summary)
    if len(doc_tokens) < _MIN_DOC_TOKENS:
        stats["dropped_short_docstring"] += 1
        return None
    if len(node.body) == 1 and _is_docstring(node.body[0]):
        stats["dropped_docstring_only"] += 1  # nothing but the docstring to generate
        return None
    target = _function_target(lines, node, keep_docstring)
    if isinstance(target, str):
        stats[target] += 1
        return None
    original, code = target
    code_tokens = _tokenize_target(code)
    if code_tokens is None:
        stats["dropped_untokenizable"] += 1
        return None
    return {"repo": "", "path": "", "func_name": "", "original_string": original, "language": "python",
            "code": code, "code_tokens": code_tokens, "docstring": docstring, "docstring_tokens": doc_tokens,
            "partition": "", "summary": summary, "url": "", "lineno": None}


def code_key(row: dict) -> str:
    """Identity of a function for deduplication: its code tokens (comments and layout do not count)."""
    return hashlib.sha1("\n".join(row["code_tokens"]).encode("utf-8")).hexdigest()


def dedupe(rows: Iterable[dict], stats: Counter) -> list[dict]:
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = code_key(row)
        if key in seen:
            stats["dropped_duplicate"] += 1
        else:
            seen.add(key)
            kept.append(row)
    return kept


def parallel_map(func: Callable[[Any], tuple[list[dict], Counter]], jobs: Sequence[Any],
                  stats: Counter) -> Iterator[dict]:
    """Run ``func`` over ``jobs`` (in worker processes when there are many), yielding rows in job order."""
    workers = min(4, os.cpu_count() or 1)
    if workers < 2 or len(jobs) < _PARALLEL_MIN_JOBS:
        results: Iterable = map(func, jobs)
        pool = None
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers)
        results = pool.imap(func, jobs, chunksize=8)  # imap keeps job order, so the corpus is deterministic
    try:
        for rows, counts in results:
            stats.update(counts)
            yield from rows
    finally:
        if pool is not None:
            pool.terminate()


# ----------------------------------------------------------------------------------------------- python corpus

def build_python_corpus(roots: list[Path] | None = None, keep_docstring: bool = False,
                        max_files: int | None = None, stats: Counter | None = None) -> list[dict]:
    """Docstring/code rows from the .py files under ``roots`` (default: the standard library and the
    running environment's site-packages; ``utils.data.corpus_sources.corpus_roots`` gives the pinned ones).

    Filters follow CodeSearchNet: no test names/files, no dunders, >= 3 lines, >= 3 docstring tokens,
    exact duplicates dropped (first kept). Deterministic: files sorted, results in file order.
    """
    stats = Counter() if stats is None else stats
    for key in ("files_seen", "files_test_skipped", "files_undecodable", "files_unparseable", "functions_seen",
                *_PYTHON_DROPS):
        stats[key] += 0
    roots = environment_roots() if roots is None else [Path(r) for r in roots]
    stdlib = stdlib_root()
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"Corpus root {root} does not exist; pass existing folders or files as roots.")
    # Files are credited to the distributions installed in the roots; the stdlib needs no lookup.
    package_roots = [r for r in roots if not r.is_relative_to(stdlib)]
    owners = distribution_files(package_roots) if package_roots else {}
    py_version = platform.python_version()
    jobs = []
    for root in roots:
        for file_path, parts in python_files(root):
            stats["files_seen"] += 1
            if is_test_path(parts):
                stats["files_test_skipped"] += 1
                continue
            if max_files and len(jobs) >= max_files:
                stats["files_over_max_files"] += 1
                continue
            rel = "/".join(parts)
            owner = owners.get(os.path.normpath(str(file_path)))
            in_stdlib = file_path.is_relative_to(stdlib) and not SKIPPED_DIRS & set(file_path.relative_to(stdlib).parts)
            if in_stdlib:
                # Named relative to the stdlib even under a narrower root, so rows match the full corpus.
                rel = file_path.relative_to(stdlib).as_posix()
                repo, url = "stdlib", f"https://github.com/python/cpython/blob/v{py_version}/Lib/{rel}"
            elif owner is not None:
                repo, url = owner[0], f"{owner[0]}=={owner[1]}:{rel}"
            else:
                repo = parts[0] if root.name in SKIPPED_DIRS and len(parts) > 1 else root.stem
                url = f"{repo}:{rel}"
            jobs.append((str(file_path), repo, rel, url, keep_docstring))
    return dedupe(parallel_map(_functions_in_file, jobs, stats), stats)
