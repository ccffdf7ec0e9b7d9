"""Open vocabulary: byte-pair-encoding pieces inside the project's tokens.

BPE (Sennrich et al., 2016; the Hugging Face ``tokenizers`` library) is trained on the training
split's tokens, one token per word, so no piece ever crosses a token boundary. The first piece of a
token is written as is, every further piece with the ``##`` prefix, so ``join_pieces`` turns pieces
back into tokens exactly (no Python code token starts with ``#``: comments are dropped). Layout
tokens (``<NEWLINE>``, ``<INDENT>``, ``<DEDENT>``) and the specials stay whole. Characters never
seen in training make their token one ``<UNK>`` piece (the alphabet is the training split's
characters; measured: one token in the default corpus's test split).
Saved as the library's JSON (never pickled).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from utils.data.tokenizer import DEDENT, INDENT, NEWLINE, SPECIALS, UNK
from utils.files import write_text

CONTINUATION = "##"
WHOLE = frozenset({NEWLINE, INDENT, DEDENT, *SPECIALS})
# an unknown character's <UNK> piece is part of its token; these never are
_NEVER_JOINED = WHOLE - {SPECIALS[UNK]}


def join_pieces(pieces: Iterable[str]) -> list[str]:
    """Pieces -> tokens: a ``##`` piece continues the token before it. Word-level tokens (which never
    start with ``##``) come back unchanged, so this is safe on every model's output."""
    tokens: list[str] = []
    for p in pieces:
        if p.startswith(CONTINUATION) and len(p) > len(CONTINUATION) and tokens and tokens[-1] not in _NEVER_JOINED:
            tokens[-1] += p[len(CONTINUATION):]
        else:
            tokens.append(p)
    return tokens


class Subwords:
    """A trained BPE model: ``split`` tokens into pieces, ``vocabulary()`` of those pieces."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._split_token = lru_cache(maxsize=200_000)(self._pieces_of)

    @classmethod
    def train(cls, token_lists: Iterable[Sequence[str]], vocab_size: int, min_frequency: int = 2) -> "Subwords":
        """Learn ``vocab_size`` pieces (specials and layout tokens included) from token lists."""
        from tokenizers import Tokenizer, models, trainers

        if vocab_size < 100:
            raise ValueError(f"bpe_size must be at least 100 pieces, got {vocab_size}.")
        words = [t for tokens in token_lists for t in tokens if t not in WHOLE]
        # The library's trainer gives each "##c" piece its id when it first meets it while walking a
        # hash map, so those ids, which break ties between equally frequent merges, change from one
        # process to the next and so do the merges (huggingface/tokenizers#1794). Declaring every
        # "##c" up front, sorted, fixes their ids: the same words then give the same BPE model.
        continuations = sorted({CONTINUATION + c for w in words for c in w[1:]})
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIALS[UNK], continuing_subword_prefix=CONTINUATION))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=[*SPECIALS, NEWLINE, INDENT, DEDENT, *continuations],
                                      continuing_subword_prefix=CONTINUATION)
        tokenizer.train_from_iterator(words, trainer)
        # ... for training only: as added tokens they would be cut out of any text that holds them
        saved = json.loads(tokenizer.to_str())
        saved["added_tokens"] = [t for t in saved["added_tokens"] if not t["content"].startswith(CONTINUATION)]
        return cls(Tokenizer.from_str(json.dumps(saved)))

    def _pieces_of(self, token: str) -> tuple[str, ...]:
        if token in WHOLE:
            return (token,)
        pieces = tuple(self.tokenizer.encode(token).tokens)
        # an unseen character: the library's <UNK> carries no continuation mark, so the token's
        # boundaries would be lost; the whole token becomes one <UNK> piece instead
        return pieces if pieces and SPECIALS[UNK] not in pieces else (SPECIALS[UNK],)

    def split(self, tokens: Sequence[str]) -> list[str]:
        """Tokens -> pieces (cached per token: code repeats its tokens a lot)."""
        return [p for t in tokens for p in self._split_token(t)]

    def symbols(self) -> list[str]:
        """Every piece the model knows, specials first at their fixed ids, then by piece id (what
        ``Vocabulary.from_subwords`` holds)."""
        vocab = self.tokenizer.get_vocab()
        return SPECIALS + sorted((p for p in vocab if p not in SPECIALS), key=vocab.__getitem__)

    def spells(self, token: str) -> bool:
        """True when ``token`` splits into known pieces (no ``<UNK>``)."""
        return SPECIALS[UNK] not in self._split_token(token)

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str, where: str = "the tokenizer") -> "Subwords":
        from tokenizers import Tokenizer

        try:
            json.loads(text)
            return cls(Tokenizer.from_str(text))
        except Exception as e:  # noqa: BLE001 - the library raises its own exception types
            raise ValueError(f"{where} is not a BPE tokenizer JSON ({str(e)[:120]}); run "
                             "notebooks/01_preprocess.ipynb again to write it.") from None

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Subwords":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No tokenizer file at {path}; run notebooks/01_preprocess.ipynb with "
                                    "vocabulary='bpe' (or use the word vocabulary).")
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))


def token_starts(pieces: Sequence[str]) -> list[int]:
    """Where each token begins in ``pieces`` (the positions ``join_pieces`` does not join on)."""
    starts = []
    for i, p in enumerate(pieces):
        joins = (p.startswith(CONTINUATION) and len(p) > len(CONTINUATION) and i > 0
                 and pieces[i - 1] not in _NEVER_JOINED)
        if not joins:
            starts.append(i)
    return starts


def merge_attention(attention, out_pieces: Sequence[str], src_pieces: Sequence[str]):
    """Piece-level attention [out pieces, source pieces] -> token level [out tokens, source tokens]:
    the weights on a source token's pieces are summed, and a generated token's row is the mean of its
    pieces' rows (so each row still sums to one)."""
    import numpy as np

    a = np.asarray(attention, dtype=np.float64)
    cols = token_starts(src_pieces)
    rows = token_starts(out_pieces)
    if a.size == 0:
        return np.zeros((len(rows), len(cols)), dtype=np.float32)
    a = np.add.reduceat(a, cols, axis=1)                                   # [out pieces, src tokens]
    sizes = np.diff([*rows, a.shape[0]])
    return (np.add.reduceat(a, rows, axis=0) / sizes[:, None]).astype(np.float32)  # [out tokens, src tokens]
