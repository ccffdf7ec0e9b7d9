"""Tokenizers for docstrings (words) and code (Python's own tokenizer), and the code detokenizer."""
from __future__ import annotations

import inspect
import io
import keyword
import re
import token
import tokenize

# Angle brackets so these never collide with identifiers.
NEWLINE = "<NEWLINE>"
INDENT = "<INDENT>"
DEDENT = "<DEDENT>"
# The four symbols every vocabulary holds at fixed ids (utils.data.vocabulary re-exports them).
PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<PAD>", "<SOS>", "<EOS>", "<UNK>"]

# Decoder specials that carry no source text; <UNK> is deliberately not here (see detokenize).
_DROPPED_SPECIALS = frozenset({"<PAD>", "<SOS>", "<EOS>"})

# \w (not [A-Za-z_]) so non-ASCII words stay whole; identifiers stay whole so the copy mechanism can copy them.
_DOC_TOKEN = re.compile(r"[^\W\d]\w*|\d+(?:\.\d+)?|\S")

_SKIPPED_CODE_TOKENS = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER})
# Python 3.12+ splits f-strings (3.14: t-strings) into START/MIDDLE/END pieces; we keep them as one token.
_STRING_STARTS = frozenset(n for n in ("FSTRING_START", "TSTRING_START") if hasattr(token, n))
_STRING_ENDS = frozenset(n for n in ("FSTRING_END", "TSTRING_END") if hasattr(token, n))

_OPERATORS = frozenset(token.EXACT_TOKEN_TYPES)
# Hard keywords that are not values; soft keywords (match, type, _) are usually plain names.
_KEYWORDS = frozenset(keyword.kwlist) - {"True", "False", "None"}
_OPENERS = frozenset("([{")
_CLOSERS = frozenset(")]}")
_DECIMAL_INT = re.compile(r"\d[\d_]*\Z")


def tokenize_docstring(text: str) -> list[str]:
    """Split natural text into words, numbers and single punctuation marks, keeping case."""
    return _DOC_TOKEN.findall(text)


def tokenize_code(source: str) -> list[str]:
    """Tokenize Python source with ``tokenize``; comments dropped, layout as NEWLINE/INDENT/DEDENT.

    Trailing DEDENTs are dropped (they carry no information); raises ValueError if untokenizable.
    """
    lines = io.StringIO(source).readlines()  # split exactly as tokenize reads it (str.splitlines also splits on \f)
    out: list[str] = []
    fstring_depth, fstring_start = 0, (0, 0)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            name = token.tok_name[tok.type]
            if fstring_depth or name in _STRING_STARTS:
                # Re-assemble a 3.12+ f-string from the source text between its START and END.
                if name in _STRING_STARTS:
                    fstring_depth += 1
                    if fstring_depth == 1:
                        fstring_start = tok.start
                elif name in _STRING_ENDS:
                    fstring_depth -= 1
                    if fstring_depth == 0:
                        out.append(_source_between(lines, fstring_start, tok.end))
                continue
            if tok.type in _SKIPPED_CODE_TOKENS:
                continue
            if tok.type == tokenize.ERRORTOKEN:
                raise ValueError(f"unexpected character {tok.string!r} at line {tok.start[0]}")
            if tok.type == tokenize.NEWLINE:
                out.append(NEWLINE)
            elif tok.type == tokenize.INDENT:
                out.append(INDENT)
            elif tok.type == tokenize.DEDENT:
                out.append(DEDENT)
            else:
                out.append(tok.string)
    except (tokenize.TokenError, SyntaxError, ValueError) as e:
        raise ValueError(f"Cannot tokenize this Python source ({e}); pass syntactically valid code.") from None
    while out and out[-1] == DEDENT:
        out.pop()
    return out


def _source_between(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """Source text from (row, col) ``start`` to ``end`` as reported by ``tokenize`` (1-based rows)."""
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0:r1 - 1]) + lines[r1 - 1][:c1]


def _is_word(tok: str) -> bool:
    """Names, keywords, numbers, strings and odd tokens: two of these in a row need a space."""
    return tok not in _OPERATORS


def _merges(prev: str, cur: str) -> bool:
    """True if writing ``prev`` and ``cur`` without a space would re-tokenize differently."""
    if _is_word(prev) and _is_word(cur):
        return True
    if _DECIMAL_INT.match(prev) and cur.startswith("."):
        return True  # "1.real" would read as the float "1."
    if prev in _OPERATORS and cur in _OPERATORS:
        joined = prev + cur
        return any(len(op) > len(prev) and joined.startswith(op) for op in _OPERATORS if op.startswith(prev))
    return False


def _needs_space(prev: str, cur: str, brackets: list[str], prev_is_unary: bool) -> bool:
    """Cosmetic spacing rule, overridden by ``_merges`` wherever correctness is at stake."""
    if _merges(prev, cur):
        return True
    if cur in _CLOSERS or cur in (",", ";", ":") or prev in _OPENERS:
        return False
    if prev == ":":
        return not (brackets and brackets[-1] == "[")  # slices stay tight: a[1:2]
    if prev in (",", ";"):
        return True
    if cur == "." or prev == ".":
        return prev in _KEYWORDS or cur in _KEYWORDS  # "from . import x"
    if cur in ("(", "["):
        return prev in _KEYWORDS or (prev in _OPERATORS and prev not in _CLOSERS)
    if prev == "=" or cur == "=":
        return not (brackets and brackets[-1] == "(")  # keyword arguments stay tight: f(a=1)
    if prev_is_unary and prev in ("-", "+", "~", "*", "**", "@"):
        return False  # -x, f(*args), @decorator
    return True


def detokenize(tokens: list[str]) -> str:
    """Turn code tokens back into runnable source (4 spaces per INDENT); never raises.

    Tolerates model garbage: <PAD>/<SOS>/<EOS> are dropped, <UNK> stays as text so such output fails
    to parse honestly, unbalanced DEDENTs are ignored.
    """
    lines: list[str] = []
    line: list[str] = []
    depth = line_depth = 0
    brackets: list[str] = []
    prev: str | None = None
    prev_is_unary = False  # prev stands where an operand was expected, so an operator there is unary
    for tok in tokens:
        tok = str(tok)
        if tok in _DROPPED_SPECIALS:
            continue
        if tok in (NEWLINE, INDENT, DEDENT):
            if tok == NEWLINE and line:
                lines.append("    " * line_depth + "".join(line))
                line, brackets, prev = [], [], None
            elif tok == INDENT:
                depth += 1
            elif tok == DEDENT:
                depth = max(0, depth - 1)
            continue
        if prev is None:
            line_depth = depth  # a stray DEDENT later on this line must not move it
        elif _needs_space(prev, tok, brackets, prev_is_unary):
            line.append(" ")
        prev_is_unary = prev is None or prev in _KEYWORDS or (prev in _OPERATORS and prev not in _CLOSERS)
        line.append(tok)
        prev = tok
        if tok in _OPENERS:
            brackets.append(tok)
        elif tok in _CLOSERS and brackets:
            brackets.pop()
    if line:
        lines.append("    " * line_depth + "".join(line))
    return "\n".join(lines) + "\n" if lines else ""


def docstring_summary(docstring: str) -> str:
    """First paragraph of a docstring (up to the first blank line), whitespace collapsed: the part
    the corpus keeps and the inference API reads."""
    paragraph = re.split(r"\n\s*\n", inspect.cleandoc(docstring).strip(), maxsplit=1)[0]
    return " ".join(paragraph.split())
