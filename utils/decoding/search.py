"""Batched greedy decoding and batched beam search for every model.

Both return, per input, the generated token ids (without <SOS>/<EOS>) and, for attention models,
the attention weights of each generated step over the source positions [steps, S] (columns are the
source tokens exactly as the encoder saw them, <SOS> and <EOS> included). Finished rows leave the
batch, so no work is spent on them. <PAD> and <SOS> are never generated, nor
<UNK> by a model with a subword (BPE) vocabulary.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from utils.data.batch import Batch, Example, make_batch
from utils.data.vocabulary import EOS, PAD, SOS, UNK, Vocabulary
from utils.decoding.piece_syntax import piece_syntax_constraint
from utils.decoding.syntax_constraints import PythonSyntaxConstraint, SyntaxState, syntax_constraint
from utils.models import Seq2SeqModel, State
from utils.precision import autocast, resolve_precision


@dataclass
class Hypotheses:
    """Decoder output for a batch, in the batch's row order."""

    tokens: list[list[int]]
    attention: list[Tensor | None] = field(default_factory=list)  # each [steps, S]
    scores: list[float] = field(default_factory=list)
    # beam search: the beam_size best finished hypotheses of each row, best (length-penalised score) first
    n_best: list[list[list[int]]] = field(default_factory=list)


@dataclass
class NgramBonus:
    """Retrieval-guided decoding (Hayati et al. 2018, ReCode): beam search adds ``weight`` to the
    log-probability of every piece that continues a bigram of its source's retrieved code (after
    <SOS>: the first pieces of the retrieved functions)."""

    follows: list[dict[int, set[int]]]  # per batch row: a piece -> the pieces after it in that row's retrieved code
    weight: float

    @classmethod
    def from_codes(cls, codes: Sequence[Sequence[Sequence[int]]], weight: float) -> "NgramBonus":
        """From each batch row's retrieved functions (piece ids, several per row)."""
        follows = []
        for row in codes:
            table: dict[int, set[int]] = {}
            for code in row:
                for a, b in zip([SOS, *code], code):
                    table.setdefault(a, set()).add(b)
            follows.append(table)
        return cls(follows, weight)

    def add(self, log_probs: Tensor, srcs: Sequence[int], y: Tensor, K: int) -> Tensor:
        """``log_probs`` [n*K, V] of the open sources ``srcs`` (K beams each, last pieces ``y``), the bonus added."""
        rows, cols = [], []
        for r, last in enumerate(y.tolist()):
            after = self.follows[srcs[r // K]].get(last, ())
            rows += [r] * len(after)
            cols += list(after)
        if rows:
            log_probs[rows, cols] += self.weight
        return log_probs


def _forbid_specials(log_probs: Tensor, open_vocabulary: bool = False) -> Tensor:
    log_probs[:, PAD] = float("-inf")
    log_probs[:, SOS] = float("-inf")
    if open_vocabulary:  # pieces spell every token: <UNK> is never the right output
        log_probs[:, UNK] = float("-inf")
    return log_probs


def _step(model: Seq2SeqModel, y: Tensor, state: State) -> tuple[Tensor, State, Tensor | None]:
    """Log-probabilities [n, V(+OOV)] of the next token; extended (copied) ids are fed back as <UNK>."""
    y_in = y.masked_fill(y >= model.config.trg_vocab_size, UNK)
    logits, state, attn = model.decode_step(y_in, state)
    open_vocabulary = getattr(model.config, "vocabulary", "word") == "bpe"
    return _forbid_specials(torch.log_softmax(logits.float(), -1), open_vocabulary), state, attn


def _encode(model: Seq2SeqModel, batch: Batch) -> State:
    return model.encode_batch(batch.src, batch.src_lengths, batch.src_ext, batch.n_oov)


def _constrain(log_probs: Tensor, constraint: PythonSyntaxConstraint | None,
               states: list[SyntaxState] | None, remaining: int) -> Tensor:
    """Set disallowed tokens to -inf (syntax-aware decoding); a no-op without a constraint."""
    if constraint is None:
        return log_probs
    allowed = constraint.mask(states, log_probs.size(1), remaining).to(log_probs.device)
    return log_probs.masked_fill(~allowed, float("-inf"))


@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, batch: Batch, max_len: int = 80,
                  constraint: PythonSyntaxConstraint | None = None) -> Hypotheses:
    """Pick the most probable token at every step, for all rows at once, up to ``max_len`` tokens.

    With a ``constraint`` only tokens that keep each partial program valid Python are chosen.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}.")
    model.eval()
    B = batch.src.size(0)
    device = batch.src.device
    state = _encode(model, batch)
    rows = torch.arange(B, device=device)  # which batch rows are still decoding
    y = torch.full((B,), SOS, dtype=torch.long, device=device)
    # Outputs are written into tensors and turned into lists once at the end: no per-token Python.
    out = torch.full((B, max_len), PAD, dtype=torch.long, device=device)
    lengths = torch.full((B,), max_len, dtype=torch.long, device=device)
    scores = torch.zeros(B, device=device)
    attn_out: Tensor | None = None
    syn = [constraint.initial()] * B if constraint is not None else None
    for t in range(max_len):
        log_probs, state, attn = _step(model, y, state)
        log_probs = _constrain(log_probs, constraint, syn, max_len - t)
        best, y = log_probs.max(-1)  # [n]
        if syn is not None:
            syn = [constraint.advance(st, int(tok)) for st, tok in zip(syn, y.tolist())]
        scores[rows] += best
        out[rows, t] = y
        if attn is not None:
            if attn_out is None:
                attn_out = torch.zeros(B, max_len, attn.size(1), device=device)
            attn_out[rows, t] = attn
        ended = y == EOS
        lengths[rows[ended]] = t
        keep = (~ended).nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        if keep.numel() < rows.numel():
            rows, y, state = rows[keep], y[keep], state.select(keep)
            if syn is not None:
                syn = [syn[k] for k in keep.tolist()]
    lengths_l = lengths.tolist()
    tokens = [row[:n] for row, n in zip(out.tolist(), lengths_l)]
    if model.has_attention and attn_out is not None:
        attn_cpu = attn_out.cpu()
        attention = [attn_cpu[i, :n] if n else None for i, n in enumerate(lengths_l)]
    else:
        attention = [None] * B
    return Hypotheses(tokens, attention, scores.tolist())


def check_length_penalty(alpha: object) -> float:
    """``alpha`` as a float; a ValueError unless it is a finite number >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) < float("inf"):
        raise ValueError(f"length_penalty must be a number >= 0 (0 ranks beams by raw log-probability), "
                         f"got {alpha!r}.")
    return float(alpha)


def _length_penalty(length: int, alpha: float) -> float:
    """GNMT length normalisation ((5 + len) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def top_candidates(scores: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """The ``m`` best entries of each row of ``scores`` [n, C], best first, ties going to the lower
    index, as ``max`` breaks them in greedy decoding (``topk`` alone breaks them arbitrarily, and
    bf16 logits tie often). Returns (values [n, m], indices [n, m])."""
    values, idx = scores.topk(m, dim=1)
    threshold = values[:, -1:]                                    # [n, 1]
    if bool(((scores >= threshold).sum(1) > m).any()):            # ties at the edge: take the lowest indices
        above = scores > threshold
        tied = (scores == threshold) & ((scores == threshold).cumsum(1) <= m - above.sum(1, keepdim=True))
        idx = (above | tied).nonzero()[:, 1].view(-1, m)          # m per row, in index order
    else:
        idx = idx.sort(1).values                                  # the same m, in index order
    values = scores.gather(1, idx)
    order = values.argsort(dim=1, descending=True, stable=True)   # equal values keep index order
    return values.gather(1, order), idx.gather(1, order)


# (normalised score, tokens, attention [steps, S] on the CPU or None, raw log-probability) per hypothesis
_Finished = list[tuple[float, list[int], Tensor | None, float]]


@dataclass
class _Beams:
    """The open beams of ``beam_search``: the K beams of the i-th open source are rows i*K .. i*K+K-1."""

    srcs: list[int]                  # original index of each still-open source
    scores: Tensor                   # [n, K] log-probabilities (-inf: no beam)
    tokens: Tensor                   # [n*K, t]
    attns: Tensor | None             # [n*K, t, S]
    y: Tensor                        # [n*K] the last tokens
    state: State
    syn: list[SyntaxState] | None


class _Candidates(NamedTuple):
    """The best continuations of each open source, best first, each [n, 2K]."""

    scores: Tensor
    origin: Tensor                   # the beam each continues (0..K-1)
    token: Tensor
    is_eos: Tensor                   # it ends the hypothesis (<EOS>, or the last step)
    rank: Tensor


def _start_beams(model: Seq2SeqModel, batch: Batch, K: int,
                 constraint: PythonSyntaxConstraint | None) -> _Beams:
    """K rows per source, of which only the first beam is live."""
    B = batch.src.size(0)
    device = batch.src.device
    state = _encode(model, batch).select(torch.arange(B, device=device).repeat_interleave(K))
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    tokens = torch.full((B * K, 0), SOS, dtype=torch.long, device=device)  # [B*K, t]
    y = torch.full((B * K,), SOS, dtype=torch.long, device=device)
    syn = [constraint.initial()] * (B * K) if constraint is not None else None
    return _Beams(list(range(B)), scores, tokens, None, y, state, syn)


def _candidates(beams: _Beams, log_probs: Tensor, K: int, last: bool) -> _Candidates:
    """The 2K best (beam, token) continuations of each open source; ``log_probs`` [n*K, V]."""
    n, V = len(beams.srcs), log_probs.size(1)
    cand = (beams.scores.view(-1, 1) + log_probs).view(n, K * V)  # [n, K*V]
    top_scores, top_idx = top_candidates(cand, min(2 * K, K * V))  # [n, 2K]
    origin, token = top_idx // V, top_idx % V
    is_eos = (token == EOS) | last
    rank = torch.arange(top_idx.size(1), device=top_idx.device).expand_as(top_idx)
    return _Candidates(top_scores, origin, token, is_eos, rank)


def _set_aside(beams: _Beams, c: _Candidates, attn: Tensor | None, K: int, length_penalty: float,
               finished: list[_Finished]) -> None:
    """Add the hypotheses that end among the K best candidates (<EOS>, or anything still open at the
    last step) to ``finished``; ``attn`` [n*K, S] is this step's attention."""
    done_mask = c.is_eos & (c.rank < K) & torch.isfinite(c.scores)
    for i, j in done_mask.nonzero().tolist():
        row = i * K + int(c.origin[i, j])
        seq = beams.tokens[row].tolist()
        a = beams.attns[row] if beams.attns is not None else None
        if c.token[i, j] != EOS:  # cut off at max_len: the last token is part of the output
            seq = seq + [int(c.token[i, j])]
            a = torch.cat([a, attn[row : row + 1]]) if attn is not None and a is not None else (
                attn[row : row + 1] if attn is not None else None)
        s = float(c.scores[i, j])
        finished[beams.srcs[i]].append((s / _length_penalty(len(seq), length_penalty), seq,
                                        None if a is None else a.cpu(), s))


def _continue(beams: _Beams, c: _Candidates, attn: Tensor | None, K: int,
              constraint: PythonSyntaxConstraint | None) -> None:
    """Carry on (in place) with the K best candidates of each source that did not end."""
    n = len(beams.srcs)
    order = torch.argsort(c.is_eos.long() * 4 * K + c.rank, dim=1, stable=True)[:, :K]  # [n, K]
    cont_scores = c.scores.gather(1, order)
    cont_scores = cont_scores.masked_fill(c.is_eos.gather(1, order), float("-inf"))
    rows = (torch.arange(n, device=order.device).unsqueeze(1) * K + c.origin.gather(1, order)).view(-1)  # [n*K]
    beams.y = c.token.gather(1, order).view(-1)
    beams.tokens = torch.cat([beams.tokens[rows], beams.y.unsqueeze(1)], 1)
    if attn is not None:
        step_attn = attn[rows].unsqueeze(1)  # [n*K, 1, S]
        beams.attns = step_attn if beams.attns is None else torch.cat([beams.attns[rows], step_attn], 1)
    beams.state = beams.state.select(rows)
    if beams.syn is not None:
        beams.syn = [constraint.advance(beams.syn[r], tok) for r, tok in zip(rows.tolist(), beams.y.tolist())]
    beams.scores = cont_scores


def _drop_done(beams: _Beams, finished: list[_Finished], K: int) -> bool:
    """Drop (in place) the sources that have K finished hypotheses; False once none is left open."""
    n = len(beams.srcs)
    open_src = [i for i in range(n) if len(finished[beams.srcs[i]]) < K]
    if not open_src:
        return False
    if len(open_src) < n:
        device = beams.scores.device
        keep = torch.tensor(open_src, device=device)
        keep_rows = (keep.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
        beams.srcs = [beams.srcs[i] for i in open_src]
        beams.scores, beams.y, beams.tokens = beams.scores[keep], beams.y[keep_rows], beams.tokens[keep_rows]
        beams.attns = beams.attns[keep_rows] if beams.attns is not None else None
        beams.state = beams.state.select(keep_rows)
        if beams.syn is not None:
            beams.syn = [beams.syn[r] for r in keep_rows.tolist()]
    return True


@torch.no_grad()
def beam_search(model: Seq2SeqModel, batch: Batch, beam_size: int = 5, max_len: int = 80,
                length_penalty: float = 1.0, constraint: PythonSyntaxConstraint | None = None,
                bonus: NgramBonus | None = None) -> Hypotheses:
    """Batched beam search. Hypotheses that emit <EOS> are set aside; a source is done once it has
    ``beam_size`` finished hypotheses (beams still open at ``max_len`` count as finished).
    With ``beam_size=1`` this is exactly greedy decoding. A ``bonus`` (retrieval-guided decoding)
    is added to every step's log-probabilities, so the hypotheses' scores hold it too.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}.")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}.")
    length_penalty = check_length_penalty(length_penalty)
    model.eval()
    K = beam_size
    beams = _start_beams(model, batch, K, constraint)
    finished: list[_Finished] = [[] for _ in range(batch.src.size(0))]
    for t in range(max_len):
        log_probs, beams.state, attn = _step(model, beams.y, beams.state)      # [n*K, V]
        log_probs = _constrain(log_probs, constraint, beams.syn, max_len - t)
        if bonus is not None:
            log_probs = bonus.add(log_probs, beams.srcs, beams.y, K)
        c = _candidates(beams, log_probs, K, t == max_len - 1)
        _set_aside(beams, c, attn, K, length_penalty, finished)
        _continue(beams, c, attn, K, constraint)
        if not _drop_done(beams, finished, K):
            break

    out, att, sc, n_best = [], [], [], []
    for fin in finished:
        best = max(fin, key=lambda h: h[0])
        out.append(best[1])
        att.append(best[2] if model.has_attention else None)
        sc.append(best[3])
        n_best.append([h[1] for h in sorted(fin, key=lambda h: -h[0])][:K])  # stable: the first of equals first
    return Hypotheses(out, att, sc, n_best)


def decode_batch(model: Seq2SeqModel, batch: Batch, beam_size: int = 1, max_len: int = 80,
                 length_penalty: float = 1.0, syntax_aware: bool = False,
                 trg_vocab: Vocabulary | None = None, bonus: NgramBonus | None = None) -> Hypotheses:
    """Greedy when ``beam_size`` is 1 (and no ``bonus``), beam search otherwise; ``syntax_aware`` needs
    ``trg_vocab``."""
    constraint = None
    if syntax_aware:
        if trg_vocab is None:
            raise ValueError("Syntax-aware decoding needs the target vocabulary (pass trg_vocab=...).")
        constraint = piece_syntax_constraint(trg_vocab) if trg_vocab.is_subword else syntax_constraint(trg_vocab)
    if beam_size == 1 and bonus is None:
        return greedy_decode(model, batch, max_len, constraint)
    return beam_search(model, batch, beam_size, max_len, length_penalty, constraint, bonus)


def source_length_batches(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """``examples`` sorted by source length and cut into groups of ``batch_size``: the batches
    ``decode_examples`` decodes (the references' lengths are not looked at)."""
    ordered = sorted(examples, key=lambda e: len(e.src))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def decode_examples(model: Seq2SeqModel, examples: Sequence[Example], batch_size: int = 128,
                    beam_size: int = 1, max_len: int = 80, length_penalty: float = 1.0,
                    device: torch.device | None = None, syntax_aware: bool = False,
                    trg_vocab: Vocabulary | None = None, precision: str = "fp32",
                    guide: Sequence[Sequence[Sequence[int]]] | None = None, guide_weight: float = 0.0) -> Hypotheses:
    """Decode a whole split in batches of similar source length (the references' lengths are not
    looked at); results come back in the examples' order. ``precision``: see ``utils.precision``.
    ``guide``: each example's retrieved functions (target piece ids), for retrieval-guided beam
    search with ``guide_weight`` (:class:`NgramBonus`)."""
    device = device or next(model.parameters()).device
    precision = resolve_precision(precision, device)
    n = len(examples)
    tokens: list[list[int]] = [[] for _ in range(n)]
    attention: list[Tensor | None] = [None] * n
    scores = [0.0] * n
    n_best: list[list[list[int]]] = [[] for _ in range(n)]
    position = {id(e): i for i, e in enumerate(examples)}
    indexed = [Example(e.src, e.trg, position[id(e)], e.src_oov, e.src_ext, e.trg_ext) for e in examples]
    for group in source_length_batches(indexed, batch_size):
        batch = make_batch(group)
        bonus = NgramBonus.from_codes([guide[i] for i in batch.indices], guide_weight) if guide is not None else None
        with autocast(precision, device):
            hyp = decode_batch(model, batch.to(device), beam_size, max_len, length_penalty, syntax_aware, trg_vocab,
                               bonus)
        for k, i in enumerate(batch.indices):
            tokens[i], attention[i], scores[i] = hyp.tokens[k], hyp.attention[k], hyp.scores[k]
            n_best[i] = hyp.n_best[k] if hyp.n_best else [hyp.tokens[k]]
    return Hypotheses(tokens, attention, scores, n_best)


def ids_to_tokens(ids: Sequence[int], trg_vocab: Vocabulary, src_oov: Sequence[str] | None = None) -> list[str]:
    """Target ids -> tokens; extended ids (copy model) become the copied source words."""
    base = len(trg_vocab)
    out = []
    for i in ids:
        if i >= base and src_oov is not None and i - base < len(src_oov):
            out.append(src_oov[i - base])
        else:
            out.extend(trg_vocab.decode([i]) if i >= base else [trg_vocab.itos[i]])
    return out
