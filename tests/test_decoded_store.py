"""Decoded outputs kept between notebooks (utils/evaluation/decoded_store.py)."""
from __future__ import annotations

import numpy as np
import pytest

import utils.evaluation.decoded_store as store_module
from utils.evaluation.decoded_store import decode_models, decode_stored, load_decoded, store_key
from utils.evaluation.results import decode_split


def _same(a, b) -> None:
    assert (a.model, a.decoding, a.beam_size, a.length_penalty, a.syntax_aware) == \
        (b.model, b.decoding, b.beam_size, b.length_penalty, b.syntax_aware)
    assert a.hypotheses == b.hypotheses and a.src_tokens == b.src_tokens and a.src_seen == b.src_seen
    assert a.scores == pytest.approx(b.scores)
    assert len(a.attention) == len(b.attention)
    for x, y in zip(a.attention, b.attention):
        assert (x is None and y is None) or np.array_equal(x, y)


def _no_decoding(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded again although the outputs are stored")
    monkeypatch.setattr(store_module, "decode_split", refuse)


def test_a_stored_decoding_is_read_back_whole_without_decoding(loaded, rows, tmp_path, monkeypatch) -> None:
    first = decode_stored(loaded["attention"], rows, tmp_path, beam_size=2, max_len=12, length_penalty=2.0)
    _same(first, decode_split(loaded["attention"], rows, beam_size=2, max_len=12, length_penalty=2.0))
    assert any(a is not None for a in first.attention) and list(tmp_path.glob("*.npz"))
    _no_decoding(monkeypatch)
    _same(decode_stored(loaded["attention"], rows, tmp_path, beam_size=2, max_len=12, length_penalty=2.0), first)
    with pytest.raises(AssertionError, match="decoded again"):  # another setting is another entry
        decode_stored(loaded["attention"], rows, tmp_path, beam_size=2, max_len=12, length_penalty=3.0)
    with pytest.raises(AssertionError, match="decoded again"):  # so are other rows
        decode_stored(loaded["attention"], rows[1:], tmp_path, beam_size=2, max_len=12, length_penalty=2.0)


def test_the_key_follows_the_checkpoint_bytes_rows_and_settings(loaded, rows) -> None:
    key = store_key(loaded["rnn"], rows, {"beam_size": 2})
    assert key == store_key(loaded["rnn"], rows, {"beam_size": 2}) and key.startswith("rnn-")
    assert key != store_key(loaded["rnn"], rows, {"beam_size": 3})
    assert key != store_key(loaded["rnn"], rows[:-1], {"beam_size": 2})
    assert key != store_key(loaded["attention"], rows, {"beam_size": 2})


def test_a_damaged_entry_is_decoded_again_and_nothing_is_kept_without_a_store(loaded, rows, tmp_path,
                                                                              monkeypatch) -> None:
    d = decode_stored(loaded["rnn"], rows, tmp_path, beam_size=1, max_len=12)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text('{"model": ')
    assert load_decoded(tmp_path, entry.stem, len(rows)) is None
    _same(decode_stored(loaded["rnn"], rows, tmp_path, beam_size=1, max_len=12), d)
    assert load_decoded(tmp_path, entry.stem, len(rows)) is not None  # rewritten
    assert load_decoded(tmp_path, entry.stem, len(rows) + 1) is None  # another number of rows

    def refuse(*args, **kwargs):
        raise AssertionError("kept although no store was named")
    monkeypatch.setattr(store_module, "save_decoded", refuse)
    decode_stored(loaded["rnn"], rows, "", beam_size=1, max_len=12)
    decode_models({"rnn": loaded["rnn"]}, rows, beam_size=2, max_len=12, log=lambda _: None)  # store None


def test_what_decode_models_keeps_the_next_notebook_reads(loaded, rows, tmp_path, monkeypatch) -> None:
    """03 decodes every model with greedy and beam search; 04 and 05 ask for the beams alone."""
    penalties = {("attention", "beam2"): 2.0, ("attention", "greedy"): 1.0}
    out = decode_models({"attention": loaded["attention"]}, rows, beam_size=2, max_len=12,
                        length_penalty=penalties, store=tmp_path, log=lambda _: None)
    _no_decoding(monkeypatch)
    again = decode_stored(loaded["attention"], rows, tmp_path, beam_size=2, max_len=12, length_penalty=penalties)
    _same(again, out[1])
