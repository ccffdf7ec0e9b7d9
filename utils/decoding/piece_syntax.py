"""Syntax-aware decoding over BPE pieces.

The token-level rules of ``utils.decoding.syntax_constraints`` decide which *tokens* may come next. With an
open vocabulary a token is written as several pieces, and the tokens themselves are unbounded (any
identifier, number or string). So the token rules run over a small vocabulary of representatives:
every keyword, operator and layout token as itself, and one stand-in each for a name, a number, a
string and a bytes string (the rules treat all members of those classes alike). A piece state is
the token-level state plus the token being spelled. A piece is allowed when it

- continues that token towards one the rules accept (a name goes on with word characters, an open
  string until its closing quote, an operator or keyword along its spelling), or
- completes it as an accepted token and starts the next one the rules accept at the new state
  (or is a layout token or ``<EOS>`` allowed there).

The constraint advances on completed tokens only. Masks are cached per (token-level key, what the
partial token can still become).
"""
from __future__ import annotations

import ast
import keyword
import re
import token as token_module
import tokenize
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from utils.data.subwords import CONTINUATION
from utils.data.tokenizer import DEDENT, INDENT, NEWLINE
from utils.data.vocabulary import EOS, SPECIALS, UNK, Vocabulary
from utils.decoding.syntax_constraints import ATOM_KEYWORDS, PythonSyntaxConstraint, SyntaxState

NAME_REP, NUMBER_REP, STRING_REP, BYTES_REP = "x", "0", "''", "b''"
LAYOUT = (NEWLINE, INDENT, DEDENT)
EXACT = tuple(sorted(set(token_module.EXACT_TOKEN_TYPES) | set(keyword.kwlist) | ATOM_KEYWORDS | {"..."}))
_STRING_PREFIX = re.compile(r"[rRbBuUfF]{1,2}")
_STRING_START = re.compile(r"([rRbBuUfF]{0,2})('''|\"\"\"|'|\")")
_NUMBER_PREFIX = re.compile(r"(\d|\.\d)[\w.+-]*\Z")
_NUMBER = re.compile(tokenize.Number + r"\Z")


@dataclass(frozen=True)
class PieceState:
    """The token-level state and the token being spelled (empty at a token boundary)."""

    tokens: SyntaxState
    partial: str = ""


def _string_state(s: str) -> tuple[str, bool, str] | None:
    """For a string literal's prefix ``s``: (quote, is bytes, "open" | "closed"), None if it is not one."""
    m = _STRING_START.match(s)
    if m is None:
        return None
    quote, body = m.group(2), s[m.end():]
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body.startswith(quote, i):
            return (quote, "b" in m.group(1).lower(), "closed") if i + len(quote) == len(body) else None
        if body[i] == "\n" and len(quote) == 1:
            return None
        i += 1
    return quote, "b" in m.group(1).lower(), "open"


def _complete_as(s: str) -> str | None:
    """The representative of ``s`` as a whole token, or None if ``s`` is not a valid token."""
    if s in EXACT:
        return s
    if s.isidentifier():
        return NAME_REP
    if _NUMBER.match(s):
        return NUMBER_REP
    state = _string_state(s)
    if state is not None and state[2] == "closed":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                node = ast.parse(s, mode="eval").body
            except (SyntaxError, ValueError):
                return None
        if isinstance(node, (ast.Constant, ast.JoinedStr)):
            return BYTES_REP if state[1] else STRING_REP
    return None


class PieceSyntaxConstraint:
    """Allowed-piece masks for a subword target vocabulary (same interface as the token one)."""

    def __init__(self, trg_vocab: Vocabulary):
        self.vocab = trg_vocab
        self.itos = trg_vocab.itos
        self.V = len(self.itos)
        reps = SPECIALS + list(LAYOUT) + list(EXACT) + [NAME_REP, NUMBER_REP, STRING_REP, BYTES_REP]
        self.tokens = PythonSyntaxConstraint(Vocabulary(list(dict.fromkeys(reps))))
        self.rep_id = self.tokens.ids
        starts = [(i, p) for i, p in enumerate(self.itos) if p not in SPECIALS and p not in LAYOUT
                  and not p.startswith(CONTINUATION)]
        conts = [(i, p[len(CONTINUATION):]) for i, p in enumerate(self.itos) if p.startswith(CONTINUATION)
                 and len(p) > len(CONTINUATION)]
        self.cont_ids = {text: i for i, text in conts}
        vec = lambda pairs, test: self._mask([i for i, t in pairs if test(t)])  # noqa: E731
        # what a token starting with each piece can become
        self.start_name = vec(starts, str.isidentifier)
        self.start_number = vec(starts, lambda t: bool(_NUMBER_PREFIX.match(t)))
        self.start_string = vec(starts, lambda t: (st := _string_state(t)) is not None and not st[1])
        self.start_bytes = vec(starts, lambda t: (st := _string_state(t)) is not None and st[1])
        self.start_exact = {e: vec(starts, lambda t, e=e: e.startswith(t)) for e in EXACT}
        # near max_len only pieces that are a whole token by themselves may start one
        self.whole = {rep: vec(starts, lambda t, rep=rep: _complete_as(t) == rep) for rep in
                      (*EXACT, NAME_REP, NUMBER_REP, STRING_REP, BYTES_REP)}
        # how each continuation piece can extend a token
        self.cont_word = vec(conts, lambda t: bool(re.fullmatch(r"\w+", t)))
        self.cont_number = vec(conts, lambda t: bool(re.fullmatch(r"[\w.+-]+", t)))
        self.cont_string = {q: (vec(conts, lambda t, q=q: q not in t and (len(q) == 3 or "\n" not in t)),
                                vec(conts, lambda t, q=q: t.endswith(q) and q not in t[:-len(q)]))
                            for q in ("'", '"', "'''", '"""')}
        self._conts = conts
        self._cache: dict[tuple, Tensor] = {}

    def _quote_after(self, prefix: str) -> Tensor:
        """Continuation pieces that turn a string prefix (``r``, ``b``, ``rb`` ...) into a string."""
        key = ("quote", prefix)
        if key not in self._cache:
            self._cache[key] = self._mask([i for i, t in self._conts if _string_state(prefix + t) is not None])
        return self._cache[key]

    def _mask(self, ids: list[int]) -> Tensor:
        m = torch.zeros(self.V, dtype=torch.bool)
        m[ids] = True
        return m

    # -- state transitions -------------------------------------------------------------
    def initial(self) -> PieceState:
        return PieceState(self.tokens.initial())

    def _end_token(self, s: PieceState) -> SyntaxState:
        """The token-level state once the partial token is complete (as its representative)."""
        if not s.partial:
            return s.tokens
        rep = _complete_as(s.partial) or NAME_REP  # an invalid token cannot be completed by the mask
        return self.tokens.advance(s.tokens, self.rep_id[rep])

    def advance(self, s: PieceState, piece_id: int) -> PieceState:
        piece = self.itos[piece_id] if piece_id < self.V else NAME_REP  # a copied source word: a name
        if piece.startswith(CONTINUATION) and len(piece) > len(CONTINUATION) and s.partial:
            return PieceState(s.tokens, s.partial + piece[len(CONTINUATION):])
        state = self._end_token(s)
        if piece in LAYOUT or piece in SPECIALS:
            return PieceState(self.tokens.advance(state, self.rep_id[piece]))
        return PieceState(state, piece)

    # -- masks -----------------------------------------------------------------------------
    def _token_mask(self, state: SyntaxState, remaining: int) -> Tensor:
        return self.tokens.mask([state], len(self.tokens.vocab), remaining)[0]

    def _starts(self, state: SyntaxState, remaining: int) -> Tensor:
        """Pieces that begin (or are) a token the rules accept at ``state``, and allowed layout/EOS.

        A layout token or <EOS> takes effect at this step (``remaining``); any other token is
        complete one step later at the earliest, so it must be acceptable with ``remaining - 1``."""
        closing = self._closing(state, remaining)
        key = ("start", self.tokens._key(state, remaining), self.tokens._key(state, remaining - 1), closing)
        hit = self._cache.get(key)
        if hit is None:
            now, ok = self._token_mask(state, remaining), self._token_mask(state, remaining - 1)
            allowed = torch.zeros(self.V, dtype=torch.bool)
            if closing:  # no time to spell a token out: whole-token pieces only
                for rep, mask in self.whole.items():
                    if ok[self.rep_id[rep]]:
                        allowed |= mask
            if not allowed.any():  # (or the token needed, e.g. `pass`, has no piece of its own)
                for e, mask in self.start_exact.items():
                    if ok[self.rep_id[e]]:
                        allowed |= mask
                for rep, mask in ((NAME_REP, self.start_name), (NUMBER_REP, self.start_number),
                                  (STRING_REP, self.start_string), (BYTES_REP, self.start_bytes)):
                    if ok[self.rep_id[rep]]:
                        allowed |= mask
            for t in (*LAYOUT, SPECIALS[EOS]):
                if t in self.vocab.stoi:
                    allowed[self.vocab.stoi[t]] = bool(now[self.rep_id[t]])
            hit = self._cache[key] = allowed
        return hit

    def _closing(self, state: SyntaxState, remaining: int) -> bool:
        """Near ``max_len``: only the pieces that finish the program in time."""
        return remaining <= self.tokens._min_to_finish(state) + 2

    def _continuations(self, state: SyntaxState, partial: str, remaining: int) -> Tensor:
        """Continuation pieces that keep ``partial`` on its way to a token the rules accept at ``state``."""
        string = _string_state(partial)
        exact = tuple(e[len(partial):] for e in EXACT if e.startswith(partial) and len(e) > len(partial))
        closing = self._closing(state, remaining)
        # what the result depends on besides the token state: the partial itself where it can still
        # become a keyword or operator (':' and '!' both go on with '=', to ':=' and '!=', which the
        # rules treat differently), and whether it is a string prefix (`R` can open R'...', `x` not)
        key = ("cont", self.tokens._key(state, remaining), partial.isidentifier(),
               bool(_NUMBER_PREFIX.match(partial)), string, bool(_STRING_PREFIX.fullmatch(partial)),
               partial if exact else "", closing)
        hit = self._cache.get(key)
        if hit is None:
            ok = self._token_mask(state, remaining)
            allowed = torch.zeros(self.V, dtype=torch.bool)
            if partial.isidentifier() and ok[self.rep_id[NAME_REP]]:
                allowed |= self.cont_word
            if _STRING_PREFIX.fullmatch(partial) and not closing:  # r"...", b'...', f"..."
                bytes_ = "b" in partial.lower()
                if ok[self.rep_id[BYTES_REP if bytes_ else STRING_REP]]:
                    allowed |= self._quote_after(partial)
            if _NUMBER_PREFIX.match(partial) and ok[self.rep_id[NUMBER_REP]]:
                allowed |= self.cont_number
            if string is not None and string[2] == "open" and ok[self.rep_id[BYTES_REP if string[1] else STRING_REP]]:
                inside, closes = self.cont_string[string[0]]
                allowed |= closes if closing else inside | closes
            for rest in exact:
                if ok[self.rep_id[partial + rest]]:
                    for k in range(1, len(rest) + 1):
                        if rest[:k] in self.cont_ids:
                            allowed[self.cont_ids[rest[:k]]] = True
            hit = self._cache[key] = allowed
        return hit

    def mask(self, states: list[PieceState], width: int, remaining: int) -> Tensor:
        """Boolean [len(states), width] mask of allowed next pieces (extended copy ids never allowed)."""
        rows = []
        for s in states:
            if not s.partial:
                row = self._starts(s.tokens, remaining).clone()
            else:
                row = self._continuations(s.tokens, s.partial, remaining).clone()
                rep = _complete_as(s.partial)
                if rep is not None and self._token_mask(s.tokens, remaining)[self.rep_id[rep]]:
                    after = self.tokens.advance(s.tokens, self.rep_id[rep])
                    if remaining <= self.tokens._min_to_finish(after) + 2:  # near max_len: end the token
                        row[:] = False
                    row |= self._starts(after, remaining)
            row[UNK] = False
            if not row.any():  # never leave the decoder without a move
                row[EOS] = True
            if width > self.V:
                row = torch.cat([row, torch.zeros(width - self.V, dtype=torch.bool)])
            rows.append(row)
        return torch.stack(rows)


@lru_cache(maxsize=4)
def _constraint_for(itos: tuple[str, ...]) -> PieceSyntaxConstraint:
    return PieceSyntaxConstraint(Vocabulary(list(itos)))


def piece_syntax_constraint(trg_vocab: Vocabulary) -> PieceSyntaxConstraint:
    """A (cached) piece constraint for ``trg_vocab``: masks are shared between calls."""
    return _constraint_for(tuple(trg_vocab.itos))
