"""Sort generated functions into failure classes, so a table says *how* each model fails.

Classes (an output can fall into several; "ok" only when none applies, which means no failure was
detected, not that the output is right: a valid half of the reference is "ok"; exact match measures right):

* ``syntax: ...`` — exactly one of these for every output that :func:`utils.metrics.is_valid_syntax`
  rejects: "bad indentation" if Python raises IndentationError/TabError or the tokens close more
  blocks (<DEDENT>) than they open; else "unbalanced brackets" if ``()[]{}`` do not nest; else "other"
  (this includes empty outputs and outputs that only parse by reading ``<UNK>`` as ``< UNK >``).
* "degenerate repetition" — some n-gram (n = 1..4) occurs at least 4 times back to back, ignoring
  n-grams made only of layout tokens and closing brackets (legitimately stacked, e.g. ``f(g(h(x)))``);
  or, in an output of 20+ tokens, one token makes up more than half of it. Repetition that the
  reference has too (``(0, 0, 0, 0, 0)``, about 0.1% of real functions) is excused, so a perfect
  output is always "ok".
* "<UNK> in output"; "too short" (< 0.5x reference length); "too long" (> 2x reference length).
* "invented identifiers" — a name in the output that is in neither the docstring (compared
  case-insensitively, so "Return the Path" excuses ``path``) nor the reference, and is not a keyword,
  a builtin, or one of the conventional names ``self``, ``cls``, ``args``, ``kwargs``. Attribute names
  (``x.append``) count too: the model produced them, whether or not they exist.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from utils.data.tokenizer import DEDENT, INDENT
from utils.metrics import (
    BUILTIN_NAMES,
    LAYOUT_TOKENS,
    UNK_TOKEN,
    is_identifier,
    is_valid_syntax,
    parse_error,
    strip_special,
)

SYNTAX_BRACKETS = "syntax: unbalanced brackets"
SYNTAX_INDENT = "syntax: bad indentation"
SYNTAX_OTHER = "syntax: other"
REPETITION = "degenerate repetition"
HAS_UNK = "<UNK> in output"
TOO_SHORT = "too short"
TOO_LONG = "too long"
INVENTED = "invented identifiers"
OK = "ok"

FAILURE_CLASSES: tuple[str, ...] = (
    SYNTAX_BRACKETS,
    SYNTAX_INDENT,
    SYNTAX_OTHER,
    REPETITION,
    HAS_UNK,
    TOO_SHORT,
    TOO_LONG,
    INVENTED,
    OK,
)

CONVENTIONAL_NAMES: frozenset[str] = frozenset({"self", "cls", "args", "kwargs"})
REPEAT_MAX_N = 4
REPEAT_MIN_TIMES = 4
DOMINANT_MIN_LEN = 20
DOMINANT_SHARE = 0.5
SHORT_RATIO = 0.5
LONG_RATIO = 2.0

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = set(_OPEN.values())
_TRIVIAL = LAYOUT_TOKENS | _CLOSE

Tokens = Sequence[str]


def brackets_balanced(tokens: Tokens) -> bool:
    """True if ``()[]{}`` tokens nest properly (string tokens are whole, so their contents are ignored)."""
    stack: list[str] = []
    for t in tokens:
        if t in _OPEN:
            stack.append(_OPEN[t])
        elif t in _CLOSE:
            if not stack or stack.pop() != t:
                return False
    return not stack


def indentation_consistent(tokens: Tokens) -> bool:
    """True if no prefix of the tokens has more <DEDENT> than <INDENT> tokens."""
    depth = 0
    for t in tokens:
        depth += (t == INDENT) - (t == DEDENT)
        if depth < 0:
            return False
    return True


def syntax_class(tokens: Tokens) -> str | None:
    """The one syntax failure class of an output, or None if it is valid Python."""
    toks = strip_special(tokens)
    if is_valid_syntax(toks):
        return None
    if isinstance(parse_error(toks), IndentationError) or not indentation_consistent(toks):
        return SYNTAX_INDENT
    if not brackets_balanced(toks):
        return SYNTAX_BRACKETS
    return SYNTAX_OTHER


def repeated_ngrams(tokens: Tokens) -> set[tuple[str, ...]]:
    """n-grams (n = 1..4) repeated at least 4 times back to back, each as its smallest rotation.

    N-grams made only of layout tokens and closing brackets are ignored (``f(g(h(x))))`` is fine).
    """
    toks = strip_special(tokens)
    found: set[tuple[str, ...]] = set()
    for n in range(1, REPEAT_MAX_N + 1):
        # toks[j] == toks[j + n] for (times - 1) * n positions in a row <=> an n-gram repeated `times` times
        need, run = (REPEAT_MIN_TIMES - 1) * n, 0
        for j in range(len(toks) - n):
            run = run + 1 if toks[j] == toks[j + n] else 0
            if run == need:  # later windows of the same run are rotations of this one
                start = j - need + 1
                gram = tuple(toks[start : start + n])
                if not all(t in _TRIVIAL for t in gram):
                    # smallest rotation, so the run is named the same whichever phase it starts in
                    found.add(min(gram[i:] + gram[:i] for i in range(n)))
    return found


def dominant_token(tokens: Tokens) -> str | None:
    """The token making up more than half of an output of 20+ tokens, if any."""
    toks = strip_special(tokens)
    if len(toks) < DOMINANT_MIN_LEN:
        return None
    tok, count = Counter(toks).most_common(1)[0]
    return tok if count > DOMINANT_SHARE * len(toks) else None


def is_degenerate(tokens: Tokens, reference: Tokens | None = None) -> bool:
    """True for runaway repetition (see the module docstring); repetition the reference shares is excused."""
    grams = repeated_ngrams(tokens)
    dominant = dominant_token(tokens)
    if reference is not None:
        grams -= repeated_ngrams(reference)
        if dominant is not None and dominant == dominant_token(reference):
            dominant = None
    return bool(grams) or dominant is not None


def invented_identifiers(hyp: Tokens, ref: Tokens, docstring_tokens: Tokens) -> set[str]:
    """Output names in neither docstring nor reference; keywords, builtins and self/cls/args/kwargs excused."""
    known = {t.lower() for t in docstring_tokens} | {t.lower() for t in ref}
    return {
        t
        for t in strip_special(hyp)
        if is_identifier(t) and t not in BUILTIN_NAMES and t not in CONVENTIONAL_NAMES and t.lower() not in known
    }


def classify_output(hyp_tokens: Tokens, ref_tokens: Tokens, docstring_tokens: Tokens) -> list[str]:
    """Every failure class that applies to one output, in :data:`FAILURE_CLASSES` order; ``["ok"]`` if none."""
    hyp, ref = strip_special(hyp_tokens), strip_special(ref_tokens)
    found: set[str] = set()
    syn = syntax_class(hyp)
    if syn is not None:
        found.add(syn)
    if is_degenerate(hyp, ref):
        found.add(REPETITION)
    if UNK_TOKEN in hyp:
        found.add(HAS_UNK)
    if len(hyp) < SHORT_RATIO * len(ref):
        found.add(TOO_SHORT)
    if len(hyp) > LONG_RATIO * len(ref):
        found.add(TOO_LONG)
    if invented_identifiers(hyp, ref, docstring_tokens):
        found.add(INVENTED)
    return [c for c in FAILURE_CLASSES if c in found] or [OK]


def _check_lengths(
    hyps: Sequence[Tokens], refs: Sequence[Tokens], docs: Sequence[Tokens], who: str = "outputs"
) -> None:
    if not (len(hyps) == len(refs) == len(docs)):
        raise ValueError(
            f"{who}, references and docstrings must be parallel; got {len(hyps)}, {len(refs)} and {len(docs)} items."
        )


def failure_table(
    outputs_by_model: Mapping[str, Sequence[Tokens]], references: Sequence[Tokens], docstrings_tokens: Sequence[Tokens]
) -> pd.DataFrame:
    """Counts of outputs per failure class (rows, display order) and model (columns); columns sum to more than n
    when outputs fail in several ways."""
    counts: dict[str, list[int]] = {}
    for model, hyps in outputs_by_model.items():
        _check_lengths(hyps, references, docstrings_tokens, who=f"outputs of {model!r}")
        c = Counter(cls for h, r, d in zip(hyps, references, docstrings_tokens) for cls in classify_output(h, r, d))
        counts[model] = [c[cls] for cls in FAILURE_CLASSES]
    return pd.DataFrame(counts, index=pd.Index(FAILURE_CLASSES, name="failure class"), columns=list(outputs_by_model))


def failure_examples(
    hyps: Sequence[Tokens], refs: Sequence[Tokens], docs: Sequence[Tokens], cls: str, k: int = 2
) -> list[int]:
    """Indices of the first ``k`` outputs that fall into failure class ``cls``."""
    if cls not in FAILURE_CLASSES:
        raise ValueError(f"Unknown failure class {cls!r}; choose one of {FAILURE_CLASSES}.")
    _check_lengths(hyps, refs, docs)
    found: list[int] = []
    for i, (h, r, d) in enumerate(zip(hyps, refs, docs)):
        if len(found) >= k:
            break
        if cls in classify_output(h, r, d):
            found.append(i)
    return found
