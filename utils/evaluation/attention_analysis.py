"""What the attention weights of a decoded split show: how peaked they are, whether they move
along the source, and which examples make readable heatmaps."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from utils.data.batch import SEPARATOR
from utils.evaluation.results import DecodedSplit
from utils.metrics import Tokens, is_identifier


def _as_attention(attn: Any) -> np.ndarray:
    if hasattr(attn, "detach"):  # torch tensor, possibly on GPU
        attn = attn.detach().float().cpu().numpy()
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"attention must be 2-D [T_out, S]; got shape {a.shape}.")
    if a.size and (np.any(a < -1e-6) or not np.allclose(a.sum(axis=1), 1.0, atol=1e-3)):
        raise ValueError("attention rows must be probability distributions (non-negative, summing to 1).")
    return a


def attention_entropy(attn: Any) -> float:
    """Mean entropy (nats) of the attention distribution per output step; NaN for no steps."""
    a = _as_attention(attn)
    if a.shape[0] == 0:
        return float("nan")
    p = np.clip(a, 0.0, None)
    # 0 * log 0 is taken as 0.
    ent = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    return float(ent.mean())


def attention_copy_alignment(attn: Any, src_tokens: Tokens, out_tokens: Tokens) -> tuple[int, int]:
    """(hits, total) over output identifiers present in the source: argmax attention lands on that same token.

    ``src_tokens`` must be exactly the attention columns and ``out_tokens`` exactly its rows.
    """
    a = _as_attention(attn)
    if a.shape != (len(out_tokens), len(src_tokens)):
        raise ValueError(
            f"attention shape {a.shape} does not match {len(out_tokens)} output tokens"
            f" x {len(src_tokens)} source tokens."
        )
    src_set = set(src_tokens)
    hits = total = 0
    for t, tok in enumerate(out_tokens):
        if is_identifier(tok) and tok in src_set:
            total += 1
            hits += src_tokens[int(np.argmax(a[t]))] == tok
    return hits, total


def attention_statistics(decoded: DecodedSplit, rows: Sequence[dict] | None = None) -> dict[str, float]:
    """Across a split: where attention goes when the model writes an identifier its source contains
    (the docstring; for a retrieval model also the retrieved function).

    * ``copy_alignment``: % of such output tokens whose most-attended source position holds that
      same word (``copy_hits`` / ``copy_total``); ``chance_alignment`` is the % a uniformly random
      source position would give (occurrences of the word / source length, averaged);
    * ``mean_entropy``: attention entropy in nats, averaged over all generated tokens;
      ``uniform_entropy`` is the same average for uniform attention (log of the source length).
    """
    if not decoded.has_attention:
        raise ValueError(f"{decoded.model} {decoded.decoding} has no attention weights.")
    if rows is not None:
        if len(rows) != len(decoded):
            raise ValueError(f"{len(decoded)} outputs for {len(rows)} rows.")
        for r, src in zip(rows, decoded.src_tokens):
            doc = list(r["docstring_tokens"])  # a retrieval model's source goes on after it (<SEP>, code)
            if doc != src[1:1 + len(doc)] or src[1 + len(doc)] not in ("<EOS>", SEPARATOR):
                raise ValueError("The decoded split does not belong to these rows.")
    hits = total = 0
    chance = 0.0
    ent_sum = uni_sum = 0.0
    steps = n = 0
    for a, src, out in zip(decoded.attention, decoded.src_tokens, decoded.hypotheses):
        if a is None:
            continue
        n += 1
        if a.shape[0] == 0:
            continue
        h, t = attention_copy_alignment(a, src, out)
        hits, total = hits + h, total + t
        for tok in out:
            if is_identifier(tok) and tok in src:
                chance += src.count(tok) / len(src)
        ent_sum += attention_entropy(a) * a.shape[0]
        uni_sum += math.log(a.shape[1]) * a.shape[0]
        steps += a.shape[0]
    return {
        "model": decoded.model,
        "decoding": decoded.decoding,
        "n_outputs": n,
        "n_tokens": steps,
        "copy_total": total,
        "copy_hits": hits,
        "copy_alignment": 100.0 * hits / total if total else float("nan"),
        "chance_alignment": 100.0 * chance / total if total else float("nan"),
        "mean_entropy": ent_sum / steps if steps else float("nan"),
        "uniform_entropy": uni_sum / steps if steps else float("nan"),
    }


def pick_heatmap_examples(decoded: DecodedSplit, n: int = 4, max_out: int = 30, max_src: int = 25) -> list[int]:
    """Indices of up to ``n`` outputs small enough to read as a heatmap, preferring ones that write an
    identifier of the docstring (falling back to any non-empty output)."""
    fits = [i for i, (h, s, a) in enumerate(zip(decoded.hypotheses, decoded.src_tokens, decoded.attention))
            if a is not None and 0 < len(h) <= max_out and len(s) <= max_src + 2]
    copying = [i for i in fits if any(is_identifier(t) and t in decoded.src_tokens[i] for t in decoded.hypotheses[i])]
    rest = [i for i in fits if i not in set(copying)]
    chosen = (copying + rest)[:n]
    if len(chosen) < n:  # nothing small enough: take the shortest non-empty outputs
        others = sorted((i for i, a in enumerate(decoded.attention) if a is not None and len(decoded.hypotheses[i])
                         and i not in chosen), key=lambda i: len(decoded.hypotheses[i]))
        chosen += others[: n - len(chosen)]
    return chosen
