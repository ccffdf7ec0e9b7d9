"""Vocabulary: fixed specials, frequency threshold, deterministic order, JSON storage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.data.vocabulary import EOS, PAD, SOS, SPECIALS, UNK, Vocabulary

TOKENS = [["b", "a", "a", "c"], ["a", "b", "d"], ["b", "e"]]  # a:3 b:3 c:1 d:1 e:1


def test_specials_first_then_frequency_then_token() -> None:
    v = Vocabulary.build(TOKENS, min_freq=1)
    assert v.itos[:4] == SPECIALS == ["<PAD>", "<SOS>", "<EOS>", "<UNK>"]
    assert (PAD, SOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.itos[4:] == ["a", "b", "c", "d", "e"]


def test_min_freq_and_max_size() -> None:
    assert Vocabulary.build(TOKENS, min_freq=2).itos[4:] == ["a", "b"]
    assert len(Vocabulary.build(TOKENS, min_freq=1, max_size=5)) == 5
    with pytest.raises(ValueError, match="min_freq must be at least 1"):
        Vocabulary.build(TOKENS, min_freq=0)


def test_specials_in_data_are_not_duplicated() -> None:
    v = Vocabulary.build([["<UNK>", "<PAD>", "x"]], min_freq=1)
    assert v.itos == SPECIALS + ["x"]


def test_encode_and_decode() -> None:
    v = Vocabulary.build(TOKENS, min_freq=2)
    assert v.encode(["a", "zzz", "b"]) == [v.stoi["a"], UNK, v.stoi["b"]]
    ids = [SOS, v.stoi["a"], UNK, EOS, v.stoi["b"], PAD]
    assert v.decode(ids) == ["a", "<UNK>"]
    assert v.decode(ids, strip_special=False) == ["<SOS>", "a", "<UNK>", "<EOS>", "b", "<PAD>"]
    assert "a" in v and "c" not in v


def test_json_round_trip(tmp_path: Path) -> None:
    v = Vocabulary.build(TOKENS, min_freq=1)
    path = tmp_path / "sub" / "vocab.json"
    v.save(path)
    assert json.loads(path.read_text())["itos"] == v.itos  # plain JSON, not a pickle
    assert Vocabulary.load(path) == v
    assert Vocabulary.from_dict(v.to_dict()) == v
    assert Vocabulary.load(path) != Vocabulary.build(TOKENS, min_freq=2)


@pytest.mark.parametrize("content", ["not json {", "[1, 2]", '{"format": "seq2seq-vocabulary", "itos": ["a", "b"]}',
                                     '{"format": "seq2seq-vocabulary", "itos": ["<SOS>", "<PAD>", "<EOS>", "<UNK>"]}'])
def test_load_rejects_files_that_are_not_vocabularies(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad.json is not a valid vocabulary JSON"):
        Vocabulary.load(path)


def test_load_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="01_preprocess"):
        Vocabulary.load(tmp_path / "nope.json")
