"""The combined system of ``utils.decoding.rerank``, fitted on the validation split and scored.

A split's candidates (the ``k`` nearest training functions and the beams of some models), their
features and their BLEU counts against the split's references form a ``CandidatePool``. With the
counts summed over the picked candidates, the corpus BLEU of any choice is a sum and a few logs
(``utils.bleu``), so the weights are fitted to corpus BLEU itself (Och 2003's minimum error rate
training, by coordinate ascent from several starts, the retrieval order among them: never below it).
The candidate sets (:func:`arms`: ``k`` and whose beams) are compared by 5-fold cross-validation on
the validation split (weights fitted on four fifths, the picks of the fifth
scored, all five pooled; the rule: the highest held-out BLEU, the first listed among equals), and
the winner is fitted again on the whole split. The test split is never read here.
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from utils.bleu import N_STATS, ORDERS, corpus_scores
from utils.checkpoint import SHIPPED_DIR, LoadedModel, load_checkpoint
from utils.config import REVIEWER
from utils.data.retrieval import TfidfRetriever
from utils.decoding.rerank import (
    FEATURES,
    RERANKER_FILE,
    RETRIEVED,
    Candidate,
    Reranker,
    agreement_matrix,
    candidate_features,
    gather_candidates,
    generic_docstring,
    mean_agreement,
)
from utils.evaluation.baselines import shared_ngrams
from utils.metrics import bleu_statistics
from utils.paths import project_path
from utils.training.parallel import resolve_workers

K_CHOICES = (1, 5, 10)
STEPS = (-2.0, -1.0, -0.5, -0.2, -0.1, 0.1, 0.2, 0.5, 1.0, 2.0)  # coordinate ascent's moves
ROUNDS = 8
RANDOM_STARTS = 200
FOLDS = 5  # cross-validation on the validation split: the candidate set's score


@dataclass
class CandidatePool:
    """One split's candidates per row, their features [n, len(FEATURES)] and BLEU counts [n, N_STATS]
    (``crystal``: the same with CrystalBLEU's shared n-grams left out)."""

    candidates: list[list[Candidate]]
    features: list[np.ndarray]
    stats: list[np.ndarray]
    crystal: list[np.ndarray]
    agreement: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # a row's agreement_matrix, once

    def agreement_of(self, q: int) -> np.ndarray:
        """Row ``q``'s candidates' :func:`agreement_matrix`, computed on first use and kept."""
        if q not in self.agreement:
            self.agreement[q] = agreement_matrix([c.tokens for c in self.candidates[q]])
        return self.agreement[q]

    def subset(self, k: int, beams: Sequence[str], rows: Sequence[int] | None = None) -> "CandidatePool":
        """The retrieved candidates of rank below ``k`` and the hypotheses of ``beams``, of ``rows`` (all).
        A row that loses candidates has its ``consensus`` computed again over the ones it keeps, as
        inference computes it over the chosen set alone."""
        out = CandidatePool([], [], [], [])
        column = FEATURES.index("consensus")
        for q in rows if rows is not None else range(len(self.candidates)):
            keep = [i for i, c in enumerate(self.candidates[q])
                    if (c.source == RETRIEVED and c.rank < k) or c.source in beams]
            out.candidates.append([self.candidates[q][i] for i in keep])
            for name in ("features", "stats", "crystal"):
                getattr(out, name).append(getattr(self, name)[q][keep])
            if len(keep) < len(self.candidates[q]):
                out.features[-1][:, column] = mean_agreement(self.agreement_of(q)[np.ix_(keep, keep)])
        return out


def candidate_pool(rows: Sequence[dict], train_rows: Sequence[dict], retriever: TfidfRetriever, k: int,
                   forward: LoadedModel, reviewer: LoadedModel, generic: Sequence[str],
                   beams: Mapping[str, tuple[LoadedModel, float]], beam_size: int = 5, syntax_aware: bool = True,
                   shared: frozenset | None = None, guide: Mapping[str, float] | None = None) -> CandidatePool:
    """Candidates of every row (``k`` nearest, then each model of ``beams``: (model, length penalty);
    those of ``guide`` retrieval-guided), with their features and BLEU counts against the row's reference."""
    docs = [r["docstring_tokens"] for r in rows]
    candidates = gather_candidates(retriever, train_rows, docs, k, beams, beam_size, syntax_aware, guide)
    return scored_pool(rows, candidates, candidate_features(candidates, docs, forward, reviewer, generic), shared)


def candidate_pools(splits: Sequence[Sequence[dict]], workers: int = 1, **build) -> list[CandidatePool]:
    """:func:`candidate_pool` of each split of rows (``build``: its other arguments). With ``workers`` > 1
    the splits are built side by side, one process of one thread each: on a 2-core CPU two such processes
    score the same candidates in about 0.83 of the time of one process on both cores (docs/benchmarks.md)."""
    if workers < 2 or len(splits) < 2:
        return [candidate_pool(rows, **build) for rows in splits]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(splits)), mp_context=context,
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(partial(candidate_pool, **build), splits))


def scored_pool(rows: Sequence[dict], candidates: list[list[Candidate]], features: list[np.ndarray],
                shared: frozenset | None = None) -> CandidatePool:
    """The pool of ``candidates`` (with their ``features``) and their BLEU counts against each row's reference."""
    stats, crystal = [], []
    for row, cands in zip(rows, candidates):
        refs = [row["code_tokens"]] * len(cands)
        stats.append(bleu_statistics([c.tokens for c in cands], refs))
        crystal.append(bleu_statistics([c.tokens for c in cands], refs, shared or ()))
    return CandidatePool(candidates, features, stats, crystal)


def _picks(scores: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The index (into the flat candidates) of each row's highest score, the first on ties."""
    top = np.maximum.reduceat(scores, starts)
    sizes = np.diff(np.append(starts, len(scores)))
    index = np.where(scores == np.repeat(top, sizes), np.arange(len(scores)), len(scores))
    return np.minimum.reduceat(index, starts)


def fit_weights(pool: CandidatePool, steps: Sequence[float] = STEPS, rounds: int = ROUNDS,
                starts: int = RANDOM_STARTS, seed: int = 0) -> tuple[np.ndarray, float]:
    """Weights (in the features' own units) that maximise the pool's corpus BLEU, and that BLEU.

    On standardised features, from several starting points (the cosine alone: the retrieval order;
    the weights of :func:`expected_bleu_weights`; ``starts`` random ones, a fixed seed), the best
    start is improved by coordinate ascent (each weight moved by ``steps`` in turn, a move kept when
    corpus BLEU rises) for at most ``rounds`` rounds. Never below the retrieval order's pick."""
    flat, stats, offsets = _flatten(pool)
    mean, scale = flat.mean(0), flat.std(0)
    scale[scale == 0] = 1.0
    z = (flat - mean) / scale

    def bleu(w: np.ndarray) -> float:
        return float(corpus_scores(stats[_picks(np.round(z @ w, 9), offsets)].sum(0))["bleu"])

    cosine = np.array([float(f == "cosine") for f in FEATURES])
    rng = np.random.default_rng(seed)
    candidates = [cosine, expected_bleu_weights(z, stats, offsets), *rng.normal(size=(starts, len(FEATURES)))]
    scored = [(bleu(w), -i, w) for i, w in enumerate(candidates)]
    best, _, weights = max(scored, key=lambda t: (t[0], t[1]))  # the earlier start among equals
    for _ in range(rounds):
        improved = False
        for j in range(len(FEATURES)):
            for step in steps:
                trial = weights.copy()
                trial[j] += step
                score = bleu(trial)
                if score > best + 1e-9:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights / scale, best


def expected_bleu_weights(z: np.ndarray, stats: np.ndarray, offsets: np.ndarray, epochs: int = 200) -> np.ndarray:
    """Weights of a softmax over each row's candidates that maximise the expected smoothed sentence
    BLEU of the pick (a smooth stand-in for corpus BLEU: a starting point for the search)."""
    gains = torch.tensor(_sentence_bleu(stats))
    feats = torch.tensor(z)
    row = torch.tensor(np.repeat(np.arange(len(offsets)), np.diff(np.append(offsets, len(z)))))
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(epochs):
        scores = feats @ w                                                          # [n]
        top = torch.full((len(offsets),), -torch.inf, dtype=scores.dtype).scatter_reduce(0, row, scores, "amax")
        e = torch.exp(scores - top[row])
        p = e / torch.zeros(len(offsets), dtype=e.dtype).index_add(0, row, e)[row]  # softmax within each row
        loss = -(p * gains).sum() / len(offsets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().numpy()


def _sentence_bleu(stats: np.ndarray) -> np.ndarray:
    """Each candidate's sentence BLEU (0-1) from its counts, orders above 1 smoothed by adding one."""
    matches, counts = stats[:, 2:2 + ORDERS].copy(), stats[:, 2 + ORDERS:].copy()
    matches[:, 1:] += 1
    counts[:, 1:] += 1
    with np.errstate(divide="ignore"):
        log_p = np.log(np.maximum(matches, 1e-9) / counts).mean(1)
        penalty = np.minimum(0.0, 1 - stats[:, 1] / np.maximum(stats[:, 0], 1))
    return np.exp(log_p + penalty) * (stats[:, 2] > 0)


def _flatten(pool: CandidatePool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = [len(f) for f in pool.features]
    if not sizes or min(sizes) == 0:
        raise ValueError("Every row needs at least one candidate (k of 1 or more).")
    starts = np.cumsum([0] + sizes[:-1])
    return np.concatenate(pool.features), np.concatenate(pool.stats).reshape(-1, N_STATS), starts


def picked(pool: CandidatePool, weights: np.ndarray) -> list[int]:
    """Each row's chosen candidate (its index in the row's list) under ``weights``."""
    flat, _, starts = _flatten(pool)
    return [int(i - s) for i, s in zip(_picks(np.round(flat @ weights, 9), starts), starts)]


def pool_scores(pool: CandidatePool, choice: Sequence[int]) -> dict[str, float]:
    """BLEU, CrystalBLEU and the brevity penalty of one candidate per row."""
    stats = np.stack([s[i] for s, i in zip(pool.stats, choice)]).sum(0)
    crystal = np.stack([s[i] for s, i in zip(pool.crystal, choice)]).sum(0)
    scores = corpus_scores(stats)
    return {"bleu": float(scores["bleu"]), "crystal_bleu": float(corpus_scores(crystal)["bleu"]),
            "brevity_penalty": float(scores["brevity_penalty"]),
            "generated_picked": 100.0 * float(np.mean([cands[i].source != RETRIEVED
                                                      for cands, i in zip(pool.candidates, choice)]))}


def arms(beam_models: Sequence[str], k_max: int = max(K_CHOICES)) -> list[tuple[int, tuple[str, ...]]]:
    """The candidate sets compared: every k of ``K_CHOICES`` up to ``k_max`` with no beams, with each
    model's, and with all."""
    beam_sets = [(), *((m,) for m in beam_models)] + ([tuple(beam_models)] if len(beam_models) > 1 else [])
    return [(k, b) for b in beam_sets for k in K_CHOICES if k <= k_max]


def cross_validated(pool: CandidatePool, k: int, beams: Sequence[str], folds: int = FOLDS) -> float:
    """Corpus BLEU of the held-out picks of ``folds``-fold cross-validation (row i in fold i mod folds;
    at most one fold per row, and with a single row, the fitted BLEU)."""
    arm = pool.subset(k, beams)  # the arm's own candidates (and agreement among them) in every fold
    n = len(arm.candidates)
    folds = min(folds, n)
    if folds < 2:
        return fit_weights(arm)[1]
    totals = np.zeros(N_STATS)
    for fold in range(folds):
        held = arm.subset(k, beams, [i for i in range(n) if i % folds == fold])
        weights, _ = fit_weights(arm.subset(k, beams, [i for i in range(n) if i % folds != fold]))
        totals += sum(s[i] for s, i in zip(held.stats, picked(held, weights)))
    return float(corpus_scores(totals)["bleu"])


def choose_reranker(valid: CandidatePool, beam_models: Sequence[str], generic: Sequence[str],
                    settings: Mapping, k_max: int = max(K_CHOICES)) -> tuple[Reranker, pd.DataFrame]:
    """The arm (``k`` up to ``k_max``) with the highest cross-validated validation BLEU (the first, i.e.
    smallest, among equals), fitted again on the whole validation split; and the table of every arm."""
    records = []
    for k, beams in arms(beam_models, k_max):
        sub = valid.subset(k, beams)
        weights, fitted_bleu = fit_weights(sub)
        records.append({"k": k, "beams": "+".join(beams) or "none", "valid_cv_bleu": cross_validated(sub, k, beams),
                        "valid_fitted_bleu": fitted_bleu,
                        **{f"valid_{m}": v for m, v in pool_scores(sub, picked(sub, weights)).items() if m != "bleu"},
                        **{f"w_{f}": w for f, w in zip(FEATURES, weights)}})
    table = pd.DataFrame(records)
    best = int(table["valid_cv_bleu"].round(6).idxmax())
    table["chosen"] = table.index == best
    row = table.loc[best]
    reranker = Reranker(weights={f: float(row[f"w_{f}"]) for f in FEATURES}, k=int(row["k"]),
                        generic_docstring=list(generic),
                        beam_models=[] if row["beams"] == "none" else str(row["beams"]).split("+"),
                        validation={"cv_bleu": float(row["valid_cv_bleu"]),
                                    "fitted_bleu": float(row["valid_fitted_bleu"])},
                        **settings)
    return reranker, table


# -- the main job's rows ---------------------------------------------------------------------------

RERANK_MODEL = "combined (rerank)"
REVIEWER_FILE = "reviewer_best.pt"


def load_reviewer(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel | None:
    """The reviewer of a checkpoint folder (``reviewer_best.pt``), to score in fp32; None without one."""
    path = project_path(folder) / REVIEWER_FILE
    if not path.is_file():
        return None
    return LoadedModel.from_checkpoint(load_checkpoint(path, device), path, device, expected_model=REVIEWER)


def decoding_name(reranker: Reranker) -> str:
    """The results table's ``decoding`` of the combined row: where its candidates come from."""
    beams = "".join(f" + {m} {'guided ' if reranker.guide.get(m) else ''}beam{reranker.beam_size}"
                    for m in reranker.beam_models)
    return f"{reranker.k} nearest{beams}"


def combined_system(train_rows: Sequence[dict], valid_rows: Sequence[dict], rows: Sequence[dict],
                    loaded: Mapping[str, LoadedModel], reviewer: LoadedModel, penalties: Mapping[str, float], *,
                    k_max: int = max(K_CHOICES), forward_model: str = "transformer", beam_size: int = 5,
                    syntax_aware: bool = True, shared: frozenset | None = None,
                    guide: Mapping[str, float] | None = None, workers: int = 0,
                    log: Callable[[str], None] = print) -> tuple[Reranker, pd.DataFrame, list[list[str]]]:
    """Fit the combined system on ``valid_rows`` and answer ``rows`` with it: the reranker, the table
    of every candidate set (fitted and chosen on validation; each also scored on ``rows``, for the
    study, not for the choice) and the chosen system's output for each row. ``penalties``: the beam's
    length penalty of each model whose beams are candidates (those of ``loaded`` but ``forward_model``'s
    own likelihood scores every candidate). ``shared``: CrystalBLEU's ignored n-grams (default: those
    of ``train_rows``). ``guide``: the beam models searched with retrieval-guided beam search, and
    their bonus (``utils.decoding.rerank.gather_candidates``). ``workers``: processes building the
    validation and test candidates (0: one per core on a CPU, at most 2; 1 on CUDA)."""
    docs = [r["docstring_tokens"] for r in train_rows]
    shared = shared_ngrams(train_rows) if shared is None else shared
    retriever = TfidfRetriever(docs)
    generic = generic_docstring(retriever, docs)
    beams = {m: (loaded[m], float(p)) for m, p in penalties.items() if m in loaded}
    guide = {m: float(w) for m, w in (guide or {}).items() if m in beams and w}
    build = dict(train_rows=train_rows, retriever=retriever, k=k_max, forward=loaded[forward_model], reviewer=reviewer,
                 generic=generic, beams=beams, beam_size=beam_size, syntax_aware=syntax_aware, shared=shared,
                 guide=guide)
    workers = resolve_workers(workers, loaded[forward_model].device, 2)
    start = time.perf_counter()
    valid, test = candidate_pools([valid_rows, rows], workers, **build)  # the test pool waits unread until the fit
    log(f"candidates scored: validation {sum(map(len, valid.candidates)):,}, the {len(rows):,} rows "
        f"{sum(map(len, test.candidates)):,} ({time.perf_counter() - start:.0f} s, "
        f"{'side by side in 2 processes' if workers > 1 else 'one process'})")
    settings = dict(forward_model=forward_model, beam_size=beam_size, syntax_aware=syntax_aware,
                    length_penalty={m: p for m, (_, p) in beams.items()}, guide=guide)
    reranker, table = choose_reranker(valid, list(beams), generic, settings, k_max)
    outputs: list[list[str]] = []
    for i, arm in table.iterrows():
        sub = test.subset(int(arm["k"]), [] if arm["beams"] == "none" else str(arm["beams"]).split("+"))
        choice = picked(sub, np.array([arm[f"w_{f}"] for f in FEATURES]))
        for m, v in pool_scores(sub, choice).items():
            table.loc[i, f"test_{m}"] = v
        if arm["chosen"]:  # the reranker's own set and weights
            outputs = [cands[j].tokens for cands, j in zip(sub.candidates, choice)]
    return reranker, table, outputs


def save_reranker(reranker: Reranker, folder: str | Path) -> str:
    """Write ``reranker.json`` into a run's checkpoint folder (``make release`` ships it); the shipped
    folder is never written (``make evaluate`` fits the same weights again and only reports them)."""
    folder = project_path(folder)
    if folder.resolve() == project_path(SHIPPED_DIR).resolve():
        return f"not written: {folder} holds the shipped weights and their own {RERANKER_FILE}"
    return str(reranker.save(folder / RERANKER_FILE))
