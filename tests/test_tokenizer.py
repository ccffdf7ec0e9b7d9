"""Docstring/code tokenizers and the detokenizer, including the round trip on real library code."""
from __future__ import annotations

import ast
import random
import sysconfig
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data.processed import build_python_corpus
from utils.data.tokenizer import DEDENT, INDENT, NEWLINE, detokenize, tokenize_code, tokenize_docstring

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# A fixed, varied slice of the standard library: decorators, async code, f-strings, nested classes.
ROUND_TRIP_ROOTS = [STDLIB / name for name in ("json", "email", "asyncio", "argparse.py", "dataclasses.py",
                                               "textwrap.py", "pathlib.py", "functools.py")]


def _same_ast(a: str, b: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
        except SyntaxError:
            return False


def test_docstring_tokens_keep_case_identifiers_and_numbers() -> None:
    assert tokenize_docstring("Return MyClass.snake_case for 3.5 items, héllo!") == [
        "Return", "MyClass", ".", "snake_case", "for", "3.5", "items", ",", "héllo", "!"]


@given(st.text())
def test_docstring_tokenizer_never_raises_and_loses_no_visible_character(text: str) -> None:
    assert "".join(tokenize_docstring(text)) == "".join(text.split())


def test_code_tokens_layout_strings_and_comments() -> None:
    src = 'def f(x):\n    # a comment\n    if x:\n        return r"a\\n" + f"{x!r}"\n    return None\n'
    assert tokenize_code(src) == [
        "def", "f", "(", "x", ")", ":", NEWLINE,
        INDENT, "if", "x", ":", NEWLINE,
        INDENT, "return", 'r"a\\n"', "+", 'f"{x!r}"', NEWLINE,
        DEDENT, "return", "None", NEWLINE]  # trailing DEDENTs dropped, comment gone


def test_tokenize_code_rejects_broken_source_with_one_sentence() -> None:
    with pytest.raises(ValueError, match="Cannot tokenize this Python source"):
        tokenize_code('def f(:\n    x = "unterminated\n')


def test_detokenize_handles_operators_that_would_merge() -> None:
    src = "def f(a, *args, b=-1, **kw):\n    return a ** -b, 1 .real, x[1:-1], a < -b, (yield)\n"
    out = detokenize(tokenize_code(src))
    assert _same_ast(out, src), out
    assert "f(a, *args, b=-1, **kw)" in out


def test_detokenize_tolerates_model_garbage() -> None:
    tokens = ["<SOS>", "def", "f", "(", ")", ":", NEWLINE, INDENT, "return", "<UNK>", DEDENT, DEDENT, DEDENT,
              "<EOS>", "<PAD>", "<PAD>"]
    assert detokenize(tokens) == "def f():\n    return <UNK>\n"
    assert detokenize([]) == ""


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["def", "f", "(", ")", ":", ",", "=", "*", "**", "-", ".", "1", "'s'", "<UNK>",
                                 "<PAD>", "<EOS>", NEWLINE, INDENT, DEDENT, "é", "\x00"])))
def test_detokenize_never_raises(tokens: list[str]) -> None:
    assert isinstance(detokenize(tokens), str)


def test_round_trip_preserves_the_ast_on_real_code() -> None:
    rows = build_python_corpus(roots=ROUND_TRIP_ROOTS)
    assert len(rows) >= 300
    sample = random.Random(0).sample(rows, 300)
    ok = sum(_same_ast(detokenize(r["code_tokens"]), r["code"]) for r in sample)
    rate = ok / len(sample)
    print(f"\nround-trip AST equality: {ok}/{len(sample)} = {rate:.2%}")
    assert rate >= 0.99


def test_docstring_summary_is_the_first_paragraph_collapsed() -> None:
    from utils.data.tokenizer import docstring_summary

    text = """Return the sum
        of two numbers.

        Args:
            a: the first.
    """
    assert docstring_summary(text) == "Return the sum of two numbers."
    assert docstring_summary("  One line.  ") == "One line."
