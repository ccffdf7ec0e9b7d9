"""The manifest's parts: what each filter removed, <UNK> rates, symbols per pair."""
from __future__ import annotations

from utils.data.manifest import filter_table, oov_rate, piece_summary, sequence_limits
from utils.data.vocabulary import SPECIALS, Vocabulary


def test_filter_table_counts_down_from_what_was_seen() -> None:
    table = filter_table({"functions_seen": 10, "dropped_short": 3, "dropped_duplicate": 2, "unrelated": 99})
    assert [(r["step"], r["dropped"], r["remaining"]) for r in table] == [
        ("functions_seen", 0, 10), ("dropped_short", 3, 7), ("dropped_duplicate", 2, 5)]


def test_unk_rate_and_symbols_per_pair() -> None:
    vocab = Vocabulary(SPECIALS + ["a", "b"])
    assert oov_rate([["a", "b", "c", "d"]], vocab) == 0.5 and oov_rate([], vocab) == 0.0
    rows = {"train": [{"docstring_tokens": ["a"], "code_tokens": ["a", "b", "c"]}], "valid": []}
    assert piece_summary(rows, vocab, vocab) == {
        "train": {"mean_docstring": 1.0, "mean_code": 3.0, "max_code": 3},
        "valid": {"mean_docstring": 0.0, "mean_code": 0.0, "max_code": 0}}
    assert sequence_limits("bpe", 50, 80) == {"src": 100, "trg": 160}
    assert sequence_limits("word", 50, 80) == {"src": 50, "trg": 80}
