"""The retrieval baseline: answer a docstring with the training function whose docstring is most similar.

Similarity is the cosine of TF-IDF vectors over lower-cased docstring words (``docstring_tokens``
that contain a letter or digit), with smoothed idf ``log((1 + N) / (1 + df)) + 1`` from the training
docstrings and l2-normalised vectors; ties go to the first training row. A model that cannot beat
this has not learnt more than "look up a similar docstring".
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Sequence

import torch


def _words(tokens: Sequence[str]) -> list[str]:
    return [t.lower() for t in tokens if any(c.isalnum() for c in t)]


class TfidfRetriever:
    """TF-IDF index of the training docstrings; ``nearest`` gives the most similar row per query."""

    def __init__(self, train_docstrings: Sequence[Sequence[str]]):
        if not train_docstrings:
            raise ValueError("The retrieval baseline needs at least one training docstring.")
        docs = [_words(d) for d in train_docstrings]
        df = Counter(w for d in docs for w in set(d))
        self.index = {w: i for i, w in enumerate(sorted(df))}
        n = len(docs)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[w])) + 1 for w in sorted(df)], dtype=torch.float64)
        self.matrix = self._vectors(docs)  # [N, W] sparse, rows of unit length
        self._matrix_t = self.matrix.t().coalesce()  # [W, N], for the products with queries

    def _vectors(self, docs: Sequence[Sequence[str]]) -> torch.Tensor:
        rows, cols, vals = [], [], []
        for r, words in enumerate(docs):
            counts = Counter(w for w in words if w in self.index)
            weights = {self.index[w]: c * float(self.idf[self.index[w]]) for w, c in counts.items()}
            norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
            for c, v in sorted(weights.items()):
                rows.append(r)
                cols.append(c)
                vals.append(v / norm)
        indices = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        return torch.sparse_coo_tensor(indices, torch.tensor(vals, dtype=torch.float64),
                                       (len(docs), len(self.index)), check_invariants=True).coalesce()

    def cosines(self, docstrings: Sequence[Sequence[str]]) -> torch.Tensor:
        """Cosine of each query docstring with every training docstring: [len(docstrings), N] float64."""
        q = self._vectors([_words(d) for d in docstrings])                   # [b, W]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse support is in beta": the product is exact
            return torch.sparse.mm(q, self._matrix_t).to_dense()  # [b, N]

    def best(self, docstrings: Sequence[Sequence[str]], excluded: Sequence[Sequence[int]] | None = None,
             batch: int = 256) -> list[tuple[int, float]]:
        """(index, cosine) of the most similar training docstring for each query, the first one on
        ties; ``excluded[k]`` lists training rows query k may not pick. A query that shares no word
        with any allowed row gets (first allowed row, 0.0): the caller decides what that means."""
        out: list[tuple[int, float]] = []
        for start in range(0, len(docstrings), batch):
            scores = self.cosines(docstrings[start:start + batch])              # [b, N]
            if excluded is not None:
                for k, rows in enumerate(excluded[start:start + batch]):
                    scores[k, list(rows)] = -1.0
            # rounded, so that float noise cannot break a tie; argmax of the mask is the first best row
            rounded = torch.round(scores * 1e9)
            first = (rounded == rounded.max(dim=1, keepdim=True).values).int().argmax(dim=1)  # [b]
            out += [(i, max(float(scores[k, i]), 0.0)) for k, i in enumerate(first.tolist())]
        return out

    def top_k(self, docstrings: Sequence[Sequence[str]], k: int, batch: int = 256) -> list[list[tuple[int, float]]]:
        """(index, cosine) of the ``k`` most similar training docstrings of each query, most similar
        first and, among equals, the first row first: ``top_k(q, 1)`` is ``best(q)``."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        out: list[list[tuple[int, float]]] = []
        n = self.matrix.size(0)
        for start in range(0, len(docstrings), batch):
            scores = self.cosines(docstrings[start:start + batch])              # [b, N]
            rounded = torch.round(scores * 1e9)
            # descending by rounded cosine, ascending by row: a stable sort of the negated scores
            order = torch.sort(-rounded, dim=1, stable=True).indices[:, : min(k, n)]  # [b, k]
            out += [[(i, max(float(scores[r, i]), 0.0)) for i in row] for r, row in enumerate(order.tolist())]
        return out

    def nearest(self, docstrings: Sequence[Sequence[str]], batch: int = 256) -> list[int]:
        """Index of the most similar training docstring for each query (the first one on ties; row 0
        when a query shares no word with any training docstring)."""
        return [i for i, _ in self.best(docstrings, batch=batch)]


def retrieval_outputs(train_rows: Sequence[dict], rows: Sequence[dict]) -> list[list[str]]:
    """The retrieval baseline's output (code tokens of the nearest training function) for each row."""
    retriever = TfidfRetriever([r["docstring_tokens"] for r in train_rows])
    return [list(train_rows[i]["code_tokens"]) for i in retriever.nearest([r["docstring_tokens"] for r in rows])]
