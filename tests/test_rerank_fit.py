"""Fitting the combined system (utils/evaluation/rerank.py): on validation only, to corpus BLEU."""
from __future__ import annotations

import numpy as np
import pytest

from utils.bleu import corpus_scores
from utils.data.retrieval import TfidfRetriever
from utils.decoding.rerank import FEATURES, RETRIEVED, Candidate, Reranker
from utils.evaluation.rerank import (
    CandidatePool,
    arms,
    candidate_pools,
    choose_reranker,
    combined_system,
    decoding_name,
    fit_weights,
    load_reviewer,
    picked,
    pool_scores,
)
from utils.metrics import bleu_statistics

REFERENCE = "def total ( values ) : return sum ( values )".split()
WRONG = "def first ( items ) : return items [ 0 ]".split()


def _pool(n: int, separating: str, seed: int = 0) -> CandidatePool:
    """Three candidates per row, one of them the reference itself; only ``separating`` tells it apart
    (every other feature is noise), and the cosine puts a wrong one first."""
    rng = np.random.default_rng(seed)
    pool = CandidatePool([], [], [], [])
    for _ in range(n):
        good = int(rng.integers(3))
        tokens = [REFERENCE if i == good else WRONG[: 4 + i] for i in range(3)]
        features = rng.normal(size=(3, len(FEATURES)))
        features[:, FEATURES.index(separating)] = [1.0 if i == good else 0.0 for i in range(3)]
        if separating != "cosine":
            features[:, FEATURES.index("cosine")] = [0.9 if i == (good + 1) % 3 else 0.1 for i in range(3)]
        pool.candidates.append([Candidate(t, RETRIEVED, i, float(features[i, 0]), i) for i, t in enumerate(tokens)])
        pool.features.append(features)
        stats = bleu_statistics(tokens, [REFERENCE] * 3)
        pool.stats.append(stats)
        pool.crystal.append(stats)
    return pool


@pytest.mark.parametrize("feature", ["reviewer", "pmi", "length"])
def test_the_fitted_weight_goes_to_the_feature_that_separates_the_better_candidate(feature) -> None:
    pool = _pool(60, feature)
    weights, bleu = fit_weights(pool)
    scale = np.concatenate(pool.features).std(0)
    standardised = np.abs(weights * scale)
    assert FEATURES[int(np.argmax(standardised))] == feature
    assert bleu == pytest.approx(100.0)  # every row picks the reference
    assert picked(pool, weights) == [[c.tokens for c in cands].index(REFERENCE) for cands in pool.candidates]


def test_the_fit_is_never_below_the_retrieval_order() -> None:
    pool = _pool(40, "cosine")
    for cands, f in zip(pool.candidates, pool.features):  # noise everywhere but the cosine
        f[:, FEATURES.index("cosine")] += np.random.default_rng(1).normal(scale=0.01, size=len(cands))
    cosine = np.array([float(f == "cosine") for f in FEATURES])
    start = corpus_scores(np.stack([s[i] for s, i in zip(pool.stats, picked(pool, cosine))]).sum(0))["bleu"]
    assert fit_weights(pool)[1] >= start - 1e-9


def test_subsets_keep_the_k_nearest_and_the_named_beams() -> None:
    pool = _pool(4, "reviewer")
    pool.candidates[0].append(Candidate(["x"], "transformer"))
    pool.features[0] = np.vstack([pool.features[0], np.zeros(len(FEATURES))])
    pool.stats[0] = np.vstack([pool.stats[0], bleu_statistics([["x"]], [REFERENCE])])
    pool.crystal[0] = pool.stats[0]
    assert [len(c) for c in pool.subset(1, []).candidates] == [1, 1, 1, 1]
    assert [len(c) for c in pool.subset(2, ["transformer"]).candidates] == [3, 2, 2, 2]
    assert [len(c) for c in pool.subset(3, [], rows=[1, 3]).candidates] == [3, 3]
    assert pool_scores(pool.subset(1, []), [0] * 4)["generated_picked"] == 0.0


def test_the_chosen_arm_is_the_best_cross_validated_one() -> None:
    pool = _pool(40, "reviewer")
    reranker, table = choose_reranker(pool, [], ["Return", "it", "."], {})
    assert len(table) == len(arms([])) and table["chosen"].sum() == 1
    best = table.loc[table["chosen"]].iloc[0]
    assert best["valid_cv_bleu"] == table["valid_cv_bleu"].max()
    assert reranker.k == best["k"] and reranker.k > 1  # one candidate (k = 1) cannot find the reference
    assert reranker.generic_docstring == ["Return", "it", "."] and reranker.validation["cv_bleu"] == 100.0
    assert decoding_name(reranker) == f"{reranker.k} nearest"
    assert [k for k, _ in arms([], k_max=5)] == [1, 5] and len(arms(["a", "b"], k_max=1)) == 4
    _, small = choose_reranker(pool, [], ["Return", "it", "."], {}, k_max=5)
    assert small["k"].tolist() == [1, 5]
    guided = Reranker({}, 5, [], beam_models=["transformer", "copy"], guide={"transformer": 1.0})
    assert decoding_name(guided) == "5 nearest + transformer guided beam5 + copy beam5"


def test_fitting_never_reads_the_rows_it_answers(ckpt_dir, loaded, rows) -> None:
    """The weights come from the validation rows alone: the same whichever rows are answered."""
    reviewer = load_reviewer(ckpt_dir)
    train, valid = rows * 3, rows[:3]
    answers = []
    for test in (rows[3:], list(reversed(rows))):
        reranker, table, outputs = combined_system(train, valid, test, loaded, reviewer, {"attention": 2.0},
                                                   workers=1, log=lambda _: None)
        assert len(outputs) == len(test) and {"test_bleu", "valid_cv_bleu"} <= set(table.columns)
        answers.append(reranker)
    assert answers[0] == answers[1]
    assert answers[0].beam_models in ([], ["attention"]) and answers[0].length_penalty == {"attention": 2.0}
    assert load_reviewer(ckpt_dir.parent) is None


def test_two_processes_build_the_same_candidate_pools_as_one(rows, loaded, ckpt_dir) -> None:
    """Validation and test candidates built side by side (one thread each) are those built one after the other."""
    train = rows * 3
    build = dict(train_rows=train, retriever=TfidfRetriever([r["docstring_tokens"] for r in train]), k=2,
                 forward=loaded["transformer"], reviewer=load_reviewer(ckpt_dir), generic=["return", "the", "value"],
                 beams={"attention": (loaded["attention"], 2.0)}, beam_size=2, guide={"attention": 1.0})
    splits = [rows[:3], rows[3:]]
    alone, together = candidate_pools(splits, 1, **build), candidate_pools(splits, 2, **build)
    for a, b in zip(alone, together, strict=True):
        assert a.candidates == b.candidates
        for name in ("features", "stats", "crystal"):
            for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_a_subset_computes_the_agreement_among_the_candidates_it_keeps() -> None:
    """Inference computes ``consensus`` over the chosen set alone; fitting on a subset must see the same."""
    from utils.decoding.rerank import consensus

    pool = _pool(3, "reviewer")
    column = FEATURES.index("consensus")
    whole = pool.subset(3, [])
    assert all((a == b).all() for a, b in zip(whole.features, pool.features))  # nothing dropped: nothing changed
    two = pool.subset(2, [])
    for cands, feats in zip(two.candidates, two.features):
        assert feats[:, column].tolist() == consensus([c.tokens for c in cands])
