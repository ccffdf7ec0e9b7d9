"""Retrieve and edit's inputs: every row's nearest training function, with no leak in training."""
from __future__ import annotations

import json

import pytest

from utils.config import make_config, model_names
from utils.data.batch import SEPARATOR, encode_pairs, source_symbols
from utils.data.neighbours import NEIGHBOURS_FILE, attach_retrieved, file_key, find_neighbours, training_exclusions
from utils.data.processed import load_split, preprocess
from utils.data.vocabulary import PAD, SPECIALS, Vocabulary
from utils.models import build_model


def _row(doc: str, code: str, path: str) -> dict:
    return {"docstring_tokens": doc.split(), "code_tokens": code.split(), "repo": "r", "path": path}


TRAIN = [
    _row("open the file and read it", "def read ( ) : pass", "a.py"),
    _row("open the file and read it quickly", "def read_fast ( ) : pass", "a.py"),  # same file as row 0
    _row("read the file", "def read ( ) : pass", "b.py"),                            # same code as row 0
    _row("read a text file", "def read_text ( ) : pass", "c.py"),
    _row("close the socket", "def close ( ) : pass", "d.py"),
]


def test_a_training_row_never_retrieves_itself_its_file_or_its_code() -> None:
    assert training_exclusions(TRAIN)[0] == [0, 1, 2]
    found = find_neighbours(TRAIN, {"train": TRAIN})["train"]
    for i, (j, cosine) in enumerate(found):
        if j is None:
            continue
        assert j != i and file_key(TRAIN[j]) != file_key(TRAIN[i])
        assert TRAIN[j]["code_tokens"] != TRAIN[i]["code_tokens"] and cosine > 0
    assert found[0][0] == 3  # rows 1 (its file) and 2 (its code) are closer, and excluded


def test_held_out_rows_retrieve_from_the_whole_split_and_unmatched_ones_get_nothing() -> None:
    queries = [_row("open the file and read it", "x", "q.py"), _row("zzz qqq", "x", "q.py")]
    (best, cosine), nothing = find_neighbours(TRAIN, {"test": queries})["test"]
    assert best == 0 and cosine == pytest.approx(1.0)  # its own twin in training is allowed here
    assert nothing == (None, 0.0)  # no shared word: no neighbour, not row 0
    rows = attach_retrieved([dict(q) for q in queries], [(best, cosine), nothing], TRAIN)
    assert rows[0]["retrieved"]["code_tokens"] == TRAIN[0]["code_tokens"]
    assert rows[1]["retrieved"] == {"index": None, "cosine": 0.0, "code_tokens": []}
    with pytest.raises(ValueError, match="1 neighbours for 2 rows"):
        attach_retrieved(rows, [nothing], TRAIN)


def test_the_source_is_docstring_separator_retrieved_code() -> None:
    vocab = Vocabulary(SPECIALS + ["read", "file", "def", "x", "(", ")", ":"])
    row = {"docstring_tokens": ["read", "file"], "code_tokens": ["def", "x"],
           "retrieved": {"index": 0, "cosine": 0.5, "code_tokens": ["def", "read", "zzz"]}}
    plain, = encode_pairs([row], vocab, vocab, with_copy=True)
    ex, = encode_pairs([row], vocab, vocab, with_copy=True, retrieval_input="top1")
    assert ex.trg == plain.trg and ex.src[: len(plain.src)] == plain.src
    assert source_symbols(ex.src, vocab) == ["read", "file", SEPARATOR, "def", "read", "<UNK>"]
    # the separator copies onto <PAD>; an unknown word of the retrieved code is copyable
    assert ex.src_ext[2] == PAD and ex.src_oov == ["zzz"] and ex.src_ext[-1] == len(vocab)
    nothing = {**row, "retrieved": {"index": None, "cosine": 0.0, "code_tokens": []}}
    alone, = encode_pairs([nothing], vocab, vocab, retrieval_input="top1")
    assert source_symbols(alone.src, vocab) == ["read", "file", SEPARATOR]
    with pytest.raises(ValueError, match="neighbours.json"):
        encode_pairs([{"docstring_tokens": ["read"], "code_tokens": ["def"]}], vocab, vocab, retrieval_input="top1")


def test_retrieval_model_names_and_configs(toy_vocab: Vocabulary) -> None:
    assert model_names("copy, transformer+retrieval") == ["copy", "transformer+retrieval"]
    cfg = make_config("transformer+retrieval", src_vocab_size=len(toy_vocab), trg_vocab_size=len(toy_vocab),
                      max_src_len=100, max_trg_len=160, max_positions=162, retrieval_input="top1")
    assert (cfg.model, cfg.retrieval_input, cfg.name) == ("transformer", "top1", "transformer+retrieval")
    assert cfg.max_positions == 100 + 1 + 160 + 2 and cfg.source_symbols == len(toy_vocab) + 1
    assert build_model(cfg).src_embedding.num_embeddings == len(toy_vocab) + 1
    plain = make_config("copy", retrieval_input="top1")  # a plain name never reads retrieved code
    assert plain.retrieval_input == "none" and plain.name == "copy"
    with pytest.raises(ValueError, match="retrieval_input is 'none'"):
        make_config("copy+retrieval", retrieval_input="none")
    with pytest.raises(ValueError, match="Unknown or missing model"):
        model_names(["copy+retrieved"])


def test_preprocess_stores_the_neighbours_outside_the_corpus_hash(tmp_path, monkeypatch) -> None:
    """01 writes neighbours.json beside the splits (load_split attaches them), and the corpus hash
    is the same with or without it."""
    import utils.data.processed as data

    rows = [_row(f"return the {w} of the list number {i}", f"def f{i} ( ) : return {w}", f"m{i}.py")
            for i in range(60) for w in ("sum",)]
    monkeypatch.setattr(data, "_source_rows", lambda *a, **k: (rows, []))
    with_n = preprocess(out_dir=tmp_path / "a", split_sizes=(None, None, None), min_freq=1)
    without = preprocess(out_dir=tmp_path / "b", split_sizes=(None, None, None), min_freq=1,
                         retrieval_input="none")
    assert with_n["corpus_sha256"] == without["corpus_sha256"]
    assert (tmp_path / "a" / NEIGHBOURS_FILE).is_file() and not (tmp_path / "b" / NEIGHBOURS_FILE).exists()
    train = load_split(tmp_path / "a", "train")
    assert all(r["retrieved"]["index"] is not None for r in train)
    assert all(train[r["retrieved"]["index"]]["path"] != r["path"] for r in train)
    assert "retrieved" not in load_split(tmp_path / "b", "train")[0]
    # a neighbour file of another corpus: one message naming it and the way to rebuild it
    stored = json.loads((tmp_path / "a" / NEIGHBOURS_FILE).read_text())
    (tmp_path / "a" / NEIGHBOURS_FILE).write_text(json.dumps({**stored, "corpus_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="another corpus.*01_preprocess"):
        load_split(tmp_path / "a", "valid")
