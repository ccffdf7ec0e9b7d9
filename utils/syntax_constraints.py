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
        self._cache: dict[tuple, tuple[Tensor, bool]] = {}

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

    def _key(self, s: SyntaxState, remaining: int) -> tuple:
        closing = remaining <= self._min_to_finish(s) + 1
        specific = s.prev not in (NAME, NUMBER, STRING)
        prev_bytes = s.prev == STRING and "b" in s.prev_tok.split("'")[0].split('"')[0].lower()
        return (s.stack[-1] if s.stack else None, bool(s.stack), s.prev, s.prev_tok if specific else "",
                s.line_start, s.await_indent, bool(s.blocks), s.line_compound, s.line_colon, s.lines > 0,
                s.steps == 0, closing, s.line_first in ("def", "async"), s.lambdas > 0, s.after_decorator,
                s.def_stage, s.line_first == "from", def_params(s) and s.param_part + 1, s.param_stars, s.line_tokens,
                s.ternaries > 0, s.assign_ok, s.kwarg_ok, prev_bytes,
                s.closed if s.prev_tok == DEDENT else "", s.bare_star)

    def _build(self, key: tuple) -> tuple[Tensor, bool]:
        (top, in_brackets, prev, prev_tok, line_start, await_indent, in_block, compound, colon,
         has_line, first, closing, def_line, in_lambda, after_decorator, def_stage, from_line, params, stars,
         line_tokens, ternary_open, assign_ok, kwarg_ok, prev_bytes, closed, bare_star) = key
        allowed = torch.zeros(self.V, dtype=torch.bool)
        ids = self.ids

        def allow(*toks: str) -> None:
            for t in toks:
                if t in ids:
                    allowed[ids[t]] = True

        needs_operand = prev in (OPERATOR, DOT, START) or (prev == KEYWORD and prev_tok in NEEDS_OPERAND)
        if first:
            allow("def", "async", "@")
            return allowed, False
        if await_indent:
            allow(INDENT)
            return allowed, False
        if after_decorator and line_start:
            allow("def", "async", "@")
            return allowed, False
        if prev_tok == "async":
            allow("def", *(("for", "with") if has_line else ()))
            return allowed, False
        if def_stage == 1:  # the name of a def or class
            for i, c in enumerate(self.cat):
                allowed[i] = c == NAME and self.vocab.itos[i] not in ATOM_KEYWORDS | {"..."}
            return allowed, True
        if def_stage == 2:
            allow("(")
            return allowed, False
        if line_start:
            follow = FOLLOWERS.get(closed, ())  # empty unless a block was just closed
            for i, (c, tok) in enumerate(zip(self.cat, self.vocab.itos)):
                continues = tok not in CONTINUATIONS or tok in follow
                if c not in (LINE, SPECIAL) and tok not in NOT_AT_LINE_START and continues:
                    allowed[i] = True
            if in_block and prev_tok != INDENT:
                allow(DEDENT)
            if has_line and prev_tok != INDENT:
                allowed[EOS] = True
            name_ok = True
            if closed == "try" and not closing:  # a try needs its except or finally
                allowed = torch.zeros_like(allowed)
                allow(*follow)
                name_ok = False
        else:
            allowed[:] = True
            for t in (INDENT, DEDENT):
                if t in ids:
                    allowed[ids[t]] = False
            allowed[EOS] = False
            nl_ok = (not in_brackets) and not needs_operand and not (prev == COLON and not compound)
            if compound and not colon:
                nl_ok = False  # `if x` must reach its ':' first
            if NEWLINE in ids:
                allowed[ids[NEWLINE]] = nl_ok
            for close in CLOSE:
                if close in ids:
                    allowed[ids[close]] = close == top and not (needs_operand and prev != OPEN_C)
            operand_before = prev in (NAME, NUMBER, STRING, CLOSE_C)
            name_ok = not operand_before
            for i, c in enumerate(self.cat):
                if operand_before and c in (NAME, NUMBER):
                    allowed[i] = False
                elif c == STRING and prev in (NAME, NUMBER, CLOSE_C):
                    allowed[i] = False
            if ":" in ids:  # ':' ends a compound header or a lambda, sits in a slice or dict, or annotates
                annotation = not in_brackets and line_tokens == 1 and prev == NAME
                allowed[ids[":"]] = ((in_lambda or top in ("]", "}") or annotation
                                      or (not in_brackets and compound and not colon)) and not needs_operand) \
                    or prev_tok in ("lambda", "except")
            if "->" in ids:  # only after a def's closing parenthesis
                allowed[ids["->"]] = def_line and not in_brackets and prev == CLOSE_C and not colon
            one_liner = prev == COLON and compound and not in_brackets  # `if x: return y`
            for i, tok in enumerate(self.vocab.itos):
                if tok in STATEMENT_ONLY:
                    allowed[i] = (tok == "import" and from_line) or (tok == "def" and prev_tok == "async") \
                        or (one_liner and tok not in ("def", "class", "elif", "except", "finally"))
                elif tok in NEEDS_LEFT and not operand_before:
                    allowed[i] = (tok == "in" and prev_tok == "not") or (tok == "," and prev_tok in ("*", "/")) \
                        or (tok == "." and from_line) or (tok == "," and prev == COLON and top == "]")
            if "else" in ids and not ternary_open:
                allowed[ids["else"]] = False
            if ":=" in ids:  # an assignment expression's target is one name right after '(' or ','
                allowed[ids[":="]] = kwarg_ok  # f(y := g(x)), (n := len(a)); never `f() :=`, `a.b :=`
            if "=" in ids and not params:  # assignment to a target, or a keyword argument
                allowed[ids["="]] = (assign_ok and not in_brackets) or kwarg_ok
            for aug in AUGMENTED:
                if aug in ids:
                    allowed[ids[aug]] = assign_ok and not in_brackets and operand_before
            if operand_before:  # after an operand only a keyword that continues the expression
                for i, tok in enumerate(self.vocab.itos):
                    if keyword.iskeyword(tok) and tok not in ATOM_KEYWORDS and (
                            tok not in NEEDS_LEFT | {"not", "from"} or (tok == "for" and not in_brackets)) \
                            and not (tok == "import" and from_line and not in_brackets):  # from a.b import c
                        allowed[i] = False
            if prev == STRING:  # implicit concatenation only of strings of one kind
                for i, (c, tok) in enumerate(zip(self.cat, self.vocab.itos)):
                    if c == STRING and ("b" in tok.split("'")[0].split('"')[0].lower()) != prev_bytes:
                        allowed[i] = False
            if prev_tok in LINE_ENDERS:
                allowed[:] = False
                if NEWLINE in ids:
                    allowed[ids[NEWLINE]] = True
                name_ok = False
            if prev == DOT:  # only an attribute name may follow '.'
                keep = torch.tensor([c == NAME and self.vocab.itos[i] not in ATOM_KEYWORDS | {"..."}
                                     for i, c in enumerate(self.cat)])
                allowed &= keep
                name_ok = True
            if params:  # a parameter list: names, '*', '**', defaults and annotations
                plain_names = [c == NAME and t not in ATOM_KEYWORDS and t != "..." for t, c in
                               zip(self.vocab.itos, self.cat)]
                if prev in (OPEN_C, COMMA) or prev_tok in ("*", "**"):
                    allowed = torch.tensor(plain_names)
                    name_ok = True
                    if prev in (OPEN_C, COMMA):
                        allow(")", *(("*",) if stars == 0 else ()), *(("**",) if stars < 2 else ()))
                        if prev == COMMA and stars == 0:
                            allow("/")
                        if stars == 2:  # nothing may follow **kwargs
                            allowed = torch.zeros_like(allowed)
                            allow(")")
                            name_ok = False
                        elif bare_star:  # `*,` must be followed by a keyword-only parameter
                            for t in (")", "**"):
                                if t in ids:
                                    allowed[ids[t]] = False
                    elif prev_tok == "*":
                        allow(",")
                elif prev_tok == "/":
                    allowed = torch.zeros_like(allowed)
                    allow(",", ")")
                    name_ok = False
                elif prev == NAME and params == 1:  # right after a parameter's name
                    allowed = torch.zeros_like(allowed)
                    allow(",", "=", ")", ":")
                    name_ok = False
                else:  # inside an annotation or a default value
                    if ":" in ids:
                        allowed[ids[":"]] = False
                    if "=" in ids and params == 3:
                        allowed[ids["="]] = False
                    if prev in (COLON, OPERATOR):
                        for t in (",", ")"):  # an annotation or default needs its value first
                            if t in ids:
                                allowed[ids[t]] = False
            if def_line and not in_brackets and prev_tok == ")" and not colon:  # def f(...) then ':' or '->'
                allowed = torch.zeros_like(allowed)
                allow(":", "->")
                name_ok = False
            if closing:
                # near max_len: finish the program rather than open anything new
                finish = torch.zeros_like(allowed)
                if top is not None and top in ids and not needs_operand:
                    finish[ids[top]] = True
                if NEWLINE in ids and nl_ok:
                    finish[ids[NEWLINE]] = True
                if ":" in ids and compound and not colon and not in_brackets and not needs_operand:
                    finish[ids[":"]] = True
                if finish.any():
                    allowed, name_ok = finish, False
        for t in (PAD, SOS, UNK):
            allowed[t] = False
        if line_start and closing and prev_tok == INDENT:  # a block must hold a statement
            allowed = torch.zeros_like(allowed)
            allow("pass")
            name_ok = False
        elif line_start and closing and has_line and not in_brackets:
            allowed = torch.zeros_like(allowed)
            allowed[EOS] = True
            name_ok = False
        if not allowed.any():  # never leave the decoder without a move
            allowed[EOS] = True
        return allowed, name_ok

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
