"""Syntax-aware decoding: at each step, only tokens that keep the partial program on a path to
valid Python are allowed.

Cheap incremental checks over the token stream of ``utils.tokenizer.tokenize_code``:
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

import keyword
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from utils.tokenizer import DEDENT, INDENT, NEWLINE
from utils.vocabulary import EOS, PAD, SOS, UNK, Vocabulary

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = set(OPEN.values())
COMPOUND = {"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class", "async"}
ATOM_KEYWORDS = {"None", "True", "False"}
# tokens after which an operand must follow before a line or bracket may close
NEEDS_OPERAND = {
    "=", "+", "-", "*", "/", "//", "%", "**", "@", "|", "&", "^", "~", "<<", ">>", "<", ">", "<=", ">=",
    "==", "!=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=", "^=", "<<=", ">>=", "@=", "->",
    ":=", "and", "or", "not", "in", "is", "if", "elif", "while", "for", "with", "assert", "del", "lambda",
    "import", "from", "as", "await", "global", "nonlocal", "def", "class", "except", "async",
}
# tokens that cannot start a statement line
NOT_AT_LINE_START = CLOSE | {",", ".", ":", "=", "->", "!=", "==", "<", ">", "<=", ">=", "+=", "-=", "*=",
                             "/=", "//=", "%=", "**=", "|=", "&=", "^=", "<<=", ">>=", "@=", "/", "//", "%",
                             "|", "&", "^", "<<", ">>", "and", "or", "in", "is", "as", ";"}
# block continuations: only right after a block closed
CONTINUATIONS = {"elif", "else", "except", "finally"}
# the continuations each kind of block may be followed by ("try-else": the else of a try statement)
FOLLOWERS: dict[str, tuple[str, ...]] = {
    "if": ("elif", "else"), "elif": ("elif", "else"), "for": ("else",), "while": ("else",),
    "try": ("except", "finally"), "except": ("except", "else", "finally"), "try-else": ("finally",),
}
# keywords that only start a statement (mid-line they are always an error)
STATEMENT_ONLY = {"def", "class", "return", "pass", "break", "continue", "raise", "import", "global",
                  "nonlocal", "del", "assert", "while", "try", "except", "finally", "elif", "with", "async"}
# operators that need a left operand (binary, or keyword used as one mid-line)
NEEDS_LEFT = {"=", "==", "!=", "<", ">", "<=", ">=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=",
              "^=", "<<=", ">>=", "@=", "/", "//", "%", "|", "&", "^", "<<", ">>", "and", "or", "in", "is",
              "if", "else", "for", "as", ",", ".", ":=", "->"}
AUGMENTED = {"+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=", "^=", "<<=", ">>=", "@="}
# after these only the end of the line may follow
LINE_ENDERS = {"pass", "break", "continue"}
# categories of the previous token
START, NAME, NUMBER, STRING, CLOSE_C, OPEN_C, DOT, OPERATOR, COLON, COMMA, KEYWORD, LINE, SPECIAL = range(13)


def _category(tok: str) -> int:
    if tok in (NEWLINE, INDENT, DEDENT):
        return LINE
    if tok in OPEN:
        return OPEN_C
    if tok in CLOSE:
        return CLOSE_C
    if tok == ".":
        return DOT
    if tok == ":":
        return COLON
    if tok == ",":
        return COMMA
    if tok in NEEDS_OPERAND:
        return OPERATOR
    if tok in ATOM_KEYWORDS or tok == "...":
        return NAME
    if keyword.iskeyword(tok):
        return KEYWORD
    if tok.isidentifier():
        return NAME
    if tok[:1].isdigit() or (tok[:1] == "." and tok[1:2].isdigit()):
        return NUMBER
    if tok[-1:] in ("'", '"'):
        return STRING
    return SPECIAL if tok in ("<UNK>", "<PAD>", "<SOS>", "<EOS>") else OPERATOR


def def_params(s: "SyntaxState") -> bool:
    """Directly inside the parameter list of a def."""
    return s.line_first in ("def", "async") and s.stack == (")",)


def _is_bytes(tok: str) -> bool:
    """Whether a string token is a bytes literal (its prefix holds a ``b``)."""
    return "b" in tok.split("'")[0].split('"')[0].lower()


class MaskKey(NamedTuple):
    """What the allowed next tokens depend on: the part of a ``SyntaxState`` (and of the tokens left)
    that the rules of ``PythonSyntaxConstraint._build`` read. Masks are cached by it."""

    top: str | None          # the closer of the innermost open bracket
    in_brackets: bool
    prev: int                # category of the previous token
    prev_tok: str            # the previous token, unless it was a name, number or string
    line_start: bool
    await_indent: bool
    in_block: bool
    compound: bool           # the line starts a compound statement
    colon: bool              # ... and has reached its ':'
    has_line: bool           # a line has been completed
    first: bool              # nothing written yet
    closing: bool            # so few tokens left that the program must be finished now
    def_line: bool
    in_lambda: bool
    after_decorator: bool
    def_stage: int
    from_line: bool
    params: int              # in a def's parameters: 1 name, 2 annotation, 3 default value; else 0/False
    stars: int
    line_tokens: int
    ternary_open: bool
    assign_ok: bool
    kwarg_ok: bool
    prev_bytes: bool         # the previous token is a bytes literal
    closed: str              # the block a DEDENT just closed
    bare_star: bool


class _Mask:
    """The mask ``_build`` works on: allowed token ids [V], and whether a new name may start."""

    def __init__(self, constraint: "PythonSyntaxConstraint"):
        self.ids = constraint.ids
        self.allowed = torch.zeros(constraint.V, dtype=torch.bool)
        self.name_ok = False

    def set(self, tok: str, value: bool) -> None:
        if tok in self.ids:
            self.allowed[self.ids[tok]] = value

    def allow(self, *toks: str) -> None:
        for t in toks:
            self.set(t, True)

    def forbid(self, *toks: str) -> None:
        for t in toks:
            self.set(t, False)

    def only(self, *toks: str) -> None:
        """Nothing but ``toks`` (and no new name)."""
        self.allowed = torch.zeros_like(self.allowed)
        self.allow(*toks)
        self.name_ok = False


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


class PythonSyntaxConstraint:
    """Allowed-token masks for a target vocabulary (extended copy ids count as names)."""

    def __init__(self, trg_vocab: Vocabulary):
        self.vocab = trg_vocab
        itos = trg_vocab.itos
        self.V = len(itos)
        self.cat = [_category(t) for t in itos]
        self.ids = {t: i for i, t in enumerate(itos)}
        # names that may be a def's name, an attribute or a parameter (not None/True/False/...)
        self._plain_names = torch.tensor([c == NAME and t not in ATOM_KEYWORDS and t != "..."
                                          for t, c in zip(itos, self.cat)], dtype=torch.bool)
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

    def _build(self, k: MaskKey) -> tuple[Tensor, bool]:
        """The allowed next tokens after a state with key ``k``, and whether a new name may start
        (what the copy model's extended ids follow). Later rules override earlier ones."""
        m = _Mask(self)
        if self._fixed_next(k, m):
            return m.allowed, m.name_ok
        if k.line_start:
            self._line_start(k, m)
        else:
            for rule in (self._line_and_brackets, self._operands, self._colon_and_arrow, self._statement_keywords,
                         self._assignments, self._keywords_after_operand, self._string_concatenation,
                         self._line_enders, self._after_dot, self._parameter_list, self._def_header_end,
                         self._closing_mid_line):
                rule(k, m)
        self._never_specials_and_finish(k, m)
        return m.allowed, m.name_ok

    # -- the rules of _build, in the order they apply --------------------------------------------
    @staticmethod
    def _needs_operand(k: MaskKey) -> bool:
        return k.prev in (OPERATOR, DOT, START) or (k.prev == KEYWORD and k.prev_tok in NEEDS_OPERAND)

    def _fixed_next(self, k: MaskKey, m: "_Mask") -> bool:
        """Places where only one kind of token can come: the program's start, an awaited INDENT, a
        decorated line, after ``async``, a def's name and its ``(``. True when one of them applies."""
        if k.first:
            m.only("def", "async", "@")
        elif k.await_indent:
            m.only(INDENT)
        elif k.after_decorator and k.line_start:
            m.only("def", "async", "@")
        elif k.prev_tok == "async":
            m.only("def", *(("for", "with") if k.has_line else ()))
        elif k.def_stage == 1:  # the name of a def or class
            m.allowed = self._plain_names.clone()
            m.name_ok = True
        elif k.def_stage == 2:
            m.only("(")
        else:
            return False
        return True

    def _line_start(self, k: MaskKey, m: "_Mask") -> None:
        """A new line: any token that may start a statement; a continuation (``else``, ...) only
        right after the block it continues; DEDENT inside a block; <EOS> once a line is complete."""
        follow = FOLLOWERS.get(k.closed, ())  # empty unless a block was just closed
        for i, (c, tok) in enumerate(zip(self.cat, self.vocab.itos)):
            continues = tok not in CONTINUATIONS or tok in follow
            if c not in (LINE, SPECIAL) and tok not in NOT_AT_LINE_START and continues:
                m.allowed[i] = True
        if k.in_block and k.prev_tok != INDENT:
            m.allow(DEDENT)
        if k.has_line and k.prev_tok != INDENT:
            m.allowed[EOS] = True
        m.name_ok = True
        if k.closed == "try" and not k.closing:  # a try needs its except or finally
            m.only(*follow)

    def _line_and_brackets(self, k: MaskKey, m: "_Mask") -> None:
        """Mid-line: no INDENT, DEDENT or <EOS>; NEWLINE only where the line is complete; only the
        innermost bracket may close, and not right after an operator."""
        m.allowed[:] = True
        m.forbid(INDENT, DEDENT)
        m.allowed[EOS] = False
        needs_operand = self._needs_operand(k)
        m.set(NEWLINE, self._newline_ok(k))
        for close in CLOSE:
            m.set(close, close == k.top and not (needs_operand and k.prev != OPEN_C))

    def _newline_ok(self, k: MaskKey) -> bool:
        """Outside brackets, after a complete expression, and after a compound header's ':' only."""
        if k.compound and not k.colon:
            return False  # `if x` must reach its ':' first
        return not k.in_brackets and not self._needs_operand(k) and not (k.prev == COLON and not k.compound)

    def _operands(self, k: MaskKey, m: "_Mask") -> None:
        """No two operands in a row (``x y``, ``f() 1``, ``x 'a'``)."""
        operand_before = k.prev in (NAME, NUMBER, STRING, CLOSE_C)
        m.name_ok = not operand_before
        for i, c in enumerate(self.cat):
            if operand_before and c in (NAME, NUMBER):
                m.allowed[i] = False
            elif c == STRING and k.prev in (NAME, NUMBER, CLOSE_C):
                m.allowed[i] = False

    def _colon_and_arrow(self, k: MaskKey, m: "_Mask") -> None:
        """':' ends a compound header or a lambda, sits in a slice or dict, or annotates a name;
        '->' only after a def's closing parenthesis."""
        annotation = not k.in_brackets and k.line_tokens == 1 and k.prev == NAME
        colon_ok = (k.in_lambda or k.top in ("]", "}") or annotation
                    or (not k.in_brackets and k.compound and not k.colon)) and not self._needs_operand(k)
        m.set(":", colon_ok or k.prev_tok in ("lambda", "except"))
        m.set("->", k.def_line and not k.in_brackets and k.prev == CLOSE_C and not k.colon)

    def _statement_keywords(self, k: MaskKey, m: "_Mask") -> None:
        """Statement keywords mid-line only in a one-line body (``if x: return y``), ``import`` after
        ``from``; binary operators only after an operand; ``else`` only to close a ternary."""
        operand_before = k.prev in (NAME, NUMBER, STRING, CLOSE_C)
        one_liner = k.prev == COLON and k.compound and not k.in_brackets  # `if x: return y`
        for i, tok in enumerate(self.vocab.itos):
            if tok in STATEMENT_ONLY:
                m.allowed[i] = (tok == "import" and k.from_line) or (tok == "def" and k.prev_tok == "async") \
                    or (one_liner and tok not in ("def", "class", "elif", "except", "finally"))
            elif tok in NEEDS_LEFT and not operand_before:
                m.allowed[i] = (tok == "in" and k.prev_tok == "not") or (tok == "," and k.prev_tok in ("*", "/")) \
                    or (tok == "." and k.from_line) or (tok == "," and k.prev == COLON and k.top == "]")
        if not k.ternary_open:
            m.forbid("else")

    def _assignments(self, k: MaskKey, m: "_Mask") -> None:
        """'=' after an assignment target or a keyword argument's name; ':=' after one name right
        after '(' or ',' (``f(y := g(x))``, never ``f() :=`` or ``a.b :=``); '+=' and the other
        augmented assignments after a target outside brackets."""
        operand_before = k.prev in (NAME, NUMBER, STRING, CLOSE_C)
        m.set(":=", k.kwarg_ok)
        if not k.params:  # in a parameter list '=' starts a default: the parameter rule decides
            m.set("=", (k.assign_ok and not k.in_brackets) or k.kwarg_ok)
        for aug in AUGMENTED:
            m.set(aug, k.assign_ok and not k.in_brackets and operand_before)

    def _keywords_after_operand(self, k: MaskKey, m: "_Mask") -> None:
        """After an operand only a keyword that continues the expression (``x if``, ``x for``, ``x and``)."""
        if k.prev not in (NAME, NUMBER, STRING, CLOSE_C):
            return
        for i, tok in enumerate(self.vocab.itos):
            if keyword.iskeyword(tok) and tok not in ATOM_KEYWORDS and (
                    tok not in NEEDS_LEFT | {"not", "from"} or (tok == "for" and not k.in_brackets)) \
                    and not (tok == "import" and k.from_line and not k.in_brackets):  # from a.b import c
                m.allowed[i] = False

    def _string_concatenation(self, k: MaskKey, m: "_Mask") -> None:
        """Implicit concatenation only of strings of one kind (bytes with bytes)."""
        if k.prev == STRING:
            for i, (c, tok) in enumerate(zip(self.cat, self.vocab.itos)):
                if c == STRING and _is_bytes(tok) != k.prev_bytes:
                    m.allowed[i] = False

    def _line_enders(self, k: MaskKey, m: "_Mask") -> None:
        """After ``pass``, ``break`` and ``continue`` only the end of the line."""
        if k.prev_tok in LINE_ENDERS:
            m.only(NEWLINE)

    def _after_dot(self, k: MaskKey, m: "_Mask") -> None:
        """Only an attribute name may follow '.'."""
        if k.prev == DOT:
            m.allowed &= self._plain_names
            m.name_ok = True

    def _parameter_list(self, k: MaskKey, m: "_Mask") -> None:
        """In a def's parameters: names, '*', '**' (last), '/', defaults and annotations."""
        if not k.params:
            return
        if k.prev in (OPEN_C, COMMA) or k.prev_tok in ("*", "**"):
            m.allowed = self._plain_names.clone()
            m.name_ok = True
            if k.prev in (OPEN_C, COMMA):
                m.allow(")", *(("*",) if k.stars == 0 else ()), *(("**",) if k.stars < 2 else ()))
                if k.prev == COMMA and k.stars == 0:
                    m.allow("/")
                if k.stars == 2:  # nothing may follow **kwargs
                    m.only(")")
                elif k.bare_star:  # `*,` must be followed by a keyword-only parameter
                    m.forbid(")", "**")
            elif k.prev_tok == "*":
                m.allow(",")
        elif k.prev_tok == "/":
            m.only(",", ")")
        elif k.prev == NAME and k.params == 1:  # right after a parameter's name
            m.only(",", "=", ")", ":")
        else:  # inside an annotation or a default value
            m.forbid(":")
            if k.params == 3:
                m.forbid("=")
            if k.prev in (COLON, OPERATOR):
                m.forbid(",", ")")  # an annotation or default needs its value first

    def _def_header_end(self, k: MaskKey, m: "_Mask") -> None:
        """``def f(...)`` goes on with ':' or '->'."""
        if k.def_line and not k.in_brackets and k.prev_tok == ")" and not k.colon:
            m.only(":", "->")

    def _closing_mid_line(self, k: MaskKey, m: "_Mask") -> None:
        """Near max_len: finish the program (close the bracket, the header, the line) rather than
        open anything new."""
        if not k.closing:
            return
        finish = torch.zeros_like(m.allowed)
        needs_operand = self._needs_operand(k)
        if k.top is not None and k.top in self.ids and not needs_operand:
            finish[self.ids[k.top]] = True
        if NEWLINE in self.ids and self._newline_ok(k):
            finish[self.ids[NEWLINE]] = True
        if ":" in self.ids and k.compound and not k.colon and not k.in_brackets and not needs_operand:
            finish[self.ids[":"]] = True
        if finish.any():
            m.allowed, m.name_ok = finish, False

    def _never_specials_and_finish(self, k: MaskKey, m: "_Mask") -> None:
        """Never <PAD>, <SOS>, <UNK>; near max_len a new line holds ``pass`` (in a new block) or ends
        the program; and never an empty mask."""
        for t in (PAD, SOS, UNK):
            m.allowed[t] = False
        if k.line_start and k.closing and k.prev_tok == INDENT:  # a block must hold a statement
            m.only("pass")
        elif k.line_start and k.closing and k.has_line and not k.in_brackets:
            m.allowed = torch.zeros_like(m.allowed)
            m.allowed[EOS] = True
            m.name_ok = False
        if not m.allowed.any():  # never leave the decoder without a move
            m.allowed[EOS] = True

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
