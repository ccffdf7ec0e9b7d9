"""Each failure class triggered by a constructed output, plus the table and example helpers."""
from __future__ import annotations

import pytest

from utils.data.tokenizer import DEDENT, INDENT, NEWLINE, tokenize_code
from utils.evaluation.error_analysis import (
    FAILURE_CLASSES,
    brackets_balanced,
    classify_output,
    failure_examples,
    failure_table,
    invented_identifiers,
    is_degenerate,
    repeated_ngrams,
    syntax_class,
)
from utils.metrics import is_valid_syntax

REF = tokenize_code("def scale(values, factor):\n    return [v * factor for v in values]\n")
DOC = ["Multiply", "each", "of", "the", "values", "by", "factor", "."]


def _without(tokens: list[str], drop: str) -> list[str]:
    """Remove the first occurrence of ``drop``."""
    out = list(tokens)
    out.remove(drop)
    return out


def test_correct_output_is_ok():
    assert classify_output(REF, REF, DOC) == ["ok"]
    assert classify_output(["<SOS>", *REF, "<EOS>"], REF, DOC) == ["ok"]


def test_unbalanced_brackets():
    hyp = _without(REF, "]")
    assert not brackets_balanced(hyp)
    assert classify_output(hyp, REF, DOC) == ["syntax: unbalanced brackets"]


def test_bad_indentation_from_python():
    hyp = _without(REF, INDENT)  # body at column 0 -> IndentationError
    assert classify_output(hyp, REF, DOC) == ["syntax: bad indentation"]


def test_bad_indentation_from_dedent_underflow():
    # "x = 1 <DEDENT> y = (" closes a block never opened; brackets are broken too, indentation wins.
    hyp = ["x", "=", "1", NEWLINE, DEDENT, "y", "=", "("]
    assert syntax_class(hyp) == "syntax: bad indentation"


def test_other_syntax_error():
    hyp = _without(REF, ":")  # "def scale(values, factor)" without the colon
    assert classify_output(hyp, REF, DOC) == ["syntax: other"]


def test_unk_in_output():
    hyp = [("<UNK>" if t == "factor" else t) for t in REF]
    classes = classify_output(hyp, REF, DOC)
    assert "<UNK> in output" in classes
    # it cannot count as valid syntax, so exactly one syntax class comes with it
    assert sum(c.startswith("syntax:") for c in classes) == 1


def test_unk_that_would_parse_as_comparison_is_still_a_syntax_failure():
    hyp = tokenize_code("def scale(values, factor):\n    return values < factor\n")
    hyp[hyp.index("<")] = "<UNK>"  # "values <UNK> factor" parses as "values < UNK > factor"
    assert classify_output(hyp, REF, DOC) == ["syntax: other", "<UNK> in output"]


def test_degenerate_repetition():
    loop = tokenize_code("def scale(values, factor):\n    return values.values.values.values.values\n")
    assert is_degenerate(loop)  # (".", "values") four times in a row
    assert "degenerate repetition" in classify_output(loop, REF, DOC)
    # 21 tokens, 11 of them "x", no run of repeats: caught by the dominant-token rule only
    dominant = ["x"] + [t for i in range(10) for t in (f"a{i}", "x")]
    assert len(dominant) == 21 and is_degenerate(dominant)


def test_repeated_ngrams_names_runs_by_smallest_rotation():
    assert repeated_ngrams([".", "x"] * 4) == {(".", "x")}
    assert repeated_ngrams(["x", "."] * 4) == {(".", "x")}
    assert repeated_ngrams(["a", "b", "c"] * 3) == set()  # only three repeats
    assert repeated_ngrams(["y"] * 8) == {("y",), ("y", "y")}  # period 1, hence also period 2


def test_repetition_shared_with_reference_is_excused():
    ref = tokenize_code("def zeros():\n    return (0, 0, 0, 0, 0)\n")
    assert is_degenerate(ref)
    assert not is_degenerate(ref, ref)
    assert classify_output(ref, ref, ["zeros"]) == ["ok"]
    # but repeating something else is still degenerate
    hyp = tokenize_code("def zeros():\n    return (1, 1, 1, 1, 1)\n")
    assert is_degenerate(hyp, ref)


def test_legitimate_nesting_is_not_degenerate():
    assert not is_degenerate(tokenize_code("y = f(g(h(i(x))))\n"))
    nested = "def f(a):\n if a:\n  for b in a:\n   while b:\n    if b:\n     b = 0\n"
    assert not is_degenerate(tokenize_code(nested) + [DEDENT] * 4 + ["x"])
    assert not is_degenerate(REF)
    assert not is_degenerate(["x", "x", "x"])  # three repeats are allowed


def test_too_short_and_too_long():
    short = tokenize_code("def scale(v):\n    pass\n")
    assert len(short) == 10 and len(REF) == 21  # 10 < 10.5
    assert "too short" in classify_output(short, REF, DOC)
    long = REF + REF + REF
    assert "too long" in classify_output(long, REF, DOC)
    # exactly 2x is not too long, exactly 0.5x is not too short
    assert "too long" not in classify_output(REF + REF, REF, DOC)
    assert "too short" not in classify_output(["a"] * 2, ["b"] * 4, [])


def test_invented_identifiers():
    hyp = tokenize_code("def scale(values, factor):\n    return [frobnicate(v) for v in values]\n")
    assert invented_identifiers(hyp, REF, DOC) == {"frobnicate"}
    assert classify_output(hyp, REF, DOC) == ["invented identifiers"]


def test_invented_identifiers_excuses_builtins_conventions_and_docstring_words():
    hyp = tokenize_code("def scale(self, values, factor, Each):\n    return len(values) * factor\n")
    # len is a builtin, self is conventional, "Each" is in the docstring up to case
    assert invented_identifiers(hyp, REF, DOC) == set()
    assert invented_identifiers(hyp, REF, []) == {"Each"}


def test_several_classes_at_once_in_display_order():
    classes = classify_output(["<UNK>"], REF, DOC)
    assert classes == ["syntax: other", "<UNK> in output", "too short"]
    assert classes == [c for c in FAILURE_CLASSES if c in classes]


def test_syntax_class_agrees_with_is_valid_syntax():
    outputs = [REF, _without(REF, "]"), _without(REF, INDENT), _without(REF, ":"), [], ["<UNK>"], REF[:-1]]
    for hyp in outputs:
        n_syntax = sum(c.startswith("syntax:") for c in classify_output(hyp, REF, DOC))
        assert n_syntax == (0 if is_valid_syntax(hyp) else 1)


def test_failure_table_shape_and_counts():
    refs, docs = [REF, REF, REF], [DOC, DOC, DOC]
    outputs = {
        "perfect": [REF, REF, REF],
        "broken": [_without(REF, "]"), ["<UNK>"], REF],
    }
    table = failure_table(outputs, refs, docs)
    assert table.shape == (len(FAILURE_CLASSES), 2)
    assert list(table.index) == list(FAILURE_CLASSES)
    assert list(table.columns) == ["perfect", "broken"]
    assert table.loc["ok", "perfect"] == 3
    assert table["perfect"].sum() == 3
    assert table.loc["ok", "broken"] == 1
    assert table.loc["syntax: unbalanced brackets", "broken"] == 1
    assert table.loc["too short", "broken"] == 1
    assert table["broken"].sum() == 5  # ["<UNK>"] falls into three classes


def test_failure_table_rejects_misaligned_outputs():
    with pytest.raises(ValueError, match="parallel"):
        failure_table({"m": [REF]}, [REF, REF], [DOC, DOC])


def test_failure_examples_first_k():
    hyps = [REF, ["<UNK>"], REF, ["<UNK>", "x"], ["<UNK>"]]
    refs, docs = [REF] * 5, [DOC] * 5
    assert failure_examples(hyps, refs, docs, "<UNK> in output") == [1, 3]
    assert failure_examples(hyps, refs, docs, "<UNK> in output", k=5) == [1, 3, 4]
    assert failure_examples(hyps, refs, docs, "too long") == []
    with pytest.raises(ValueError, match="Unknown failure class"):
        failure_examples(hyps, refs, docs, "nonsense")
