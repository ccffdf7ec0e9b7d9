"""The rules behind syntax-aware decoding's masks (``utils.decoding.syntax_constraints``): the token classes of
Python, the ``MaskKey`` a mask depends on, and ``SyntaxMaskRules._build``, which turns a key into the
allowed next tokens of a target vocabulary. The decoding-time state machine that yields the keys lives
in ``utils.decoding.syntax_constraints``.
"""
from __future__ import annotations

import keyword
from typing import NamedTuple

import torch
from torch import Tensor

from utils.data.tokenizer import DEDENT, INDENT, NEWLINE
from utils.data.vocabulary import EOS, PAD, SOS, UNK, Vocabulary

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


def _is_bytes(tok: str) -> bool:
    """Whether a string token is a bytes literal (its prefix holds a ``b``)."""
    return "b" in tok.split("'")[0].split('"')[0].lower()


class MaskKey(NamedTuple):
    """What the allowed next tokens depend on: the part of a ``SyntaxState`` (and of the tokens left)
    that the rules of ``SyntaxMaskRules._build`` read. Masks are cached by it."""

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

    def __init__(self, constraint: "SyntaxMaskRules"):
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


class SyntaxMaskRules:
    """The mask rules for one target vocabulary: ``_build`` maps a ``MaskKey`` to the allowed next
    token ids [V] and whether a new name may start."""

    def __init__(self, trg_vocab: Vocabulary):
        self.vocab = trg_vocab
        itos = trg_vocab.itos
        self.V = len(itos)
        self.cat = [_category(t) for t in itos]
        self.ids = {t: i for i, t in enumerate(itos)}
        # names that may be a def's name, an attribute or a parameter (not None/True/False/...)
        self._plain_names = torch.tensor([c == NAME and t not in ATOM_KEYWORDS and t != "..."
                                          for t, c in zip(itos, self.cat)], dtype=torch.bool)

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
