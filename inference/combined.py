"""The combined system from Python: for each docstring, the best of the nearest training functions
and the shipped models' beams, chosen as notebook 03 fitted it (``utils.decoding.rerank``).

    from inference.combined import combined_generate
    result = combined_generate(["Return the sum of a and b."])[0]
    print(result.chosen.code, result.chosen.where)

It reads the shipped weights (``checkpoints/``: the forward model, the reviewer, the beam models and
``reranker.json``, each checked against the manifest) and the training split from ``data_dir``
(``data/processed``: ``make evaluate`` or notebook 01 writes it; the corpus must be the one the
weights were trained on). It writes nothing, and the code it returns is never run.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from inference.inference import load_generator
from utils.checkpoint import SHIPPED_DIR, shipped_manifest, verify_shipped
from utils.data import detokenize, docstring_summary, load_manifest, load_split, tokenize_docstring
from utils.data.retrieval import TfidfRetriever
from utils.decoding.rerank import (
    FEATURES,
    RERANKER_FILE,
    RETRIEVED,
    Candidate,
    Reranker,
    candidate_features,
    choose,
    gather_candidates,
)
from utils.paths import project_path, user_path

EVALUATE_HINT = "run `make evaluate` (or notebooks/01_preprocess.ipynb) first; it takes about two minutes"


@dataclass
class Scored:
    """One candidate with its features, its score under the fitted weights and where it came from."""

    code: str
    source: str                 # "training function", "<model> beam" or "<model> guided beam"
    where: str                  # the training function's file and name, or the hypothesis' rank
    score: float
    features: dict[str, float] = field(default_factory=dict)


@dataclass
class CombinedResult:
    """What the combined system answered for one docstring: its pick and every candidate, best first."""

    docstring: str
    chosen: Scored
    candidates: list[Scored]


@functools.lru_cache(maxsize=2)
def _training_split(data_dir: str, mtime_ns: int) -> tuple[list[dict], TfidfRetriever]:
    rows = load_split(data_dir, "train", with_retrieved=False)
    return rows, TfidfRetriever([r["docstring_tokens"] for r in rows])


def _reranker(folder: Path) -> Reranker:
    path = folder / RERANKER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {RERANKER_FILE} in {folder}: the combined system is fitted by notebook 03 and "
                                "shipped by `make release`; restore the shipped weights with `git checkout -- "
                                "checkpoints`.")
    verify_shipped(path)
    return Reranker.load(path)


def _training_rows(data_dir: str | os.PathLike, folder: Path) -> tuple[list[dict], TfidfRetriever]:
    """The training split the candidates come from, checked to be the shipped weights' corpus."""
    where = project_path(user_path(data_dir))
    train = where / "train.jsonl"
    if not train.is_file():
        raise FileNotFoundError(f"The combined system retrieves from the training split, and {train} does not "
                                f"exist: {EVALUATE_HINT}.")
    expected = (shipped_manifest(folder) or {}).get("corpus_sha256")
    found = load_manifest(where).get("corpus_sha256")
    if expected and found != expected:
        raise ValueError(f"The processed corpus in {where} is not the one the shipped weights were trained on "
                         f"(corpus hash {str(found)[:12]} against {expected[:12]}); {EVALUATE_HINT}.")
    return _training_split(str(where), train.stat().st_mtime_ns)


def _describe(c: Candidate, train_rows: Sequence[dict], guided: Sequence[str]) -> tuple[str, str]:
    if c.source == RETRIEVED:
        row = train_rows[c.train_index]
        return "training function", f"{row.get('path', '?')}: {row.get('func_name', '?')} (cosine {c.cosine:.3f})"
    return f"{c.source} {'guided ' if c.source in guided else ''}beam", f"hypothesis {c.rank + 1}"


def combined_generate(docstrings: Iterable[str], checkpoint_dir: str | os.PathLike = SHIPPED_DIR,
                      data_dir: str | os.PathLike = "data/processed",
                      device: str | torch.device = "cpu") -> list[CombinedResult]:
    """The combined system's answer for each docstring (see the module's docstring)."""
    docstrings = list(docstrings)
    if not docstrings or any(not isinstance(d, str) or not d.strip() for d in docstrings):
        raise ValueError("docstring is empty: describe the function to generate")
    folder = project_path(user_path(checkpoint_dir))
    reranker = _reranker(folder)
    train_rows, retriever = _training_rows(data_dir, folder)
    forward = load_generator(folder / f"{reranker.forward_model}_best.pt", device=device)
    reviewer = load_generator(folder / "reviewer_best.pt", device=device)
    beams = {name: (load_generator(folder / f"{name}_best.pt", device=device), reranker.length_penalty.get(name, 3.0))
             for name in reranker.beam_models}
    tokens = [tokenize_docstring(docstring_summary(d)) or tokenize_docstring(d) for d in docstrings]
    candidates = gather_candidates(retriever, train_rows, tokens, reranker.k, beams, reranker.beam_size,
                                   reranker.syntax_aware, reranker.guide)
    features = candidate_features(candidates, tokens, forward, reviewer, reranker.generic_docstring)
    weights = reranker.weight_vector()
    results = []
    for doc, cands, feats, best in zip(docstrings, candidates, features, choose(features, weights)):
        scores = np.round(feats @ weights, 9)
        scored = [Scored(detokenize(c.tokens), *_describe(c, train_rows, list(reranker.guide)), float(s),
                         dict(zip(FEATURES, map(float, f))))
                  for c, s, f in zip(cands, scores, feats)]
        order = sorted(range(len(scored)), key=lambda i: (-scores[i], i))  # best first, ties in candidate order
        results.append(CombinedResult(doc, scored[best], [scored[i] for i in order]))
    return results
