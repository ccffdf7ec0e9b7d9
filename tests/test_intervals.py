"""The results table's bootstrap columns: each row's interval, the paired difference from retrieval
and from the model below in the ranking (same decoding)."""
from __future__ import annotations

import random

import pandas as pd
import pytest

from utils.evaluation.intervals import BELOW, interval_columns
from utils.metrics import bleu_statistics, corpus_bleu_score, trivially_shared_ngrams

WORDS = ["def", "f", "(", "self", ")", ":", "return", "x", "+", "1", "None", "if", "else", "."]


def _outputs(refs: list[list[str]], noise: float, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[t if rng.random() > noise else rng.choice(WORDS) for t in r] for r in refs]


def test_intervals_and_paired_differences() -> None:
    rng = random.Random(0)
    refs = [[rng.choice(WORDS) for _ in range(rng.randint(4, 20))] for _ in range(150)]
    table = pd.DataFrame({"model": ["rnn", "lstm", "lstm", "retrieval (TF-IDF)"],
                          "decoding": ["greedy", "greedy", "beam5", "nearest training docstring"]})
    outputs = [_outputs(refs, 0.6, 1), _outputs(refs, 0.1, 2), _outputs(refs, 0.3, 3), _outputs(refs, 0.6, 1)]
    got = interval_columns(table, outputs, refs, trivially_shared_ngrams(refs, k=10), "retrieval (TF-IDF)",
                           resamples=300)
    assert got["compared_with"].fillna("").tolist() == ["", "rnn", "", ""]  # no rnn beam5 row to compare with
    for i, o in enumerate(outputs):
        assert got.loc[i, "bleu_low"] < corpus_bleu_score(o, refs) < got.loc[i, "bleu_high"]
    # lstm greedy copies 90% of the tokens, rnn 40%: better on the resampled sets too
    assert got.loc[1, "bleu_vs_below"] == pytest.approx(corpus_bleu_score(outputs[1], refs)
                                                        - corpus_bleu_score(outputs[0], refs))
    assert got.loc[1, "bleu_vs_below_low"] > 0 and got.loc[1, "crystal_bleu_vs_below_low"] > 0
    # rnn's outputs equal retrieval's: a difference of 0 with an interval of zero width
    assert got.loc[0, ["bleu_vs_retrieval", "bleu_vs_retrieval_low", "bleu_vs_retrieval_high"]].tolist() == [0, 0, 0]
    assert got.loc[3, ["bleu_vs_retrieval"]].isna().all()  # retrieval against itself: nothing
    assert BELOW == {"lstm": "rnn", "attention": "lstm", "transformer": "attention", "copy": "attention"}


def test_crystal_bleu_columns_need_the_shared_ngrams_and_outputs_match_rows() -> None:
    refs = [["def", "f", "(", ")", ":", "return", "x"]] * 5
    table = pd.DataFrame({"model": ["rnn"], "decoding": ["greedy"]})
    got = interval_columns(table, [refs], refs, None, "retrieval (TF-IDF)", resamples=50)
    assert "crystal_bleu_low" not in got and got.loc[0, "bleu_low"] == pytest.approx(100.0)
    assert bleu_statistics(refs, refs).shape == (5, 10)
    with pytest.raises(ValueError, match="2 output lists for 1 table rows"):
        interval_columns(table, [refs, refs], refs, None, None)
