"""The retrieval baseline: TF-IDF nearest training docstring, ties to the first row."""
from __future__ import annotations

import pytest

from utils.data.retrieval import TfidfRetriever, retrieval_outputs
from utils.evaluation.baselines import RETRIEVAL_MODEL, retrieval_baseline

TRAIN = [
    {"docstring_tokens": ["Return", "the", "sum", "of", "two", "numbers", "."], "code_tokens": ["def", "add"]},
    {"docstring_tokens": ["Open", "the", "file", "and", "read", "it", "."], "code_tokens": ["def", "read"]},
    {"docstring_tokens": ["Return", "the", "sum", "of", "two", "numbers", "."], "code_tokens": ["def", "plus"]},
    {"docstring_tokens": ["Close", "the", "socket", "."], "code_tokens": ["def", "close"]},
]


def test_nearest_docstring_by_tfidf_cosine() -> None:
    r = TfidfRetriever([row["docstring_tokens"] for row in TRAIN])
    queries = [["read", "a", "FILE"], ["sum", "numbers"], ["close", "the", "socket", "now"], ["zzz"]]
    # case-insensitive words; the duplicate docstring ties and the first row wins; no shared word: row 0
    assert r.nearest(queries) == [1, 0, 3, 0]
    # "the" is in every docstring (low idf): a rare word decides
    assert r.nearest([["the", "the", "the", "socket"]]) == [3]
    assert retrieval_outputs(TRAIN, [{"docstring_tokens": ["open", "file"]}]) == [["def", "read"]]


def test_the_baseline_is_scored_like_a_model() -> None:
    rows = [{"docstring_tokens": ["read", "the", "file"], "code_tokens": ["def", "read"]},
            {"docstring_tokens": ["close", "socket"], "code_tokens": ["def", "shut"]}]
    m = retrieval_baseline(TRAIN, rows)
    assert m["n"] == 2 and m["exact_match"] == pytest.approx(50.0)
    assert 0 <= m["bleu"] <= 100 and "codebleu" in m
    assert RETRIEVAL_MODEL.startswith("retrieval")
    with pytest.raises(ValueError, match="at least one training docstring"):
        TfidfRetriever([])
