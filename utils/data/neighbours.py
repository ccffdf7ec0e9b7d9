"""Retrieve and edit: every row's nearest training function, found once and stored with the splits.

A model with ``retrieval_input="top1"`` reads its docstring, a separator, then the code of the
training function whose docstring is most similar by the retrieval baseline's TF-IDF cosine
(``utils.data.retrieval``), and learns to copy what fits and change what does not (Hashimoto et al. 2018;
Hayati et al. 2018; Parvez et al. 2021). ``find_neighbours`` runs once, in ``utils.data.processed.preprocess``,
and writes ``neighbours.json`` beside the splits, so runs reproduce; ``load_split`` then attaches
each row's neighbour as ``row["retrieved"]``.

No leak: a training row never retrieves itself, a function of its own file, or a function with the
same code tokens; validation and test rows retrieve from the whole training split. A docstring that
shares no word with any allowed training docstring gets no neighbour (the separator alone), not an
arbitrary first row.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from utils.data.python_corpus import code_key
from utils.data.retrieval import TfidfRetriever
from utils.files import read_format, write_text
from utils.paths import project_path

NEIGHBOURS_FILE = "neighbours.json"
_FORMAT = "seq2seq-neighbours-v1"
REBUILD_HINT = "run notebooks/01_preprocess.ipynb again (or `make main`) to rebuild it"


def file_key(row: dict) -> str:
    """The source file a row comes from (``repo/path``)."""
    return f"{row.get('repo', '')}/{row.get('path', '')}"


def training_exclusions(train_rows: Sequence[dict]) -> list[list[int]]:
    """For each training row, the rows it may not retrieve: itself, its file's, identical code."""
    by_file: dict[str, list[int]] = defaultdict(list)
    by_code: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(train_rows):
        by_file[file_key(row)].append(i)
        by_code[code_key(row)].append(i)
    return [sorted({i, *by_file[file_key(r)], *by_code[code_key(r)]}) for i, r in enumerate(train_rows)]


def find_neighbours(train_rows: Sequence[dict],
                    splits: dict[str, Sequence[dict]]) -> dict[str, list[tuple[int | None, float]]]:
    """(training row, cosine) of each row's neighbour, per split; (None, 0.0) where there is none."""
    if not train_rows:
        raise ValueError("Finding neighbours needs at least one training row.")
    retriever = TfidfRetriever([r["docstring_tokens"] for r in train_rows])
    out = {}
    for name, rows in splits.items():
        excluded = training_exclusions(train_rows) if name == "train" else None
        best = retriever.best([r["docstring_tokens"] for r in rows], excluded)
        out[name] = [(i, round(c, 6)) if c > 0 else (None, 0.0) for i, c in best]
    return out


def save_neighbours(out_dir: str | Path, neighbours: dict[str, list[tuple[int | None, float]]],
                    corpus_sha256: str) -> Path:
    """Write ``neighbours.json`` (JSON, with the corpus hash it belongs to) into ``out_dir``."""
    path = project_path(out_dir) / NEIGHBOURS_FILE
    payload = {"format": _FORMAT, "retriever": "tfidf-docstring-words", "corpus_sha256": corpus_sha256,
               "splits": {name: [list(n) for n in rows] for name, rows in neighbours.items()}}
    write_text(path, json.dumps(payload, separators=(",", ":")))
    return path


def load_neighbours(data_dir: str | Path, corpus_sha256: str | None = None) -> dict | None:
    """The stored neighbours of ``data_dir`` (None when it has none); a ValueError names a file that is
    damaged or belongs to another corpus."""
    path = project_path(data_dir) / NEIGHBOURS_FILE
    if not path.is_file():
        return None
    payload = read_format(path, _FORMAT)
    if payload is None:
        raise ValueError(f"{path} is not a neighbour file of this project; {REBUILD_HINT}.")
    if corpus_sha256 is not None and payload.get("corpus_sha256") != corpus_sha256:
        raise ValueError(f"{path} belongs to another corpus (sha256 {str(payload.get('corpus_sha256'))[:12]}…, "
                         f"the splits' is {corpus_sha256[:12]}…); {REBUILD_HINT}.")
    return payload


def attach_retrieved(rows: list[dict], split_neighbours: Sequence[Sequence], train_rows: Sequence[dict],
                     path: str | Path = NEIGHBOURS_FILE) -> list[dict]:
    """Give each row ``retrieved``: {index, cosine, code_tokens} of its neighbour (index None and no
    code where it has none). Rows are changed in place and returned."""
    if len(split_neighbours) != len(rows):
        raise ValueError(f"{path} lists {len(split_neighbours)} neighbours for {len(rows)} rows; {REBUILD_HINT}.")
    for row, (index, cosine) in zip(rows, split_neighbours):
        code = list(train_rows[index]["code_tokens"]) if index is not None else []
        row["retrieved"] = {"index": index, "cosine": float(cosine), "code_tokens": code}
    return rows
