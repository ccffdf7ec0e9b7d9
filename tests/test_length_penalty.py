"""The beam's length penalty: tuned on validation rows, saved, read back."""
from __future__ import annotations

import json

import pytest

import utils.evaluation.length_penalty as lp
from utils.evaluation.length_penalty import (
    TUNING_CSV,
    choose_length_penalty,
    chosen_length_penalties,
    tune_length_penalty,
)
from utils.evaluation.results import decode_split
from utils.metrics import corpus_bleu_score


def test_tune_length_penalty_keeps_the_best_bleu_of_each_decoding(loaded, rows):
    two = {name: loaded[name] for name in ("rnn", "attention")}
    table = tune_length_penalty(two, rows, [2.0, 0.0, 1.0, 1.0], beam_size=2, max_len=12,
                                syntax_aware=[False, True], log=lambda s: None)
    assert len(table) == 2 * 2 * 3 and sorted(set(table["length_penalty"])) == [0.0, 1.0, 2.0]
    assert set(table["decoding"]) == {"beam2", "beam2+syntax"}
    for _, group in table.groupby(["model", "decoding"]):
        chosen = group[group["chosen"]]
        assert len(chosen) == 1
        best = group["bleu"].max()
        assert chosen["bleu"].iloc[0] == best
        assert chosen["length_penalty"].iloc[0] == group.loc[group["bleu"] == best, "length_penalty"].min()
    # each row is the BLEU of that decoding on those rows
    row = table[(table["model"] == "attention") & (table["decoding"] == "beam2")
                & (table["length_penalty"] == 2.0)].iloc[0]
    d = decode_split(loaded["attention"], rows, beam_size=2, max_len=12, length_penalty=2.0)
    assert row["bleu"] == pytest.approx(corpus_bleu_score(d.hypotheses, [r["code_tokens"] for r in rows]))
    assert chosen_length_penalties(table).keys() == {(m, d) for m in two for d in ("beam2", "beam2+syntax")}
    with pytest.raises(ValueError, match="only matters for beam search"):
        tune_length_penalty(two, rows, [1.0], beam_size=1)
    with pytest.raises(ValueError, match="length_penalty must be a number"):
        tune_length_penalty(two, rows, [-1.0], beam_size=2)


def test_tune_length_penalty_breaks_ties_towards_the_smaller_penalty(loaded, rows, monkeypatch):
    monkeypatch.setattr(lp, "corpus_bleu_score", lambda hyps, refs: 5.0)  # every candidate scores the same
    table = tune_length_penalty({"rnn": loaded["rnn"]}, rows[:2], [3.0, 0.5], beam_size=2, max_len=5,
                                log=lambda s: None)
    assert chosen_length_penalties(table) == {("rnn", "beam2"): 0.5}


def test_choose_length_penalty_number_candidates_and_tuned(loaded, rows, tmp_path):
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    (data / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    two = {name: loaded[name] for name in ("rnn", "attention")}
    quiet = {"max_len": 12, "log": lambda s: None}
    assert choose_length_penalty(1.5, two, data, plots, beam_size=2, **quiet) == (1.5, None)
    with pytest.raises(FileNotFoundError, match="03_bleu"):
        choose_length_penalty("tuned", two, data, plots, beam_size=2)
    penalties, table = choose_length_penalty([0.0, 2.0], two, data, plots, beam_size=2, tune_examples=3, **quiet)
    assert (table["n"] == 3).all() and (plots / TUNING_CSV).is_file()
    assert penalties == chosen_length_penalties(table) and set(penalties.values()) <= {0.0, 2.0}
    read, _ = choose_length_penalty("tuned", two, data, plots, beam_size=2)
    assert read == penalties  # what 04 and 05 use is what 03 chose
    d = decode_split(two["rnn"], rows, beam_size=2, max_len=12, length_penalty=read)
    assert d.length_penalty == read[("rnn", "beam2")]
    # greedy decoding has no length penalty to choose
    assert choose_length_penalty("tuned", two, tmp_path / "none", tmp_path / "none", beam_size=1) == (1.0, None)
    assert decode_split(two["rnn"], rows, beam_size=1, max_len=12, length_penalty=read).length_penalty is None
    with pytest.raises(ValueError, match='a list of candidates or "tuned"'):
        choose_length_penalty("best", two, data, plots, beam_size=2)
    with pytest.raises(ValueError, match="length_penalty must be a number"):
        choose_length_penalty(-2, two, data, plots, beam_size=2)
