"""The combined system: for a docstring, gather candidate functions and choose one by a weighted sum
of what is known about each (reranking, as in noisy-channel translation: Yee et al. 2019; Yin and
Neubig 2019; Zhang et al. 2022, coder-reviewer).

Candidates are the ``k`` training functions whose docstrings are most similar (TF-IDF,
``utils.data.retrieval``) and the finished hypotheses of some models' beam search. Each candidate
gets the features of ``FEATURES``:

    cosine     the TF-IDF cosine of the query with the candidate's training docstring (0 for a beam's)
    forward    log p(code | docstring) per code piece, under the forward model (a generator)
    pmi        forward minus log p(code | generic docstring) per piece: what the docstring adds
    reviewer   log p(docstring | code) per docstring piece, under the reviewer (code -> docstring)
    length     log(1 + tokens of the candidate): corpus BLEU's brevity penalty punishes short picks
    generated  1 for a model's hypothesis, 0 for a training function (seen in training: its
               likelihood is inflated)
    consensus  the candidate's mean smoothed sentence BLEU against the query's other candidates
               (minimum Bayes risk: what many candidates agree on is more likely right)
    overlap    the share of the query's identifier-like words (three letters or more) that the
               candidate's code holds (argument and attribute names the docstring mentions)

and the pick is the candidate with the highest ``features @ weights``, the first on ties (the
nearest training functions first, in retrieval order). Likelihoods are computed by teacher forcing,
many candidates to a batch. The weights, ``k`` and the generic docstring are fitted on the
validation split (``utils.evaluation.rerank``) and saved as JSON beside the weights.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.bleu import ORDERS, ngram_counts
from utils.checkpoint import LoadedModel
from utils.data.batch import Example, encode_source, length_key, make_batch
from utils.data.retrieval import TfidfRetriever
from utils.data.subwords import join_pieces
from utils.data.vocabulary import PAD
from utils.decoding.search import decode_examples, ids_to_tokens
from utils.files import atomic_write
from utils.precision import autocast

FEATURES = ("cosine", "forward", "pmi", "reviewer", "length", "generated", "consensus", "overlap")
RERANKER_FILE = "reranker.json"
RETRIEVED = "retrieved"
GUIDE_K = 5  # a guided beam's nearest training functions (the guided study's k: plots/guided_study.csv)


@dataclass
class Candidate:
    """One candidate function for a query: its code tokens and where it came from."""

    tokens: list[str]
    source: str                    # RETRIEVED, or the model whose beam wrote it
    train_index: int | None = None  # the training row of a retrieved function
    cosine: float = 0.0             # of its docstring with the query (retrieved only)
    rank: int = 0                   # its place in the retrieval order, or in its beam


@dataclass
class Reranker:
    """What the combined system needs besides the models: written by the fitting, read by inference."""

    weights: dict[str, float]
    k: int                                       # nearest training functions per query
    generic_docstring: list[str]                 # the docstring of the PMI's baseline
    forward_model: str = "transformer"           # whose likelihood is ``forward``
    beam_models: list[str] = field(default_factory=list)  # whose beams add candidates
    beam_size: int = 5
    syntax_aware: bool = True
    length_penalty: dict[str, float] = field(default_factory=dict)  # per beam model
    guide: dict[str, float] = field(default_factory=dict)  # retrieval-guided beams: model -> bonus (nats)
    fitted_on: str = "valid"
    validation: dict[str, float] = field(default_factory=dict)    # the fitted system's figures there

    def weight_vector(self) -> np.ndarray:
        return np.array([float(self.weights.get(f, 0.0)) for f in FEATURES])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_write(path) as f:
            json.dump(asdict(self), f, indent=1)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Reranker":
        """Read a reranker JSON; a ValueError that says what is wrong with a damaged or foreign one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            unknown = sorted(set(data["weights"]) - set(FEATURES))
            if unknown:
                raise ValueError(f"unknown features {unknown}")
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a reranker file written by notebook 03 ({e}); run "
                             "notebooks/03_bleu.ipynb (or `make main`) to write it again.") from None


def generic_docstring(retriever: TfidfRetriever, train_docstrings: Sequence[Sequence[str]]) -> list[str]:
    """The training docstring nearest the centroid of all of them (highest cosine with the mean
    TF-IDF vector; the first on ties): a docstring that says as little in particular as any."""
    centroid = torch.sparse.sum(retriever.matrix, dim=0).to_dense()      # [W]
    closeness = torch.sparse.mm(retriever.matrix, centroid.unsqueeze(1)).squeeze(1)  # [N]
    return list(train_docstrings[int(torch.argmax(closeness))])


def nearest_candidates(retriever: TfidfRetriever, train_rows: Sequence[dict], docstrings: Sequence[Sequence[str]],
                       k: int) -> list[list[Candidate]]:
    """The ``k`` nearest training functions of each docstring, nearest first (``TfidfRetriever.top_k``)."""
    return [[Candidate(list(train_rows[i]["code_tokens"]), RETRIEVED, i, cos, r) for r, (i, cos) in enumerate(found)]
            for found in retriever.top_k(docstrings, k)]


def beam_candidates(loaded: LoadedModel, docstrings: Sequence[Sequence[str]], beam_size: int,
                    length_penalty: float, syntax_aware: bool, batch_size: int = 64,
                    guide: Sequence[Sequence[Sequence[str]]] | None = None, guide_weight: float = 0.0,
                    source: str | None = None) -> list[list[Candidate]]:
    """The finished hypotheses of ``loaded``'s beam search for each docstring (up to ``beam_size``),
    best first, duplicates (as tokens) dropped; ``source`` names them (default: the model). With
    ``guide`` (each docstring's retrieved functions, code tokens), retrieval-guided beam search."""
    model, trg = loaded.model, loaded.trg_vocab
    guide_ids = [[trg.encode(trg.symbols(code)) for code in codes] for codes in guide] if guide is not None else None
    examples = []
    for i, doc in enumerate(docstrings):
        ex = encode_source(loaded.src_vocab.symbols(doc)[: loaded.max_src_len], None, loaded.src_vocab,
                           loaded.trg_vocab, with_copy=model.uses_copy)
        ex.index = i
        examples.append(ex)
    hyp = decode_examples(model, examples, batch_size=batch_size, beam_size=beam_size,
                          max_len=model.config.max_trg_len, length_penalty=length_penalty,
                          syntax_aware=syntax_aware, trg_vocab=loaded.trg_vocab, precision=loaded.precision,
                          guide=guide_ids, guide_weight=guide_weight)
    out = []
    for n_best, ex in zip(hyp.n_best, examples):
        seen, found = set(), []
        for ids in n_best:
            tokens = join_pieces(ids_to_tokens(ids, loaded.trg_vocab, ex.src_oov))
            if tuple(tokens) not in seen:
                seen.add(tuple(tokens))
                found.append(Candidate(tokens, source or loaded.name, rank=len(found)))
        out.append(found)
    return out


def gather_candidates(retriever: TfidfRetriever, train_rows: Sequence[dict], docstrings: Sequence[Sequence[str]],
                      k: int, beams: Mapping[str, tuple[LoadedModel, float]], beam_size: int,
                      syntax_aware: bool, guide: Mapping[str, float] | None = None) -> list[list[Candidate]]:
    """Each docstring's candidates: its ``k`` nearest training functions, then the beam's hypotheses of
    each model of ``beams`` (name -> (model, length penalty)), in that order. A model of ``guide``
    (name -> bonus in nats) searches with retrieval-guided beam search: the bonus on every piece that
    continues a bigram of the docstring's ``GUIDE_K`` nearest training functions."""
    guide = {m: w for m, w in (guide or {}).items() if w}
    nearest = nearest_candidates(retriever, train_rows, docstrings, max(k, GUIDE_K if guide else 0))
    codes = [[c.tokens for c in found[:GUIDE_K]] for found in nearest] if guide else None
    candidates = [found[:k] for found in nearest]
    for name, (loaded, penalty) in beams.items():
        bonus = guide.get(name, 0.0)
        found_beams = beam_candidates(loaded, docstrings, beam_size, penalty, syntax_aware,
                                      guide=codes if bonus else None, guide_weight=bonus)
        for found, extra in zip(candidates, found_beams):
            found += extra
    return candidates


@torch.no_grad()
def log_probs_per_piece(loaded: LoadedModel, sources: Sequence[Sequence[str]], targets: Sequence[Sequence[str]],
                        batch_pieces: int = 2000) -> np.ndarray:
    """Teacher-forced mean log-probability per target piece (<EOS> included) of each (source tokens,
    target tokens) pair under ``loaded``'s model, both cut to its limits; many pairs to a batch,
    grouped by length. Not for the copy model (its scores need the copy ids)."""
    model, device = loaded.model.eval(), loaded.device
    if model.uses_copy:
        raise ValueError(f"{loaded.name} copies from its source: score candidates with a model that does not.")
    src_v, trg_v = loaded.src_vocab, loaded.trg_vocab
    trg_limit = min(int(model.config.max_trg_len), (loaded.max_trg_len or 10 ** 9) - 2)
    examples = [Example(src_v.encode(src_v.symbols(s))[: loaded.max_src_len],
                        trg_v.encode(trg_v.symbols(t))[:trg_limit], i)
                for i, (s, t) in enumerate(zip(sources, targets, strict=True))]
    out = np.zeros(len(examples))
    # in the order of its training's batches (the reviewer's sources, code, are the long side)
    order = sorted(range(len(examples)), key=length_key(examples, model.config.reviews))
    start = 0
    while start < len(order):
        width = max(len(examples[i].trg) for i in order[start:start + 64]) + 1
        stop = min(len(order), start + max(1, batch_pieces // max(width, 1)))
        batch = make_batch([examples[i] for i in order[start:stop]]).to(device)
        with autocast(loaded.precision, device):
            scores, _ = model(batch.src, batch.src_lengths, batch.trg_in, 1.0)     # [B, T, V]
        logp = F.log_softmax(scores.float(), -1)
        picked = logp.gather(2, batch.trg_out.unsqueeze(2)).squeeze(2)             # [B, T]
        real = batch.trg_out != PAD
        per_row = (picked * real).sum(1) / real.sum(1)                              # [B]
        out[batch.indices] = per_row.cpu().numpy()
        start = stop
    return out


def candidate_features(candidates: Sequence[Sequence[Candidate]], docstrings: Sequence[Sequence[str]],
                       forward: LoadedModel, reviewer: LoadedModel, generic: Sequence[str]) -> list[np.ndarray]:
    """The ``FEATURES`` of every candidate: one [candidates, len(FEATURES)] array per query."""
    flat = [(q, c) for q, cands in enumerate(candidates) for c in cands]
    docs = [list(docstrings[q]) for q, _ in flat]
    codes = [c.tokens for _, c in flat]
    fwd = log_probs_per_piece(forward, docs, codes)
    base = log_probs_per_piece(forward, [list(generic)] * len(codes), codes)
    rev = log_probs_per_piece(reviewer, codes, docs)
    agree = [v for cands in candidates for v in consensus([c.tokens for c in cands])]
    shared = [v for q, cands in enumerate(candidates) for v in overlap(docstrings[q], [c.tokens for c in cands])]
    rows = np.array([[c.cosine, f, f - b, r, math.log1p(len(c.tokens)), float(c.source != RETRIEVED), a, o]
                     for (_, c), f, b, r, a, o in zip(flat, fwd, base, rev, agree, shared)]).reshape(len(flat),
                                                                                                len(FEATURES))
    bounds = np.cumsum([0] + [len(c) for c in candidates])
    return [rows[bounds[q]:bounds[q + 1]] for q in range(len(candidates))]


def agreement_matrix(codes: Sequence[Sequence[str]]) -> np.ndarray:
    """[n, n]: entry (i, j) is code i's sentence BLEU (0-1; orders smoothed by adding one, with the
    brevity penalty) against code j as the reference; 0 on the diagonal."""
    grams = [ngram_counts(c) for c in codes]
    out = np.zeros((len(codes), len(codes)))
    for i, mine in enumerate(grams):
        for j, other in enumerate(grams):
            if i == j:
                continue
            log_p = sum(math.log((sum(min(n, other[o][g]) for g, n in mine[o].items()) + 1)
                                 / (sum(mine[o].values()) + 1)) for o in range(ORDERS)) / ORDERS
            out[i, j] = math.exp(log_p + min(0.0, 1 - len(codes[j]) / max(len(codes[i]), 1)))
    return out


def mean_agreement(matrix: np.ndarray) -> list[float]:
    """Each row's mean over the other columns of an :func:`agreement_matrix` (0 for a lone candidate)."""
    n = len(matrix)
    return (matrix.sum(1) / (n - 1)).tolist() if n > 1 else [0.0] * n


def consensus(codes: Sequence[Sequence[str]]) -> list[float]:
    """Each code's mean sentence BLEU against each of the other codes as the reference (minimum Bayes
    risk's agreement); 0 for a lone candidate."""
    return mean_agreement(agreement_matrix(codes))


def overlap(docstring: Sequence[str], codes: Sequence[Sequence[str]]) -> list[float]:
    """The share of the docstring's identifier-like words (three characters or more, any case) that
    each code's tokens hold (0 when the docstring has none)."""
    words = {t.lower() for t in docstring if t.isidentifier() and len(t) > 2}
    return [len(words & {t.lower() for t in code}) / len(words) if words else 0.0 for code in codes]


def choose(features: Sequence[np.ndarray], weights: np.ndarray) -> list[int]:
    """The chosen candidate of each query: the highest weighted sum, the first on ties."""
    return [int(np.argmax(np.round(f @ weights, 9))) if len(f) else -1 for f in features]
