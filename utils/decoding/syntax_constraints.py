"""Syntax-aware decoding: at each step, only tokens that keep the partial program on a path to
valid Python are allowed.

Cheap incremental checks over the token stream of ``utils.data.tokenizer.tokenize_code``:
- brackets close in order (only the bracket matching the innermost open one may close);
- ``<NEWLINE>`` only outside brackets, never on an empty line, never after an operator that still
  needs its right operand, and after a ``:`` only on a line that starts a compound statement;
- ``<INDENT>`` exactly when a line ended with ``:``, so a block is never left empty;
- ``<DEDENT>`` only at the start of a line inside a block;
- ``elif``/``else``/``except``/``finally`` only right after the block they continue (``else`` after
  ``if``/``elif``/``for``/``while``/``except``, ``except`` after ``try``/``except``, ...), and a
  ``try`` block only followed by ``except`` or ``finally``;
- ``<EOS>`` only at the start of a line once every bracket is closed and a line is complete;
- no two operands in a row (``x y``, ``f() x``), only a name after ``.``, no ``<UNK>`` (it is
  never valid Python), and the program starts with ``def``, ``async`` or a decorator;
- near ``max_len`` only moves that close the program are allowed.

The allowed set depends on a small state (innermost bracket, category of the previous token, line
position, ...), so masks are computed once per state and cached.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import Tensor

from utils.data.tokenizer import DEDENT, INDENT, NEWLINE
from utils.data.vocabulary import Vocabulary
from utils.decoding.syntax_rules import (
    ATOM_KEYWORDS,
    AUGMENTED,
    CLOSE,
    CLOSE_C,
    COLON,
    COMMA,
    COMPOUND,
    CONTINUATIONS,
    DOT,
    FOLLOWERS,
    KEYWORD,
    LINE,
    LINE_ENDERS,
    NAME,
    NEEDS_LEFT,
    NEEDS_OPERAND,
    NOT_AT_LINE_START,
    NUMBER,
    OPEN,
    OPEN_C,
    OPERATOR,
    SPECIAL,
    START,
    STATEMENT_ONLY,
    STRING,
    MaskKey,
    SyntaxMaskRules,
    _is_bytes,
)

# the token classes and mask rules are importable from here too
__all__ = [
    "ATOM_KEYWORDS", "AUGMENTED", "CLOSE", "CLOSE_C", "COLON", "COMMA", "COMPOUND", "CONTINUATIONS", "DOT",
    "FOLLOWERS", "KEYWORD", "LINE", "LINE_ENDERS", "NAME", "NEEDS_LEFT", "NEEDS_OPERAND", "NOT_AT_LINE_START",
    "NUMBER", "OPEN", "OPEN_C", "OPERATOR", "SPECIAL", "START", "STATEMENT_ONLY", "STRING", "MaskKey",
    "SyntaxMaskRules", "SyntaxState", "PythonSyntaxConstraint", "def_params", "syntax_constraint",
]


def def_params(s: "SyntaxState") -> bool:
    """Directly inside the parameter list of a def."""
    return s.line_first in ("def", "async") and s.stack == (")",)


@dataclass(frozen=True)
class SyntaxState:
    """What the constraint remembers of one partial program."""

    stack: tuple[str, ...] = ()
    prev: int = START
    prev_tok: str = ""
    line_start: bool = True
    await_indent: bool = False
    line_compound: bool = False
    line_colon: bool = False  # a ':' at bracket depth 0 on this line
    lines: int = 0
    steps: int = 0
    line_first: str = ""      # first token of the current line
    lambdas: int = 0          # lambdas on this line still waiting for their ':'
    after_decorator: bool = False
    def_stage: int = 0        # 1 after 'def'/'class' (a name must follow), 2 after that name ('(' must follow)
    param_part: int = 0       # in a def's parameters: 0 name, 1 annotation, 2 default value
    param_stars: int = 0      # 1 once '*' was used, 2 once '**' was used (it must come last)
    line_tokens: int = 0      # tokens on this line so far (capped at 2)
    ternaries: int = 0        # mid-line 'if's waiting for their 'else'
    assign_ok: bool = False   # the line so far is an assignment target (names, attributes, subscripts)
    kwarg_ok: bool = False    # inside a call, right after `(name` or `, name`: '=' may follow
    arg_start: bool = False   # inside a call, right after '(' or ','
    line_kind: str = ""       # the statement this line starts ("try-else" for the else of a try)
    header: str = ""          # the kind of block the awaited INDENT opens
    blocks: tuple[str, ...] = ()  # the kinds of the open blocks, innermost last (their number: the depth)
    closed: str = ""          # the kind of block the last DEDENT closed
    bare_star: bool = False   # a def's bare '*,' still waits for its keyword-only parameter


class PythonSyntaxConstraint(SyntaxMaskRules):
    """Allowed-token masks for a target vocabulary (extended copy ids count as names)."""

    def __init__(self, trg_vocab: Vocabulary) -> None:
        super().__init__(trg_vocab)
        self._cache: dict[MaskKey, tuple[Tensor, bool]] = {}

    # -- state transitions -------------------------------------------------------------
    def initial(self) -> SyntaxState:
        return SyntaxState()

    def advance(self, s: SyntaxState, token_id: int) -> SyntaxState:
        tok = self.vocab.itos[token_id] if token_id < self.V else "<copied name>"
        cat = self.cat[token_id] if token_id < self.V else NAME
        steps = s.steps + 1
        if tok == NEWLINE:
            return replace(s, prev=LINE, prev_tok=tok, line_start=True, await_indent=s.prev == COLON,
                           header=s.line_kind if s.prev == COLON else "",
                           line_compound=False, line_colon=False, lines=s.lines + 1, steps=steps,
                           after_decorator=s.line_first == "@", line_first="", lambdas=0, param_part=0,
                           param_stars=0, line_tokens=0)
        if tok == INDENT:
            return replace(s, prev=LINE, prev_tok=tok, line_start=True, await_indent=False,
                           steps=steps, blocks=s.blocks + (s.header,))
        if tok == DEDENT:
            return replace(s, prev=LINE, prev_tok=tok, line_start=True, steps=steps, blocks=s.blocks[:-1],
                           closed=s.blocks[-1] if s.blocks else "")
        stack = s.stack
        if tok in OPEN:
            stack = stack + (OPEN[tok],)
        elif tok in CLOSE and stack:
            stack = stack[:-1]
        compound = s.line_compound if not s.line_start else tok in COMPOUND
        ternaries = 0 if s.line_start else s.ternaries
        if tok == "if" and not s.line_start:
            ternaries += 1
        elif tok == "else" and not s.line_start and ternaries:
            ternaries -= 1
        target = (cat == NAME and tok not in ATOM_KEYWORDS) or tok in (".", ",", "*", ":") or tok in OPEN \
            or tok in CLOSE
        assign_ok = (target and (s.line_start or s.assign_ok)) if not s.stack or s.line_start else s.assign_ok
        if stack and not s.line_start:
            assign_ok = s.assign_ok if s.stack else assign_ok
        arg_start = bool(stack) and stack[-1] == ")" and (tok in ("(", ","))
        kwarg_ok = s.arg_start and cat == NAME and tok not in ATOM_KEYWORDS and bool(stack) and stack[-1] == ")"
        lambdas = s.lambdas + (tok == "lambda") - (tok == ":" and s.lambdas > 0)
        colon = s.line_colon or (tok == ":" and not s.stack and s.lambdas == 0)
        def_stage = 1 if tok in ("def", "class") else (2 if s.def_stage == 1 else 0)
        param_part = s.param_part
        if def_params(s):
            param_part = {",": 0, ":": 1, "=": 2}.get(tok, param_part)
        param_stars = {"*": max(s.param_stars, 1), "**": 2}.get(tok, s.param_stars) if def_params(s) else \
            (s.param_stars if s.line_first in ("def", "async") else 0)
        bare_star = def_params(s) and ((tok == "," and s.prev_tok == "*") or (s.bare_star and cat != NAME))
        return replace(s, stack=stack, prev=cat, prev_tok=tok, line_start=False, line_compound=compound,
                       line_colon=colon, steps=steps, line_first=tok if s.line_start else s.line_first,
                       lambdas=lambdas, after_decorator=False if s.line_start else s.after_decorator,
                       def_stage=def_stage, param_part=param_part,
                       param_stars=param_stars, line_tokens=min(s.line_tokens + 1, 2) if not s.line_start else 1,
                       ternaries=ternaries, assign_ok=self._assign_after(s, tok, assign_ok), kwarg_ok=kwarg_ok,
                       arg_start=arg_start, line_kind=self._line_kind(s, tok) if s.line_start else s.line_kind,
                       bare_star=bare_star)

    @staticmethod
    def _assign_after(s: SyntaxState, tok: str, target: bool) -> bool:
        """Whether the line so far may still be assigned to: after a top-level ``=`` a new target may
        begin (``a = b = c``); an augmented assignment (``+=``) ends the targets."""
        if tok == "=" and s.assign_ok and not s.stack:
            return True
        return target and tok != "=" and tok not in AUGMENTED

    @staticmethod
    def _line_kind(s: SyntaxState, tok: str) -> str:
        """The kind of statement a line starting with ``tok`` opens (an ``else`` after ``except`` is a try's)."""
        return "try-else" if tok == "else" and s.prev_tok == DEDENT and s.closed == "except" else tok

    # -- masks -----------------------------------------------------------------------------
    def _min_to_finish(self, s: SyntaxState) -> int:
        """Tokens still needed for a complete program (the cut at max_len needs no <EOS>)."""
        if s.await_indent:
            return 3  # INDENT pass NEWLINE
        need = len(s.stack) + (0 if s.line_start else 1)
        if s.line_compound and not s.line_colon and not s.line_start:
            need += 4  # ':' then NEWLINE INDENT pass NEWLINE (NEWLINE counted above)
        if s.prev_tok == INDENT:
            need += 2  # pass NEWLINE
        return need

    def _key(self, s: SyntaxState, remaining: int) -> MaskKey:
        prev_specific = s.prev not in (NAME, NUMBER, STRING)  # which name, number or string does not matter
        return MaskKey(
            top=s.stack[-1] if s.stack else None, in_brackets=bool(s.stack), prev=s.prev,
            prev_tok=s.prev_tok if prev_specific else "", line_start=s.line_start, await_indent=s.await_indent,
            in_block=bool(s.blocks), compound=s.line_compound, colon=s.line_colon, has_line=s.lines > 0,
            first=s.steps == 0, closing=remaining <= self._min_to_finish(s) + 1,
            def_line=s.line_first in ("def", "async"), in_lambda=s.lambdas > 0, after_decorator=s.after_decorator,
            def_stage=s.def_stage, from_line=s.line_first == "from",
            params=def_params(s) and s.param_part + 1, stars=s.param_stars, line_tokens=s.line_tokens,
            ternary_open=s.ternaries > 0, assign_ok=s.assign_ok, kwarg_ok=s.kwarg_ok,
            prev_bytes=s.prev == STRING and _is_bytes(s.prev_tok),
            closed=s.closed if s.prev_tok == DEDENT else "", bare_star=s.bare_star)

    def mask(self, states: list[SyntaxState], width: int, remaining: int) -> Tensor:
        """Boolean [len(states), width] mask of allowed next tokens (width >= V for copy models)."""
        rows = []
        for s in states:
            key = self._key(s, remaining)
            hit = self._cache.get(key)
            if hit is None:
                hit = self._cache[key] = self._build(key)
            row, name_ok = hit
            if width > self.V:
                row = torch.cat([row, torch.full((width - self.V,), name_ok, dtype=torch.bool)])
            rows.append(row)
        return torch.stack(rows)


@lru_cache(maxsize=8)
def _constraint_for(itos: tuple[str, ...]) -> PythonSyntaxConstraint:
    return PythonSyntaxConstraint(Vocabulary(list(itos)))


def syntax_constraint(trg_vocab: Vocabulary) -> PythonSyntaxConstraint:
    """A (cached) constraint for ``trg_vocab``: masks are shared between calls."""
    return _constraint_for(tuple(trg_vocab.itos))
