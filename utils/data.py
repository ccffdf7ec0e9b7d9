"""The docstring -> code corpus: build it (installed Python or CodeSearchNet), filter, split by file, save, load.

Rows follow the CodeSearchNet schema (repo, path, func_name, original_string, language, code, code_tokens,
docstring, docstring_tokens, partition) plus ``summary``, ``url``, ``lineno``. ``code`` is the generation target:
the function without its docstring statement; ``docstring_tokens`` tokenize the docstring's first paragraph.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import random
import textwrap
import time
import tokenize
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from utils.corpus_sources import (
    PACKAGES_FILE,
    SKIPPED_DIRS,
    SOURCES_DIR,
    corpus_hash,
    corpus_roots,
    distribution_files,
    environment_roots,
    installed_versions,
    is_test_path,
    python_files,
    stdlib_root,
)
from utils.files import atomic_write, write_text
from utils.paths import REPO_ROOT, project_path
from utils.subwords import Subwords
from utils.tokenizer import docstring_summary, tokenize_code, tokenize_docstring
from utils.vocabulary import UNK, Vocabulary

SOURCES = ("python", "codesearchnet")
SPLITS = ("train", "valid", "test")
HUB_DATASET = "Nan-Do/code-search-net-python"
CODESEARCHNET_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")
MISSING_DATA_HINT = "run notebooks/01_preprocess.ipynb or `make main`"

_MIN_FUNCTION_LINES = 3
_MIN_DOC_TOKENS = 3
# File hash bucket (0..99) below which a file goes to train, then valid; the rest is test.
_TRAIN_BUCKETS, _VALID_BUCKETS = 80, 90
_CSN_COLUMNS = ("repo", "path", "func_name", "code", "docstring", "partition", "url")
_PARALLEL_MIN_JOBS = 200

# Every counter key in the order the filters run, so reports can show what each step removed.
FILTER_STEPS = (
    "dropped_test_name", "dropped_dunder", "dropped_short", "dropped_no_docstring",
    "rows_other_partition", "rows_bad_json", "rows_missing_code", "rows_missing_docstring", "rows_unparseable",
    "rows_not_a_function",
    "dropped_short_docstring", "dropped_docstring_only", "dropped_irregular_layout", "dropped_untokenizable",
    "dropped_duplicate", "dropped_long_docstring", "dropped_long_code", "dropped_cross_split_duplicate",
    "dropped_long_docstring_pieces", "dropped_long_code_pieces",
)
VOCABULARIES = ("word", "bpe")

_SHARED_DROPS = ("dropped_short_docstring", "dropped_docstring_only", "dropped_irregular_layout",
                 "dropped_untokenizable", "dropped_duplicate")
_PYTHON_DROPS = ("dropped_test_name", "dropped_dunder", "dropped_short", "dropped_no_docstring", *_SHARED_DROPS)
_CODESEARCHNET_DROPS = ("rows_bad_json", "rows_missing_code", "rows_missing_docstring", "rows_unparseable",
                        "rows_not_a_function", *_SHARED_DROPS)

_FunctionNode = (ast.FunctionDef, ast.AsyncFunctionDef)


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
            if isinstance(child, _FunctionNode):
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
            row = _make_row(lines, node, docstring, keep_docstring, stats)
            if row is not None:
                row.update(repo=repo, path=rel_path, func_name=qualname, lineno=start,
                           url=f"{url_base}#L{start}-L{node.end_lineno}")
                rows.append(row)
    return rows, stats


def _make_row(lines: list[str], node: ast.AST, docstring: str, keep_docstring: bool, stats: Counter) -> dict | None:
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


def _code_key(row: dict) -> str:
    """Identity of a function for deduplication: its code tokens (comments and layout do not count)."""
    return hashlib.sha1("\n".join(row["code_tokens"]).encode("utf-8")).hexdigest()


def _dedupe(rows: Iterable[dict], stats: Counter) -> list[dict]:
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = _code_key(row)
        if key in seen:
            stats["dropped_duplicate"] += 1
        else:
            seen.add(key)
            kept.append(row)
    return kept


def _parallel_map(func: Callable[[Any], tuple[list[dict], Counter]], jobs: Sequence[Any],
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
    running environment's site-packages; ``utils.corpus_sources.corpus_roots`` gives the pinned ones).

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
    return _dedupe(_parallel_map(_functions_in_file, jobs, stats), stats)


# ----------------------------------------------------------------------------------------------- codesearchnet

def _codesearchnet_chunk(job: tuple[list[dict], bool]) -> tuple[list[dict], Counter]:
    """Re-derive target and tokens for a chunk of CodeSearchNet rows (runs in worker processes)."""
    raw_rows, keep_docstring = job
    stats: Counter = Counter()
    rows = []
    for raw in raw_rows:
        code, docstring = raw.get("code"), raw.get("docstring")
        if not isinstance(code, str) or not code.strip():
            stats["rows_missing_code"] += 1
            continue
        if not isinstance(docstring, str) or not docstring.strip():
            stats["rows_missing_docstring"] += 1
            continue
        code = code.replace("\r\n", "\n").replace("\r", "\n")
        tree = None
        for candidate in (code, textwrap.dedent(code)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(candidate)
                code = candidate
                break
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
        if tree is None:
            stats["rows_unparseable"] += 1  # mostly Python 2 code
            continue
        node = next((n for n in tree.body if isinstance(n, _FunctionNode)), None)
        if node is None:
            stats["rows_not_a_function"] += 1
            continue
        row = _make_row(code.split("\n"), node, docstring, keep_docstring, stats)
        if row is None:
            continue
        row["docstring"] = docstring
        for col in ("repo", "path", "func_name", "url", "partition"):
            value = raw.get(col)
            row[col] = value if isinstance(value, str) else ""
        rows.append(row)
    return rows, stats


def _read_codesearchnet_file(path: Path, stats: Counter) -> Iterator[dict]:
    """Raw rows of one local CodeSearchNet file; malformed JSON lines are counted and skipped."""
    name = path.name.lower()
    if not path.is_file():
        raise FileNotFoundError(f"CodeSearchNet file {path} does not exist; check the path in codesearchnet_files.")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        columns = [c for c in _CSN_COLUMNS if c in pf.schema_arrow.names]
        missing = {"code", "docstring"} - set(columns)
        if missing:
            raise ValueError(f"{path} has no {', '.join(sorted(missing))} column; "
                             f"expected CodeSearchNet columns ({', '.join(_CSN_COLUMNS)}).")
        for batch in pf.iter_batches(batch_size=10_000, columns=columns):
            yield from batch.to_pylist()
    elif name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if isinstance(row, dict):
                    yield row
                else:
                    stats["rows_seen"] += 1
                    stats["rows_bad_json"] += 1
    elif name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); use a JSON list of row objects or a .jsonl "
                             "file.") from None
        if not isinstance(data, list):
            raise ValueError(f"{path} must hold a JSON list of row objects; got {type(data).__name__}.")
        for row in data:
            if isinstance(row, dict):
                yield row
            else:
                stats["rows_seen"] += 1
                stats["rows_bad_json"] += 1
    else:
        raise ValueError(f"Cannot read {path}: CodeSearchNet files must end in {', '.join(CODESEARCHNET_SUFFIXES)}.")


def _hub_rows() -> Iterator[dict]:
    """Raw rows of the CodeSearchNet Python dataset on the Hugging Face hub."""
    try:
        import datasets

        ds = datasets.load_dataset(HUB_DATASET, split="train")
    except Exception as e:  # offline, missing dataset, auth: all mean the same thing to the user
        raise ConnectionError(
            f"Could not load {HUB_DATASET} from the Hugging Face hub ({type(e).__name__}: {str(e)[:200]}). "
            "Pass downloaded parquet/jsonl files via codesearchnet_files=[...], "
            "or use the default source='python' corpus.") from None
    ds = ds.select_columns([c for c in _CSN_COLUMNS if c in ds.column_names])
    for batch in ds.iter(batch_size=10_000):
        columns = list(batch)
        yield from (dict(zip(columns, values)) for values in zip(*batch.values()))


def load_codesearchnet(files: list[str | Path] | None = None, split: str | None = None,
                       stats: Counter | None = None, keep_docstring: bool = False) -> list[dict]:
    """CodeSearchNet Python rows from local files or (without ``files``) the hub, re-tokenized our way.

    ``split`` keeps one original partition (train/valid/test); bad rows are skipped and counted in ``stats``.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)} or None for all.")
    stats = Counter() if stats is None else stats
    for key in ("rows_seen", *_CODESEARCHNET_DROPS):
        stats[key] += 0
    if files:
        paths = [project_path(f) for f in files]
        for p in paths:  # fail before reading anything if one path is wrong
            if not p.is_file():
                raise FileNotFoundError(f"CodeSearchNet file {p} does not exist; check the path in "
                                        "codesearchnet_files.")
            if not p.name.lower().endswith(CODESEARCHNET_SUFFIXES):
                raise ValueError(f"Cannot read {p}: CodeSearchNet files must end in "
                                 f"{', '.join(CODESEARCHNET_SUFFIXES)}.")
        raw: Iterable[dict] = (row for p in paths for row in _read_codesearchnet_file(p, stats))
    else:
        raw = _hub_rows()

    def chunks() -> Iterator[tuple[list[dict], bool]]:
        chunk: list[dict] = []
        for row in raw:
            stats["rows_seen"] += 1
            if split is not None and row.get("partition") != split:
                stats["rows_other_partition"] += 1
                continue
            chunk.append(row)
            if len(chunk) == 1000:
                yield chunk, keep_docstring
                chunk = []
        if chunk:
            yield chunk, keep_docstring

    # Chunks are built lazily in the parent, but _parallel_map needs a sequence to size its pool.
    return _dedupe(_parallel_map(_codesearchnet_chunk, list(chunks()), stats), stats)


# ----------------------------------------------------------------------------------------------- filter and split

def filter_by_length(rows: Iterable[dict], max_doc_tokens: int | None = 50, max_code_tokens: int | None = 80,
                     stats: Counter | None = None) -> list[dict]:
    """Keep rows within both token limits (None = no limit); rows are dropped, never truncated."""
    stats = Counter() if stats is None else stats
    stats["dropped_long_docstring"] += 0
    stats["dropped_long_code"] += 0
    kept = []
    for row in rows:
        if max_doc_tokens is not None and len(row["docstring_tokens"]) > max_doc_tokens:
            stats["dropped_long_docstring"] += 1
        elif max_code_tokens is not None and len(row["code_tokens"]) > max_code_tokens:
            stats["dropped_long_code"] += 1
        else:
            kept.append(row)
    return kept


def file_bucket(row: dict) -> str:
    """The split a row's FILE belongs to, from a hash of ``repo/path`` (so files never straddle splits)."""
    digest = hashlib.sha1(f"{row.get('repo', '')}/{row.get('path', '')}".encode("utf-8")).hexdigest()
    bucket = int(digest, 16) % 100
    return "train" if bucket < _TRAIN_BUCKETS else "valid" if bucket < _VALID_BUCKETS else "test"


def split_by_file(rows: Iterable[dict], sizes: Sequence[int | None] | None = (10000, 1000, 1000),
                  seed: int = 42, stats: Counter | None = None,
                  before_cut: Callable[[dict[str, list[dict]]], None] | None = None) -> dict[str, list[dict]]:
    """Split into train/valid/test by file hash, keep identical code in one split, take the first N after a
    seeded shuffle (a size of None takes everything). ``before_cut`` may drop rows from the whole
    splits (in place) before they are cut to size: the subword limits, learnt on the train split."""
    sizes = (None, None, None) if sizes is None else tuple(sizes)
    if len(sizes) != 3 or any(s is not None and (not isinstance(s, int) or s < 0) for s in sizes):
        raise ValueError(f"split sizes must be three non-negative ints or None (train, valid, test); got {sizes}.")
    stats = Counter() if stats is None else stats
    stats["dropped_cross_split_duplicate"] += 0
    owner: dict[str, str] = {}
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for row in rows:
        name, key = file_bucket(row), _code_key(row)
        if owner.setdefault(key, name) != name:
            stats["dropped_cross_split_duplicate"] += 1  # the same function already lives in another split
            continue
        splits[name].append(row)
    if before_cut is not None:
        before_cut(splits)
    for i, (name, size) in enumerate(zip(SPLITS, sizes)):
        chosen = splits[name]
        random.Random(seed + i).shuffle(chosen)
        stats[f"available_{name}"] = len(chosen)
        splits[name] = [{**row, "partition": name} for row in chosen[:size]]
    return splits


def fit_subwords(splits: dict[str, list[dict]], bpe_size: int, shared: bool, max_doc_pieces: int,
                 max_code_pieces: int, stats: Counter) -> tuple[Vocabulary, Vocabulary]:
    """BPE learnt on the train split (one model for both sides when ``shared``), then every split
    kept within the piece limits (in place; dropped rows counted). Returns (src, trg) vocabularies."""
    train = splits["train"]
    if shared:
        both = Subwords.train(([*r["docstring_tokens"], *r["code_tokens"]] for r in train), bpe_size)
        src = trg = Vocabulary.from_subwords(both)
    else:
        src = Vocabulary.from_subwords(Subwords.train((r["docstring_tokens"] for r in train), bpe_size))
        trg = Vocabulary.from_subwords(Subwords.train((r["code_tokens"] for r in train), bpe_size))
    stats["dropped_long_docstring_pieces"] += 0
    stats["dropped_long_code_pieces"] += 0
    for name in SPLITS:
        kept = []
        for row in splits[name]:
            if len(src.symbols(row["docstring_tokens"])) > max_doc_pieces:
                stats["dropped_long_docstring_pieces"] += 1
            elif len(trg.symbols(row["code_tokens"])) > max_code_pieces:
                stats["dropped_long_code_pieces"] += 1
            else:
                kept.append(row)
        splits[name] = kept
    return src, trg


def piece_summary(splits: dict[str, list[dict]], src_vocab: Vocabulary, trg_vocab: Vocabulary) -> dict:
    """Per split: mean symbols per docstring and per function, and the longest function."""
    out = {}
    for name, rows in splits.items():
        doc = [len(src_vocab.symbols(r["docstring_tokens"])) for r in rows]
        code = [len(trg_vocab.symbols(r["code_tokens"])) for r in rows]
        out[name] = {"mean_docstring": round(sum(doc) / max(len(doc), 1), 2),
                     "mean_code": round(sum(code) / max(len(code), 1), 2), "max_code": max(code, default=0)}
    return out


def check_split_sizes(splits: dict[str, list[dict]], sizes: Sequence[int | None] | None) -> None:
    """A ValueError when a split came out empty (train always needs rows; valid or test unless asked
    for 0), a warning when a split holds fewer pairs than asked for."""
    sizes = (None, None, None) if sizes is None else tuple(sizes)
    got = ", ".join(f"{name} {len(splits[name]):,}" for name in SPLITS)
    empty = [name for name, size in zip(SPLITS, sizes) if not splits[name] and (size != 0 or name == "train")]
    if empty:
        raise ValueError(f"The {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty ({got}). "
                         "Functions are split by file, so a few files can leave a split without any: raise "
                         "max_files (or pass more CodeSearchNet files), or raise the size asked for.")
    short = [f"{name} {len(splits[name]):,} of {size:,}" for name, size in zip(SPLITS, sizes)
             if size and len(splits[name]) < size]
    if short:
        warnings.warn(f"Fewer pairs than asked for: {', '.join(short)} (not enough files within the limits).",
                      stacklevel=2)


# ----------------------------------------------------------------------------------------------- pipeline

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def oov_rate(token_lists: Iterable[list[str]], vocab: Vocabulary) -> float:
    """Share of symbols (tokens, or BPE pieces) that ``vocab`` maps to <UNK>."""
    total = unknown = 0
    for tokens in token_lists:
        ids = vocab.encode(vocab.symbols(tokens))
        total += len(ids)
        unknown += sum(i == UNK for i in ids)
    return unknown / total if total else 0.0


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "datasets", "nltk", "numpy", "pandas", "pyarrow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def filter_table(counts: dict[str, int]) -> list[dict]:
    """(step, dropped, remaining) for each filter that ran, starting from all functions/rows seen."""
    start_key = "functions_seen" if "functions_seen" in counts else "rows_seen"
    remaining = counts.get(start_key, 0)
    table = [{"step": start_key, "dropped": 0, "remaining": remaining}]
    for key in FILTER_STEPS:
        if key in counts:
            remaining -= counts[key]
            table.append({"step": key, "dropped": counts[key], "remaining": remaining})
    return table


def preprocess(source: str = "python", out_dir: str | Path = "data/processed", max_doc_tokens: int = 50,
               max_code_tokens: int = 80, split_sizes: Sequence[int | None] | None = (10000, 1000, 1000),
               min_freq: int = 10, keep_docstring: bool = False, codesearchnet_files: list[str | Path] | None = None,
               max_files: int | None = None, seed: int = 42, corpus_packages: str | Path = PACKAGES_FILE,
               sources_dir: str | Path = SOURCES_DIR, vocabulary: str = "word", bpe_size: int = 4000,
               bpe_shared: bool = True) -> dict:
    """Build, filter, split and save the corpus with train-only vocabularies; returns the manifest.

    The default source reads the standard library and the distributions pinned in ``corpus_packages``
    (installed into ``sources_dir`` on first use), or the running environment with
    ``corpus_packages="environment"``. ``vocabulary="word"`` keeps tokens seen ``min_freq`` times;
    ``"bpe"`` learns ``bpe_size`` subword pieces (one model for both sides when ``bpe_shared``) and
    also drops pairs over twice the token limits in pieces.
    """
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"Unknown vocabulary {vocabulary!r}; use 'word' (whole tokens, the original study's) "
                         "or 'bpe' (subword pieces).")
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; use one of {', '.join(map(repr, SOURCES))}.")
    if codesearchnet_files and source != "codesearchnet":
        raise ValueError("codesearchnet_files were given but source is 'python'; set source='codesearchnet'.")
    started = time.perf_counter()
    params = {"source": source, "max_doc_tokens": max_doc_tokens, "max_code_tokens": max_code_tokens,
              "split_sizes": list(split_sizes) if split_sizes is not None else None, "min_freq": min_freq,
              "keep_docstring": keep_docstring, "codesearchnet_files": [str(f) for f in codesearchnet_files or []],
              "max_files": max_files or None, "seed": seed, "vocabulary": vocabulary,
              "bpe_size": bpe_size if vocabulary == "bpe" else None,
              "bpe_shared": bpe_shared if vocabulary == "bpe" else None}
    stats: Counter = Counter()
    roots: list[Path] = []
    if source == "python":
        roots = corpus_roots(corpus_packages, sources_dir, max_files or None)
        rows = build_python_corpus(roots, keep_docstring=keep_docstring, max_files=max_files or None, stats=stats)
    else:
        rows = load_codesearchnet(codesearchnet_files or None, stats=stats, keep_docstring=keep_docstring)
    stats["corpus_pairs"] = len(rows)
    rows = filter_by_length(rows, max_doc_tokens, max_code_tokens, stats)
    stats["pairs_within_limits"] = len(rows)
    if not rows:
        raise ValueError(f"No docstring/code pairs left after filtering (source={source!r}, max_files={max_files}, "
                         f"max_doc_tokens={max_doc_tokens}, max_code_tokens={max_code_tokens}); "
                         "raise the token limits or max_files, or check the input files.")
    vocabs: list[Vocabulary] = []

    def pieces_within_limits(whole: dict[str, list[dict]]) -> None:
        vocabs.extend(fit_subwords(whole, bpe_size, bpe_shared, 2 * max_doc_tokens, 2 * max_code_tokens, stats))

    splits = split_by_file(rows, split_sizes, seed=seed, stats=stats,
                           before_cut=pieces_within_limits if vocabulary == "bpe" else None)
    check_split_sizes(splits, split_sizes)
    if vocabulary == "bpe":
        src_vocab, trg_vocab = vocabs
    else:
        src_vocab = Vocabulary.build((r["docstring_tokens"] for r in splits["train"]), min_freq=min_freq)
        trg_vocab = Vocabulary.build((r["code_tokens"] for r in splits["train"]), min_freq=min_freq)

    out = project_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, split_rows in splits.items():
        path = out / f"{name}.jsonl"
        with atomic_write(path) as f:
            for row in split_rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        files[path.name] = path
    for name, vocab in (("src_vocab.json", src_vocab), ("trg_vocab.json", trg_vocab)):
        vocab.save(out / name)
        files[name] = out / name

    counts = dict(stats)
    file_hashes = {name: _sha256(path) for name, path in files.items()}
    package_roots = [r for r in roots if not r.is_relative_to(stdlib_root())]
    manifest = {
        "source": source,
        "python_version": platform.python_version(),
        "corpus_sha256": corpus_hash(file_hashes),
        "corpus_sources": {"corpus_packages": str(corpus_packages) if source == "python" else None,
                           "roots": [_shown_root(r) for r in roots],
                           "distributions": installed_versions(package_roots) if package_roots else {}},
        "packages": _package_versions(),
        "params": params,
        "counts": counts,
        "filter_steps": filter_table(counts),
        "pairs_within_limits": stats["pairs_within_limits"],
        "split_sizes": {name: len(r) for name, r in splits.items()},
        "vocab_sizes": {"src": len(src_vocab), "trg": len(trg_vocab)},
        "max_lengths": sequence_limits(vocabulary, max_doc_tokens, max_code_tokens),
        "symbols_per_pair": piece_summary(splits, src_vocab, trg_vocab),
        "unk_rate": {name: {"src": oov_rate((r["docstring_tokens"] for r in split_rows), src_vocab),
                            "trg": oov_rate((r["code_tokens"] for r in split_rows), trg_vocab)}
                     for name, split_rows in splits.items()},
        "sha256": file_hashes,
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }
    write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest


def sequence_limits(vocabulary: str, max_doc_tokens: int, max_code_tokens: int) -> dict[str, int]:
    """The most symbols a source and a target can hold: the token limits, or twice them in pieces."""
    factor = 2 if vocabulary == "bpe" else 1
    return {"src": factor * max_doc_tokens, "trg": factor * max_code_tokens}


def _shown_root(root: Path) -> str:
    """A corpus root as the manifest records it: inside the repository relative to it, else as is."""
    return root.relative_to(REPO_ROOT).as_posix() if root.is_relative_to(REPO_ROOT) else str(root)


def model_lengths(data_dir: str | Path) -> dict[str, int]:
    """The models' length settings for a processed corpus: its source and target limits in symbols
    (tokens, or BPE pieces), and room for them in the Transformer's position table."""
    limits = load_manifest(data_dir).get("max_lengths") or {"src": 50, "trg": 80}
    return {"max_src_len": limits["src"], "max_trg_len": limits["trg"],
            "max_positions": max(128, limits["src"] + 2, limits["trg"] + 2)}


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"No processed data at {path}; {MISSING_DATA_HINT} first.")


def load_split(data_dir: str | Path, split: str, required: bool = False) -> list[dict]:
    """Rows of one processed split (train/valid/test); with ``required``, a ValueError if it has none."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    path = project_path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise _missing(path)
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rows.append(_split_row(line, path, n))
    if required and not rows:
        raise ValueError(f"The {split} split in {project_path(data_dir)} is empty: run notebooks/01_preprocess.ipynb "
                         f"with more files (max_files) so that some land in the {split} split.")
    return rows


def _split_row(line: bytes, path: Path, n: int) -> dict:
    """One row of a processed split; a ValueError names the file and line of a damaged one."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        row, reason = None, "not UTF-8 text"
    except json.JSONDecodeError as e:
        row, reason = None, f"not valid JSON ({e.msg} at column {e.colno})"
    else:
        reason = "not a JSON object" if not isinstance(row, dict) else \
            "no docstring_tokens/code_tokens lists" if not all(isinstance(row.get(k), list)
                                                              for k in ("docstring_tokens", "code_tokens")) else ""
    if reason:
        raise ValueError(f"{path}, line {n}: {reason}; the file is damaged. Run notebooks/01_preprocess.ipynb "
                         "again to rewrite it.")
    return row


def load_vocabs(data_dir: str | Path) -> tuple[Vocabulary, Vocabulary]:
    """(src_vocab, trg_vocab) saved by ``preprocess``."""
    paths = [project_path(data_dir) / name for name in ("src_vocab.json", "trg_vocab.json")]
    for path in paths:
        if not path.is_file():
            raise _missing(path)
    return Vocabulary.load(paths[0]), Vocabulary.load(paths[1])


def load_manifest(data_dir: str | Path) -> dict:
    """The manifest ``preprocess`` wrote next to the splits."""
    path = project_path(data_dir) / "manifest.json"
    if not path.is_file():
        raise _missing(path)
    return json.loads(path.read_text(encoding="utf-8"))
