"""The mask rules work from a ``MaskKey`` alone (no decoding state), and ``utils.decoding.syntax_constraints``
re-exports them unchanged."""
from __future__ import annotations

import utils.decoding.syntax_constraints as constraints
import utils.decoding.syntax_rules as rules
from utils.data.tokenizer import INDENT, NEWLINE
from utils.data.vocabulary import SPECIALS, Vocabulary
from utils.decoding.syntax_constraints import PythonSyntaxConstraint
from utils.decoding.syntax_rules import SyntaxMaskRules

WORDS = ["def", "async", "@", "f", "x", "(", ")", ":", ",", "=", "+", "return", "pass", NEWLINE, INDENT]


def test_syntax_constraints_reexports_the_rules_objects() -> None:
    for name in constraints.__all__:
        assert hasattr(constraints, name), name
        if hasattr(rules, name):
            assert getattr(constraints, name) is getattr(rules, name), name


def test_rules_alone_give_the_constraints_masks() -> None:
    """Along ``def f(x): return x + x``, the bare rules build from each state's key the mask the
    decoding-time constraint hands out."""
    vocab = Vocabulary(SPECIALS + WORDS)
    constraint, bare = PythonSyntaxConstraint(vocab), SyntaxMaskRules(vocab)
    state = constraint.initial()
    program = ["def", "f", "(", "x", ")", ":", NEWLINE, INDENT, "return", "x", "+", "x", NEWLINE]
    for tok in program:
        for remaining in (2, 80):
            allowed, name_ok = bare._build(constraint._key(state, remaining))
            row = constraint.mask([state], len(vocab) + 1, remaining)[0]  # one extended (copy) id
            assert row[: len(vocab)].tolist() == allowed.tolist() and bool(row[-1]) == name_ok
        assert constraint.mask([state], len(vocab), 80)[0, vocab.stoi[tok]], tok
        state = constraint.advance(state, vocab.stoi[tok])
    start, _ = bare._build(constraint._key(constraint.initial(), 80))
    assert {vocab.itos[i] for i in start.nonzero().flatten().tolist()} == {"def", "async", "@"}
