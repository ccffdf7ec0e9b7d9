"""The processed corpus: filter rows by length, split them by file, fit vocabularies, save, load.

Rows come from ``utils.data.python_corpus`` (installed Python sources) or ``utils.data.codesearchnet``, in the
CodeSearchNet schema described there; ``preprocess`` turns them into the splits, vocabularies and manifest
that the notebooks read back with ``load_split``, ``load_vocabs`` and ``load_manifest``.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

from utils.data.codesearchnet import load_codesearchnet  # re-exported, as callers import it from here
from utils.data.corpus_sources import PACKAGES_FILE, SOURCES_DIR, corpus_roots
from utils.data.manifest import build_manifest, sha256_file
from utils.data.neighbours import NEIGHBOURS_FILE, attach_retrieved, find_neighbours, load_neighbours, save_neighbours
from utils.data.python_corpus import SPLITS, build_python_corpus, code_key  # SPLITS and the builder re-exported
from utils.data.subwords import Subwords
from utils.data.vocabulary import Vocabulary
from utils.files import atomic_write, write_text
from utils.paths import project_path

SOURCES = ("python", "codesearchnet")
MISSING_DATA_HINT = "run notebooks/01_preprocess.ipynb or `make main`"

# File hash bucket (0..99) below which a file goes to train, then valid; the rest is test.
_TRAIN_BUCKETS, _VALID_BUCKETS = 80, 90

VOCABULARIES = ("word", "bpe")


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
        name, key = file_bucket(row), code_key(row)
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

def preprocess(source: str = "python", out_dir: str | Path = "data/processed", max_doc_tokens: int = 50,
               max_code_tokens: int = 80, split_sizes: Sequence[int | None] | None = (10000, 1000, 1000),
               min_freq: int = 10, keep_docstring: bool = False, codesearchnet_files: list[str | Path] | None = None,
               max_files: int | None = None, seed: int = 42, corpus_packages: str | Path = PACKAGES_FILE,
               sources_dir: str | Path = SOURCES_DIR, vocabulary: str = "word", bpe_size: int = 4000,
               bpe_shared: bool = True, retrieval_input: str = "top1") -> dict:
    """Build, filter, split and save the corpus with train-only vocabularies; returns the manifest.

    The default source reads the standard library and the distributions pinned in ``corpus_packages``
    (installed into ``sources_dir`` on first use), or the running environment with
    ``corpus_packages="environment"``. ``vocabulary="word"`` keeps tokens seen ``min_freq`` times;
    ``"bpe"`` learns ``bpe_size`` subword pieces (one model for both sides when ``bpe_shared``) and
    also drops pairs over twice the token limits in pieces. Unless ``retrieval_input`` is "none", each
    row's nearest training function is found and saved too (``utils.data.neighbours``).
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
    rows, roots = _source_rows(source, codesearchnet_files, keep_docstring, max_files, corpus_packages, sources_dir,
                               stats)
    stats["corpus_pairs"] = len(rows)
    rows = filter_by_length(rows, max_doc_tokens, max_code_tokens, stats)
    stats["pairs_within_limits"] = len(rows)
    if not rows:
        raise ValueError(f"No docstring/code pairs left after filtering (source={source!r}, max_files={max_files}, "
                         f"max_doc_tokens={max_doc_tokens}, max_code_tokens={max_code_tokens}); "
                         "raise the token limits or max_files, or check the input files.")
    splits, src_vocab, trg_vocab = _split_and_vocabularies(
        rows, split_sizes, seed, vocabulary=vocabulary, min_freq=min_freq, bpe_size=bpe_size, bpe_shared=bpe_shared,
        max_doc_tokens=max_doc_tokens, max_code_tokens=max_code_tokens, stats=stats)
    out = project_path(out_dir)
    files = _write_outputs(out, splits, src_vocab, trg_vocab)
    manifest = build_manifest(params, stats, roots, corpus_packages, splits, src_vocab, trg_vocab, files, started)
    _write_neighbours(out, splits, manifest, retrieval_input)
    write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest


def _write_neighbours(out: Path, splits: dict[str, list[dict]], manifest: dict, retrieval_input: str) -> None:
    """Each row's nearest training function (``utils.data.neighbours``) into ``out``, noted in the manifest;
    kept out of the corpus hash, so the splits are the same corpus whether or not it is made."""
    if retrieval_input == "none":
        (out / NEIGHBOURS_FILE).unlink(missing_ok=True)
        return
    t0 = time.perf_counter()
    path = save_neighbours(out, find_neighbours(splits["train"], splits), manifest["corpus_sha256"])
    manifest["neighbours"] = {"file": path.name, "sha256": sha256_file(path),
                              "seconds": round(time.perf_counter() - t0, 2)}


def _source_rows(source: str, codesearchnet_files: list[str | Path] | None, keep_docstring: bool,
                 max_files: int | None, corpus_packages: str | Path, sources_dir: str | Path,
                 stats: Counter) -> tuple[list[dict], list[Path]]:
    """The corpus rows of one source, and the folders read for them (none for CodeSearchNet)."""
    roots: list[Path] = []
    if source == "python":
        roots = corpus_roots(corpus_packages, sources_dir, max_files or None)
        rows = build_python_corpus(roots, keep_docstring=keep_docstring, max_files=max_files or None, stats=stats)
    else:
        rows = load_codesearchnet(codesearchnet_files or None, stats=stats, keep_docstring=keep_docstring)
    return rows, roots


def _split_and_vocabularies(rows: list[dict], split_sizes: Sequence[int | None] | None, seed: int, *,
                            vocabulary: str, min_freq: int, bpe_size: int, bpe_shared: bool, max_doc_tokens: int,
                            max_code_tokens: int,
                            stats: Counter) -> tuple[dict[str, list[dict]], Vocabulary, Vocabulary]:
    """(splits, src_vocab, trg_vocab): rows split by file, with word vocabularies of the train split, or BPE
    learnt on it (pairs over twice the token limits in pieces dropped before the splits are cut to size)."""
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
    return splits, src_vocab, trg_vocab


def _write_outputs(out: Path, splits: dict[str, list[dict]], src_vocab: Vocabulary,
                   trg_vocab: Vocabulary) -> dict[str, Path]:
    """Write each split as ``<split>.jsonl`` and both vocabularies into ``out``; returns {file name: path}."""
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
    return files


def model_lengths(data_dir: str | Path) -> dict[str, int]:
    """The models' length settings for a processed corpus: its source and target limits in symbols
    (tokens, or BPE pieces), and room for them in the Transformer's position table."""
    limits = load_manifest(data_dir).get("max_lengths") or {"src": 50, "trg": 80}
    return {"max_src_len": limits["src"], "max_trg_len": limits["trg"],
            "max_positions": max(128, limits["src"] + 2, limits["trg"] + 2)}


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"No processed data at {path}; {MISSING_DATA_HINT} first.")


def load_split(data_dir: str | Path, split: str, required: bool = False, with_retrieved: bool = True) -> list[dict]:
    """Rows of one processed split (train/valid/test); with ``required``, a ValueError if it has none.
    With ``with_retrieved`` and a ``neighbours.json`` beside the splits, each row also carries its
    nearest training function as ``row["retrieved"]`` (``utils.data.neighbours``)."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    rows = _read_split(project_path(data_dir) / f"{split}.jsonl")
    if required and not rows:
        raise ValueError(f"The {split} split in {project_path(data_dir)} is empty: run notebooks/01_preprocess.ipynb "
                         f"with more files (max_files) so that some land in the {split} split.")
    if with_retrieved and (project_path(data_dir) / NEIGHBOURS_FILE).is_file():
        stored = load_neighbours(data_dir, load_manifest(data_dir).get("corpus_sha256"))
        train = rows if split == "train" else _read_split(project_path(data_dir) / "train.jsonl")
        neighbours = stored["splits"].get(split, [])
        attach_retrieved(rows, neighbours, train, project_path(data_dir) / NEIGHBOURS_FILE)
    return rows


def _read_split(path: Path) -> list[dict]:
    if not path.is_file():
        raise _missing(path)
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rows.append(_split_row(line, path, n))
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
