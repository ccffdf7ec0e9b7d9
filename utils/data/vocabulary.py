"""Token <-> id vocabulary with the four specials at fixed ids, stored as JSON (never pickled)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from utils.data.subwords import Subwords
from utils.data.tokenizer import EOS, PAD, SOS, SPECIALS, UNK
from utils.files import write_text

__all__ = ["EOS", "PAD", "SOS", "SPECIALS", "UNK", "Vocabulary", "known_tokens"]

_FORMAT = "seq2seq-vocabulary"


class Vocabulary:
    """Maps symbols to ids; ids 0..3 are always <PAD>, <SOS>, <EOS>, <UNK>.

    A word vocabulary's symbols are the tokens themselves. A subword vocabulary also carries the BPE
    model (``subwords``: the tokenizer's JSON, see ``utils.data.subwords``) that splits tokens into its
    symbols, the pieces; ``symbols(tokens)`` gives what a model reads or writes either way.
    """

    def __init__(self, itos: list[str], subwords: str | None = None) -> None:
        if list(itos[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"A vocabulary must start with the specials {SPECIALS} at ids 0..3.")
        if len(set(itos)) != len(itos):
            raise ValueError("A vocabulary cannot list the same token twice.")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.subwords = subwords
        self._splitter = None
        if subwords is not None:
            pieces = self.splitter().symbols()
            if pieces != self.itos:
                raise ValueError(f"The vocabulary's {len(self.itos)} symbols do not match its BPE tokenizer's "
                                 f"{len(pieces)} pieces; write both again with notebooks/01_preprocess.ipynb.")

    def __getstate__(self) -> dict:
        """What a copy for another process carries: the splitter is left out (its cache cannot be
        pickled) and built again from ``subwords`` when first needed."""
        return {**self.__dict__, "_splitter": None}

    @property
    def is_subword(self) -> bool:
        return self.subwords is not None

    def splitter(self) -> Subwords:
        """The ``utils.data.subwords.Subwords`` of a subword vocabulary (built once)."""
        if self._splitter is None:
            self._splitter = Subwords.from_json(self.subwords)
        return self._splitter

    @classmethod
    def from_subwords(cls, subwords: Subwords, attach: bool = True) -> "Vocabulary":
        """Every piece of a BPE model (specials first at their fixed ids); with ``attach``, a subword
        vocabulary that carries the model, so it can split tokens and be saved with it."""
        return cls(subwords.symbols(), subwords.to_json() if attach else None)

    def symbols(self, tokens: Iterable[str]) -> list[str]:
        """What a model reads or writes for ``tokens``: the tokens, or their BPE pieces."""
        return self.splitter().split(list(tokens)) if self.is_subword else list(tokens)

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 10, max_size: int | None = None) -> "Vocabulary":
        """Keep tokens seen at least ``min_freq`` times, most frequent first (ties by token).

        ``max_size`` caps the whole vocabulary, specials included.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}.")
        if max_size is not None and max_size < len(SPECIALS):
            raise ValueError(f"max_size must be at least {len(SPECIALS)} (the specials), got {max_size}.")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        specials = set(SPECIALS)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size - len(SPECIALS)]
        return cls(SPECIALS + kept)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``, unknown ones as UNK; no SOS/EOS added."""
        return [self.stoi.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Tokens of ``ids``; with ``strip_special``, stop at EOS and drop PAD/SOS (UNK stays visible)."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if strip_special:
                if i == EOS:
                    break
                if i in (PAD, SOS):
                    continue
            # Out-of-range ids can only come from a broken model; show them as unknown rather than crash.
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.subwords == other.subwords

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by content

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {'BPE pieces' if self.is_subword else 'tokens'})"

    def to_dict(self) -> dict[str, Any]:
        out = {"format": _FORMAT, "version": 1, "itos": list(self.itos)}
        if self.is_subword:
            out["subwords"] = self.subwords
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        """Rebuild from ``to_dict`` output; ValueError if it is not one."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT or not isinstance(d.get("itos"), list):
            raise ValueError(f"Not a vocabulary: expected a JSON object with format={_FORMAT!r} and an 'itos' list.")
        if not all(isinstance(t, str) for t in d["itos"]):
            raise ValueError("Not a vocabulary: every entry of 'itos' must be a string.")
        if d.get("subwords") is not None and not isinstance(d["subwords"], str):
            raise ValueError("Not a vocabulary: 'subwords' must be the BPE tokenizer's JSON text.")
        return cls(d["itos"], d.get("subwords"))

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """Read a vocabulary JSON written by ``save``; clear errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No vocabulary file at {path}; run notebooks/01_preprocess.ipynb or `make main`.")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path} is not a valid vocabulary JSON ({e}); re-create it with "
                             "Vocabulary.save.") from None


class _Spelled:
    """The tokens a subword vocabulary writes without <UNK> (a container for the study's BLEU variant)."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self.vocab.splitter().spells(token)


def known_tokens(vocab: Vocabulary) -> Vocabulary | _Spelled:
    """What a vocabulary writes as itself: its tokens, or for a subword one every token it spells."""
    return _Spelled(vocab) if vocab.is_subword else vocab
