"""The CodeSearchNet Python corpus (local parquet/jsonl/json files, or the Hugging Face hub) as rows.

Each row's target and tokens are re-derived from its code the way ``utils.data.python_corpus`` does for installed
sources, so both sources give the same schema.
"""
from __future__ import annotations

import ast
import gzip
import json
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from utils.data.python_corpus import FUNCTION_NODES, SHARED_DROPS, SPLITS, dedupe, make_row, parallel_map
from utils.paths import project_path

HUB_DATASET = "Nan-Do/code-search-net-python"
CODESEARCHNET_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")
_CSN_COLUMNS = ("repo", "path", "func_name", "code", "docstring", "partition", "url")
_CODESEARCHNET_DROPS = ("rows_bad_json", "rows_missing_code", "rows_missing_docstring", "rows_unparseable",
                        "rows_not_a_function", *SHARED_DROPS)


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
        node = next((n for n in tree.body if isinstance(n, FUNCTION_NODES)), None)
        if node is None:
            stats["rows_not_a_function"] += 1
            continue
        row = make_row(code.split("\n"), node, docstring, keep_docstring, stats)
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

    # Chunks are built lazily in the parent, but parallel_map needs a sequence to size its pool.
    return dedupe(parallel_map(_codesearchnet_chunk, list(chunks()), stats), stats)
