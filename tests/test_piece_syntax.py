"""Syntax-aware decoding over BPE pieces: every real function is accepted piece by piece, and
programs written under the constraint parse."""
from __future__ import annotations

import random

import pytest

from utils.data.processed import load_split, load_vocabs, preprocess
from utils.data.subwords import join_pieces
from utils.data.vocabulary import EOS
from utils.decoding.piece_syntax import PieceSyntaxConstraint, _complete_as, _string_state, piece_syntax_constraint
from utils.metrics import is_valid_syntax


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    preprocess(out_dir=out, max_files=60, split_sizes=(150, 20, 20), min_freq=1, vocabulary="bpe", bpe_size=500)
    return load_vocabs(out)[1], load_split(out, "train")


def test_every_reference_is_accepted_piece_by_piece(bpe) -> None:
    trg, rows = bpe
    c = piece_syntax_constraint(trg)
    assert c is piece_syntax_constraint(trg)  # cached
    for row in rows:
        pieces = trg.symbols(row["code_tokens"]) + ["<EOS>"]
        state = c.initial()
        for k, piece in enumerate(pieces):
            allowed = c.mask([state], len(trg), 400 - k)[0]
            assert allowed[trg.stoi[piece]], (row["func_name"], k, join_pieces(pieces[:k])[-6:], piece)
            state = c.advance(state, trg.stoi[piece])


def test_random_programs_under_the_constraint_parse(bpe) -> None:
    """The strongest test of a constraint: pick allowed pieces at random (a model that has learnt
    nothing) and the result must still be Python, up to the length limit."""
    trg, _ = bpe
    c = PieceSyntaxConstraint(trg)
    rng = random.Random(0)
    valid, n, max_len = 0, 40, 60
    for _ in range(n):
        state, out = c.initial(), []
        for k in range(max_len):
            allowed = c.mask([state], len(trg) + 3, max_len - k)[0]
            assert not allowed[len(trg):].any()  # extended copy ids: never (shared pieces need none)
            ids = allowed.nonzero().squeeze(1).tolist()
            others = [i for i in ids if i != EOS] or ids
            choice = EOS if EOS in ids and k > 8 and rng.random() < 0.3 else rng.choice(others)
            if choice == EOS:
                break
            out.append(trg.itos[choice])
            state = c.advance(state, choice)
        valid += is_valid_syntax(join_pieces(out))
    # measured 28 of 40 here (most failures are programs cut at max_len mid-statement); the word-level
    # constraint under the same random walk: 1 of 30 at 80 tokens
    assert valid >= 0.6 * n


def test_token_classes_of_partial_tokens() -> None:
    assert _complete_as("get_name") == "x" and _complete_as("def") == "def" and _complete_as("1e-5") == "0"
    assert _complete_as("'abc'") == "''" and _complete_as("b'x'") == "b''" and _complete_as("'abc") is None
    assert _string_state("'ab") == ("'", False, "open") and _string_state("rb'ab'") == ("'", True, "closed")
    assert _string_state("'a'b") is None and _string_state('"""a\nb') == ('"""', False, "open")
