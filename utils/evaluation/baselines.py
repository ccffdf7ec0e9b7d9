"""The rows every model is compared with, scored exactly like the models:

* the **reference-shuffled floor**: each reference scored against the next row's reference, what
  perfect, typical Python that ignores the docstring gets;
* the **best constant program**: the one training function that, returned for every docstring,
  scores the highest BLEU on the validation split (exhaustive over the training functions), scored
  on test: what a generic program gets from n-grams every function shares;
* **retrieval**: the training function whose docstring is most similar (``utils.data.retrieval``).

The constant program is chosen once per corpus and cached beside the processed data
(``constant_program.json``, tied to the corpus's sha256).
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.bleu import ORDERS, corpus_scores, ngram_counts
from utils.data.processed import load_manifest, load_split
from utils.data.retrieval import retrieval_outputs
from utils.data.vocabulary import Vocabulary
from utils.files import write_text
from utils.metrics import NGram, evaluate_outputs, strip_special, trivially_shared_ngrams
from utils.paths import project_path

FLOOR_MODEL = "reference-shuffled (floor)"
FLOOR_DECODING = "other reference"
CONSTANT_MODEL = "best constant program (floor)"
CONSTANT_DECODING = "one training function for all"
RETRIEVAL_MODEL = "retrieval (TF-IDF)"
RETRIEVAL_DECODING = "nearest training docstring"
CONSTANT_FILE = "constant_program.json"


def references(rows: Sequence[dict]) -> tuple[list[list[str]], list[list[str]]]:
    """The rows' reference code tokens and docstring tokens."""
    return [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]


def shared_ngrams(train_rows: Sequence[dict] | None) -> frozenset[NGram] | None:
    """CrystalBLEU's ignored n-grams: the trivially shared n-grams of the training code (None without it)."""
    return trivially_shared_ngrams(r["code_tokens"] for r in train_rows) if train_rows else None


def shuffled_reference_baseline(rows: Sequence[dict], trg_vocab: Vocabulary | None = None,
                                shared: frozenset[NGram] | None = None) -> dict[str, float]:
    """Metrics of each reference scored against the next row's reference (the last against the first).
    Needs at least two rows (NaN metrics otherwise). ``shared``: CrystalBLEU's ignored n-grams."""
    refs, docs = references(rows)
    if len(refs) < 2:
        return {"n": len(refs), **{k: float("nan") for k in ("bleu", "bleu_study", "codebleu", "crystal_bleu",
                                                            "token_accuracy", "exact_match",
                                                            "syntax_valid", "unk_rate", "copied_identifiers",
                                                            "distinct_outputs", "output_length")}}
    return evaluate_outputs(shuffled_outputs(rows), refs, docs, trg_vocab, shared)


def shuffled_outputs(rows: Sequence[dict]) -> list[list[str]]:
    """The floor's "outputs": each row answered with the next row's reference."""
    refs, _ = references(rows)
    return refs[1:] + refs[:1]


def retrieval_baseline(train_rows: Sequence[dict], rows: Sequence[dict],
                       trg_vocab: Vocabulary | None = None, shared: frozenset[NGram] | None = None) -> dict[str, float]:
    """Metrics of the retrieval baseline (``utils.data.retrieval``): each row answered with the training
    function whose docstring is most similar to its own. ``shared``: CrystalBLEU's ignored n-grams."""
    refs, docs = references(rows)
    return evaluate_outputs(retrieval_outputs(train_rows, rows), refs, docs, trg_vocab, shared)


def constant_bleu(candidates: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> np.ndarray:
    """Corpus BLEU (0-100) of each candidate returned for every one of ``refs``, all candidates at once:
    for each n-gram and count k, how many references hold it at least k times (``at_least``), so a
    candidate's clipped matches are a sum over its own n-grams. Equal to ``corpus_bleu_score`` of
    ``[candidate] * len(refs)``."""
    clean_refs = [strip_special(r) for r in refs]
    at_least: list[dict[tuple[NGram, int], int]] = [defaultdict(int) for _ in range(ORDERS)]
    for ref in clean_refs:
        for n, counts in enumerate(ngram_counts(ref)):
            for g, c in counts.items():
                for k in range(1, c + 1):
                    at_least[n][g, k] += 1
    stats = np.zeros((len(candidates), 2 + 2 * ORDERS))
    stats[:, 1] = sum(len(r) for r in clean_refs)
    for i, cand in enumerate(candidates):
        tokens = strip_special(cand)
        stats[i, 0] = len(tokens) * len(refs)
        for n, counts in enumerate(ngram_counts(tokens)):
            stats[i, 2 + n] = sum(at_least[n].get((g, k), 0) for g, c in counts.items() for k in range(1, c + 1))
            stats[i, 2 + ORDERS + n] = max(1, sum(counts.values())) * len(refs)
    return corpus_scores(stats)["bleu"]


def best_constant_program(train_rows: Sequence[dict], valid_rows: Sequence[dict]) -> dict:
    """The training function with the highest validation BLEU when returned for every validation
    docstring (the first among equals): its index in the training split, code tokens and that BLEU."""
    if not train_rows or not valid_rows:
        raise ValueError("The best constant program needs training functions and validation rows.")
    scores = constant_bleu([r["code_tokens"] for r in train_rows], [r["code_tokens"] for r in valid_rows])
    best = int(np.argmax(scores))
    return {"train_index": best, "code_tokens": list(train_rows[best]["code_tokens"]),
            "valid_bleu": float(scores[best]), "candidates": len(train_rows), "valid_rows": len(valid_rows)}


def constant_program(data_dir: str | Path) -> dict:
    """:func:`best_constant_program` of a processed corpus, cached as ``<data_dir>/constant_program.json``
    for that corpus (a corpus processed again is searched again)."""
    folder = project_path(data_dir)
    corpus = load_manifest(folder).get("corpus_sha256")
    cache = folder / CONSTANT_FILE
    if cache.is_file():
        found = json.loads(cache.read_text())
        if found.get("corpus_sha256") == corpus:
            return found
    found = {**best_constant_program(load_split(folder, "train"), load_split(folder, "valid")),
             "corpus_sha256": corpus}
    write_text(cache, json.dumps(found, indent=1) + "\n")
    return found


def baseline_rows(rows: Sequence[dict], retrieved: Sequence[Sequence[str]] | None, constant: Sequence[str] | None,
                  include_floor: bool = True, trg_vocab: Vocabulary | None = None,
                  shared: frozenset[NGram] | None = None) -> list[tuple[dict, list[list[str]]]]:
    """The results table's baseline rows for ``rows`` and each one's outputs: the floor (two rows or
    more), the constant program (given its tokens) and retrieval (given its outputs,
    ``utils.data.retrieval.retrieval_outputs``, which the caller has already computed)."""
    found = []
    if include_floor and len(rows) >= 2:
        found.append(({"model": FLOOR_MODEL, "decoding": FLOOR_DECODING}, shuffled_outputs(rows)))
    if constant is not None:
        found.append(({"model": CONSTANT_MODEL, "decoding": CONSTANT_DECODING}, [list(constant)] * len(rows)))
    if retrieved is not None:
        found.append(({"model": RETRIEVAL_MODEL, "decoding": RETRIEVAL_DECODING}, list(retrieved)))
    refs, docs = references(rows)
    return [({**row, **evaluate_outputs(outputs, refs, docs, trg_vocab, shared)}, outputs) for row, outputs in found]
