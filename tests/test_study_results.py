"""The original study's quoted numbers, labelled as such, beside ours."""
from __future__ import annotations

import math

import pytest

from utils.evaluation.results import results_table
from utils.evaluation.study_results import study_comparison, study_table


def test_study_table_is_labelled_as_quoted():
    t = study_table()
    assert list(t["model"]) == ["rnn", "lstm", "attention"]
    assert list(t["bleu"]) == [11.16, 19.64, 21.26]
    assert list(t["token_accuracy"]) == [19.13, 18.67, 21.06]
    assert (t["exact_match"] == 0).all()
    assert t["source"].str.contains("quoted from the original study").all()


def test_study_comparison(loaded, rows, decoded):
    table = results_table(decoded, loaded, rows)
    cmp = study_comparison(table)
    assert list(cmp.index) == ["RNN", "LSTM", "LSTM + attention"]
    assert cmp.loc["RNN", "BLEU (ours)"] == pytest.approx(table.loc[0, "bleu"])
    assert math.isnan(cmp.loc["LSTM", "BLEU (ours)"])  # no LSTM checkpoint
    assert cmp.loc["LSTM", "BLEU (study, quoted)"] == 19.64
