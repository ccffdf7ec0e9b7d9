"""BLEU from per-function statistics: equal to NLTK's and crystalbleu's corpus scores, its two parts
by hand, and the paired bootstrap's intervals (zero width for identical systems, above 0 for a
system better on every function, narrower with more functions)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from utils.bleu import (
    N_STATS,
    bleu_interval,
    corpus_scores,
    difference_interval,
    resample_weights,
    sentence_stats,
)
from utils.metrics import (
    bleu_statistics,
    corpus_bleu_score,
    crystal_bleu_score,
    evaluate_outputs,
    trivially_shared_ngrams,
)

REF8 = ["def", "f", "(", "a", ")", ":", "return", "foo_bar"]
WORDS = ["def", "f", "(", ")", ":", "return", "self", "x", "y", "+", "1", "None", "if", "else", "."]


def _corpus(n: int, seed: int, noise: float) -> tuple[list[list[str]], list[list[str]]]:
    """``n`` random references and hypotheses that copy each reference token with probability 1 - noise."""
    rng = random.Random(seed)
    refs = [[rng.choice(WORDS) for _ in range(rng.randint(3, 25))] for _ in range(n)]
    hyps = [[t if rng.random() > noise else rng.choice(WORDS) for t in r][: rng.randint(2, len(r) + 3)] for r in refs]
    return hyps, refs


def test_one_function_by_hand() -> None:
    hyp = REF8[:-1] + ["other"]
    row = sentence_stats(hyp, REF8)
    assert row.shape == (N_STATS,)
    assert row.tolist() == [8, 8, 7, 6, 5, 4, 8, 7, 6, 5]
    parts = corpus_scores(row)
    assert parts["brevity_penalty"] == 1.0
    assert parts["bleu"] == pytest.approx(100 * 0.5 ** 0.25)
    assert parts["ngram_precision"] == pytest.approx(100 * 0.5 ** 0.25)


def test_brevity_penalty_and_a_missing_order() -> None:
    short = corpus_scores(sentence_stats(REF8[:4], REF8))  # 4 of 8 tokens, every n-gram matches
    assert short["ngram_precision"] == pytest.approx(100.0)
    assert short["brevity_penalty"] == pytest.approx(math.exp(1 - 8 / 4))
    assert short["bleu"] == pytest.approx(100 * math.exp(-1))
    no_bigram = corpus_scores(sentence_stats(["a", "b"], ["b", "a"]))
    assert no_bigram["bleu"] == 0.0 and no_bigram["ngram_precision"] == 0.0
    empty = corpus_scores(sentence_stats([], REF8))
    assert empty["bleu"] == 0.0 and empty["brevity_penalty"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_nltk_and_crystalbleu_on_random_corpora(seed: int) -> None:
    hyps, refs = _corpus(60, seed, noise=0.3)
    hyps[3] = hyps[3][:1]  # a one-token output: no bigram, NLTK counts 1 in that denominator
    hyps[5] = ["<UNK>"] + hyps[5]  # never matches
    totals = bleu_statistics(hyps, refs).sum(0)
    assert corpus_scores(totals)["bleu"] == pytest.approx(corpus_bleu_score(hyps, refs), abs=1e-9)
    shared = trivially_shared_ngrams(refs, k=12)
    crystal = bleu_statistics(hyps, refs, shared).sum(0)
    assert corpus_scores(crystal)["bleu"] == pytest.approx(crystal_bleu_score(hyps, refs, shared), abs=1e-9)


def test_evaluate_outputs_reports_the_parts_whose_product_is_bleu() -> None:
    hyps, refs = _corpus(40, 3, noise=0.2)
    m = evaluate_outputs(hyps, refs, [[] for _ in refs])
    assert m["brevity_penalty"] * m["ngram_precision"] == pytest.approx(m["bleu"])
    assert 0 < m["brevity_penalty"] <= 1
    empty = evaluate_outputs([], [], [])
    assert math.isnan(empty["brevity_penalty"]) and math.isnan(empty["ngram_precision"])


def test_identical_systems_differ_by_zero_with_a_zero_width_interval() -> None:
    hyps, refs = _corpus(100, 4, noise=0.3)
    stats = bleu_statistics(hyps, refs)
    assert difference_interval(stats, stats.copy(), resample_weights(len(stats))) == (0.0, 0.0, 0.0)


def test_a_system_better_on_every_function_has_an_interval_above_zero() -> None:
    worse, refs = _corpus(200, 5, noise=0.5)
    better = [r[: len(h)] if len(h) <= len(r) else r + h[len(r):] for h, r in zip(worse, refs)]  # fixes every token
    a, b = bleu_statistics(better, refs), bleu_statistics(worse, refs)
    assert (a[:, 2:6] >= b[:, 2:6]).all()
    diff, low, high = difference_interval(a, b, resample_weights(len(a)))
    assert 0 < low <= diff <= high


def test_the_interval_narrows_as_the_number_of_functions_grows() -> None:
    hyps, refs = _corpus(2000, 6, noise=0.4)
    stats = bleu_statistics(hyps, refs)
    widths = []
    for n in (100, 400, 1600):
        low, high = bleu_interval(stats[:n], resample_weights(n))
        assert low <= corpus_scores(stats[:n].sum(0))["bleu"] <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_resampling_is_seeded_and_paired_systems_need_the_same_functions() -> None:
    w = resample_weights(50, resamples=20, seed=7)
    assert w.shape == (20, 50) and (w.sum(1) == 50).all()
    assert np.array_equal(w, resample_weights(50, resamples=20, seed=7))
    assert not np.array_equal(w, resample_weights(50, resamples=20, seed=8))
    with pytest.raises(ValueError, match="same functions"):
        difference_interval(np.zeros((3, N_STATS)), np.zeros((4, N_STATS)), resample_weights(3))
    with pytest.raises(ValueError, match="at least one function"):
        resample_weights(0)
