"""The manifest of a processed corpus: what ``utils.data.processed.preprocess`` made and from what (sources,
parameters, what each filter removed, sizes, symbols per pair, ``<UNK>`` rates, file hashes)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

from utils.data.corpus_sources import corpus_hash, installed_versions, stdlib_root
from utils.data.vocabulary import UNK, Vocabulary
from utils.paths import REPO_ROOT

# Every counter key in the order the filters run, so reports can show what each step removed.
FILTER_STEPS = (
    "dropped_test_name", "dropped_dunder", "dropped_short", "dropped_no_docstring",
    "rows_other_partition", "rows_bad_json", "rows_missing_code", "rows_missing_docstring", "rows_unparseable",
    "rows_not_a_function",
    "dropped_short_docstring", "dropped_docstring_only", "dropped_irregular_layout", "dropped_untokenizable",
    "dropped_duplicate", "dropped_long_docstring", "dropped_long_code", "dropped_cross_split_duplicate",
    "dropped_long_docstring_pieces", "dropped_long_code_pieces",
)

def piece_summary(splits: dict[str, list[dict]], src_vocab: Vocabulary, trg_vocab: Vocabulary) -> dict:
    """Per split: mean symbols per docstring and per function, and the longest function."""
    out = {}
    for name, rows in splits.items():
        doc = [len(src_vocab.symbols(r["docstring_tokens"])) for r in rows]
        code = [len(trg_vocab.symbols(r["code_tokens"])) for r in rows]
        out[name] = {"mean_docstring": round(sum(doc) / max(len(doc), 1), 2),
                     "mean_code": round(sum(code) / max(len(code), 1), 2), "max_code": max(code, default=0)}
    return out


def sha256_file(path: Path) -> str:
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


def build_manifest(params: dict, stats: Counter, roots: list[Path], corpus_packages: str | Path,
              splits: dict[str, list[dict]], src_vocab: Vocabulary, trg_vocab: Vocabulary, files: dict[str, Path],
              started: float) -> dict:
    """What ``preprocess`` made and from what: sources, parameters, counts, sizes, hashes, time taken."""
    source = params["source"]
    counts = dict(stats)
    file_hashes = {name: sha256_file(path) for name, path in files.items()}
    package_roots = [r for r in roots if not r.is_relative_to(stdlib_root())]
    return {
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
        "max_lengths": sequence_limits(params["vocabulary"], params["max_doc_tokens"], params["max_code_tokens"]),
        "symbols_per_pair": piece_summary(splits, src_vocab, trg_vocab),
        "unk_rate": {name: {"src": oov_rate((r["docstring_tokens"] for r in split_rows), src_vocab),
                            "trg": oov_rate((r["code_tokens"] for r in split_rows), trg_vocab)}
                     for name, split_rows in splits.items()},
        "sha256": file_hashes,
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }


def sequence_limits(vocabulary: str, max_doc_tokens: int, max_code_tokens: int) -> dict[str, int]:
    """The most symbols a source and a target can hold: the token limits, or twice them in pieces."""
    factor = 2 if vocabulary == "bpe" else 1
    return {"src": factor * max_doc_tokens, "trg": factor * max_code_tokens}


def _shown_root(root: Path) -> str:
    """A corpus root as the manifest records it: inside the repository relative to it, else as is."""
    return root.relative_to(REPO_ROOT).as_posix() if root.is_relative_to(REPO_ROOT) else str(root)
