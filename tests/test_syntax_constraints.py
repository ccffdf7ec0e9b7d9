"""The syntax constraint: it accepts real programs, and what it lets a model write parses."""
from __future__ import annotations

import random

import pytest
import torch
from test_tokenizer import ROUND_TRIP_ROOTS

from utils.config import Seq2SeqConfig
from utils.data.batch import Example, make_batch
from utils.data.processed import build_python_corpus
from utils.data.tokenizer import DEDENT, INDENT, NEWLINE
from utils.data.vocabulary import EOS, PAD, SOS, UNK, Vocabulary
from utils.decoding.search import beam_search, greedy_decode
from utils.decoding.syntax_constraints import PythonSyntaxConstraint
from utils.metrics import is_valid_syntax
from utils.models import build_model


@pytest.fixture(scope="module")
def corpus() -> tuple[list[list[str]], Vocabulary]:
    rows = build_python_corpus(roots=ROUND_TRIP_ROOTS)
    programs = [r["code_tokens"] for r in random.Random(1).sample(rows, 300)]
    return programs, Vocabulary.build(programs, min_freq=1)


def _accepted(constraint: PythonSyntaxConstraint, vocab: Vocabulary, tokens: list[str]) -> bool:
    state = constraint.initial()
    for i in vocab.encode(tokens) + [EOS]:
        if not constraint.mask([state], len(vocab), remaining=1000)[0, i]:
            return False
        state = constraint.advance(state, i) if i != EOS else state
    return True


def test_real_programs_are_accepted(corpus) -> None:
    """The constraint must not forbid the programs the models are trained to write."""
    programs, vocab = corpus
    constraint = PythonSyntaxConstraint(vocab)
    ok = sum(_accepted(constraint, vocab, p) for p in programs)
    print(f"\nreal programs accepted by the constraint: {ok}/{len(programs)}")
    assert ok / len(programs) >= 0.95


def test_specials_and_structure(corpus) -> None:
    _, vocab = corpus
    c = PythonSyntaxConstraint(vocab)
    s = c.initial()
    first = c.mask([s], len(vocab), 100)[0]
    assert first[vocab.stoi["def"]] and not first[vocab.stoi["return"]] and not first[EOS]
    for tok in ["def", "f", "(", "x"]:
        s = c.advance(s, vocab.stoi[tok])
    m = c.mask([s], len(vocab), 100)[0]
    assert not m[EOS] and not m[vocab.stoi[NEWLINE]] and not m[vocab.stoi["]"]] and m[vocab.stoi[")"]]
    for tok in [")", ":", NEWLINE]:
        s = c.advance(s, vocab.stoi[tok])
    m = c.mask([s], len(vocab), 100)[0]
    assert m.nonzero().flatten().tolist() == [vocab.stoi[INDENT]]  # a block is never left empty
    s = c.advance(s, vocab.stoi[INDENT])
    m = c.mask([s], len(vocab), 100)[0]
    assert not m[vocab.stoi[DEDENT]] and not m[EOS] and m[vocab.stoi["return"]]
    assert not any(m[t] for t in (PAD, SOS, UNK))


def test_near_max_len_only_closing_moves(corpus) -> None:
    _, vocab = corpus
    c = PythonSyntaxConstraint(vocab)
    s = c.initial()
    for tok in ["def", "f", "(", ")", ":", NEWLINE, INDENT, "return", "(", "x"]:
        s = c.advance(s, vocab.stoi[tok])
    m = c.mask([s], len(vocab), remaining=3)[0]
    assert m.nonzero().flatten().tolist() == [vocab.stoi[")"]]


@pytest.mark.parametrize("name", ["attention", "lstm", "transformer"])
def test_constraint_guarantees_on_untrained_models(corpus, name: str) -> None:
    """Random weights are adversarial; still, under the constraint every output has balanced
    brackets, consistent blocks and no special tokens, and more outputs parse than without it.
    (Trained models' syntax validity with and without the constraint is in notebooks/03_bleu.)"""
    from utils.evaluation.error_analysis import brackets_balanced, indentation_consistent

    _, vocab = corpus
    torch.manual_seed(0)
    model = build_model(Seq2SeqConfig(model=name, src_vocab_size=20, trg_vocab_size=len(vocab), embed_dim=16,
                                      hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=32)).eval()
    rng = random.Random(0)
    batch = make_batch([Example([rng.randrange(4, 20) for _ in range(rng.randint(1, 9))], [5], i) for i in range(24)])
    constraint = PythonSyntaxConstraint(vocab)
    outputs = (greedy_decode(model, batch, 60, constraint).tokens
               + beam_search(model, batch, 3, 60, 1.0, constraint).tokens)
    for o in outputs:
        tokens = vocab.decode(o)
        assert not {PAD, SOS, UNK} & set(o) and tokens[0] in ("def", "@", "async")
        if len(o) < 60:  # ended by <EOS> (not cut at max_len): every bracket and block is closed
            assert brackets_balanced(tokens) and indentation_consistent(tokens), tokens
            assert tokens[-1] in (NEWLINE, DEDENT), tokens
    valid = sum(is_valid_syntax(vocab.decode(o)) for o in outputs)
    free = greedy_decode(model, batch, 60).tokens + beam_search(model, batch, 3, 60).tokens
    free_valid = sum(is_valid_syntax(vocab.decode(o)) for o in free)
    print(f"\n{name}: {valid}/{len(outputs)} parse with the constraint, {free_valid}/{len(free)} without")
    assert valid > free_valid


def _allowed_after(tokens: list[str]) -> set[str]:
    """The tokens the constraint allows after ``tokens`` (a vocabulary of just what is needed)."""
    words = ["def", "f", "(", "x", ")", ":", "return", "pass", "if", "elif", "else", "for", "in", "while",
             "try", "except", "finally", "with", "as", "y", NEWLINE, INDENT, DEDENT]
    vocab = Vocabulary(["<PAD>", "<SOS>", "<EOS>", "<UNK>", *words])
    c = PythonSyntaxConstraint(vocab)
    s = c.initial()
    for tok in tokens:
        assert c.mask([s], len(vocab), 100)[0, vocab.stoi[tok]], f"{tok!r} refused after {tokens}"
        s = c.advance(s, vocab.stoi[tok])
    return {vocab.itos[i] for i in c.mask([s], len(vocab), 100)[0].nonzero().flatten().tolist()}


CONTINUATION = {"elif", "else", "except", "finally"}


@pytest.mark.parametrize("header, followers", [
    (["def", "f", "(", "x", ")", ":"], set()),            # no `else` after a function body
    (["if", "x", ":"], {"elif", "else"}),
    (["elif", "x", ":"], {"elif", "else"}),
    (["for", "y", "in", "x", ":"], {"else"}),
    (["while", "x", ":"], {"else"}),
    (["with", "x", "as", "y", ":"], set()),
    (["else", ":"], set()),                                # the else of an if or a loop
])
def test_block_continuations_follow_only_their_block(header, followers) -> None:
    prefix = ["def", "f", "(", "x", ")", ":", NEWLINE, INDENT]
    if header[0] in ("elif", "else"):  # these need an `if` block before them
        prefix += ["if", "x", ":", NEWLINE, INDENT, "pass", NEWLINE, DEDENT]
    body = [NEWLINE, INDENT, "pass", NEWLINE, DEDENT]
    if header[0] == "def":
        prefix, body = [], [NEWLINE, INDENT, "return", "x", NEWLINE, DEDENT]
    got = _allowed_after(prefix + header + body)
    assert got & CONTINUATION == followers


def test_try_must_be_followed_by_except_or_finally() -> None:
    prefix = ["def", "f", "(", "x", ")", ":", NEWLINE, INDENT, "try", ":", NEWLINE, INDENT, "pass", NEWLINE, DEDENT]
    assert _allowed_after(prefix) == {"except", "finally"}
    handler = ["except", ":", NEWLINE, INDENT, "pass", NEWLINE, DEDENT]
    assert _allowed_after(prefix + handler) & CONTINUATION == {"except", "else", "finally"}
    try_else = ["else", ":", NEWLINE, INDENT, "pass", NEWLINE, DEDENT]
    assert _allowed_after(prefix + handler + try_else) & CONTINUATION == {"finally"}


def test_an_assignment_expression_needs_one_name_in_parentheses() -> None:
    vocab = Vocabulary(["<PAD>", "<SOS>", "<EOS>", "<UNK>", "def", "f", "(", ")", ":", "return", "y", ".", ":=",
                        NEWLINE, INDENT])
    c = PythonSyntaxConstraint(vocab)

    def walrus_after(tokens: list[str]) -> bool:
        s = c.initial()
        for tok in ["def", "f", "(", ")", ":", NEWLINE, INDENT, "return", *tokens]:
            s = c.advance(s, vocab.stoi[tok])
        return bool(c.mask([s], len(vocab), 100)[0, vocab.stoi[":="]])

    assert walrus_after(["f", "(", "y"]) and walrus_after(["(", "y"])   # f(y := ...), (y := ...)
    assert not walrus_after(["f", "(", ")"])                              # a call is no target
    assert not walrus_after(["f", "(", "y", ".", "y"])                    # nor an attribute
    assert not walrus_after(["y"])                                        # `return y := 1` does not parse
