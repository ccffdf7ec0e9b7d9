"""The interface every model shares, the decoder state, and the training pass they have in common.

Every model offers
- ``encode(src, src_lengths) -> DecoderState``: run the encoder once per batch;
- ``decode_step(y_prev, state) -> (logits [B, V], state, attention [B, S] | None)``: one decoder
  step, used by greedy and beam search and by inference;
- ``forward(src, src_lengths, trg_in, teacher_forcing) -> (logits [B, T, V], attention)``;
- ``loss(batch, teacher_forcing, generator) -> (summed NLL, number of target tokens)``: the fast
  training path, which projects to the vocabulary only where it must.

Teacher forcing is decided once per decoder step for the whole batch (the classic tutorial rule),
from a generator the trainer seeds. What the training pass does to be fast without changing the
function it computes:
- inputs known in advance are projected for all steps at once (embedding part of layer 0's gates,
  attention keys once per batch); decoder rows that have ended drop out of the batch;
- the encoder runs step by step over length-sorted rows (``utils.recurrent``) rather than through
  the packed CPU module, whose backward is quadratic in the source length;
- weights, encoder states and embeddings used at every step get their gradient in one product
  after the loop (``utils.layers.LoopWeight`` / ``LoopMemory`` / ``LoopEmbedding``);
- the vocabulary projection, the most expensive layer, runs without gradient only at the steps
  whose argmax feeds the next input, writing into the loss's logits buffer; the loss projects the
  other real (non-pad) positions into the same buffer (``utils.layers.linear_cross_entropy``). The
  decoder's steps are kept as they come, [n_t, F] for the n_t rows still decoding, and joined
  time-major for the loss (the layout of a ``PackedSequence``), never padded to [B, T, F] first.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from utils.batch import Batch
from utils.config import Seq2SeqConfig
from utils.layers import (
    linear_cross_entropy,
    linear_into,
    missing_ranges,
)
from utils.precision import compute_dtype
from utils.recurrent import active_rows
from utils.vocabulary import PAD, UNK

Hidden = Tensor | tuple[Tensor, Tensor]


@dataclass
class DecoderState:
    """What a decoder step needs: recurrent state plus the encoder's outputs (batch-first)."""

    hidden: Hidden | None            # [L, B, H] (tuple of two for LSTMs)
    enc_out: Tensor | None = None    # [B, S, D]
    keys: Tensor | None = None       # [B, S, A]  attention keys, projected once per batch
    src_mask: Tensor | None = None   # [B, S] True on real tokens
    src_ext: Tensor | None = None    # [B, S] extended ids (copy model)
    n_oov: int = 0
    prev: Tensor | None = None       # [B, t] tokens so far (Transformer)
    cache: tuple[Tensor, ...] = ()   # batch-first tensors a decoder keeps between steps (Transformer)

    def select(self, idx: Tensor) -> "DecoderState":
        """Keep (and reorder / repeat) batch rows ``idx`` — beam search and shrinking batches."""
        def sel_h(h: Hidden | None) -> Hidden | None:
            if h is None:
                return None
            if isinstance(h, tuple):
                return tuple(x.index_select(1, idx) for x in h)  # type: ignore[return-value]
            return h.index_select(1, idx)

        sel = lambda t: None if t is None else t.index_select(0, idx)  # noqa: E731
        return DecoderState(sel_h(self.hidden), sel(self.enc_out), sel(self.keys),
                            sel(self.src_mask), sel(self.src_ext), self.n_oov, sel(self.prev),
                            tuple(sel(t) for t in self.cache))


@dataclass
class DecoderRun:
    """The decoder's features (and attention) over rows sorted by target length (descending):
    per step, ``feats[t]`` [n_t, F] for the n_t rows still decoding (recurrent decoders), or dense
    [B, T, F] with anything at padded positions (the Transformer)."""

    feats: list[Tensor] | Tensor
    attn: list[Tensor] | Tensor | None = None

    def dense(self, B: int, T: int) -> tuple[Tensor, Tensor | None]:
        """(features [B, T, F], attention [B, T, S] | None), zero where a row has ended."""
        def pad(x: list[Tensor] | Tensor | None) -> Tensor | None:
            if x is None or isinstance(x, Tensor):
                return x
            steps = torch.stack([F.pad(s, (0, 0, 0, B - s.size(0))) for s in x], 1)  # [B, T_run, D]
            return steps if steps.size(1) == T else F.pad(steps, (0, 0, 0, T - steps.size(1)))
        return pad(self.feats), pad(self.attn)

    def packed(self, lengths: Tensor) -> Tensor:
        """Features of the real positions, time-major [N, F]: step 0's rows, then step 1's, ..."""
        if isinstance(self.feats, Tensor):
            return pack_padded_sequence(self.feats, lengths.cpu(), batch_first=True).data
        return torch.cat(self.feats)


def teacher_forcing_mask(steps: int, ratio: float, generator: torch.Generator | None) -> list[bool]:
    """Per-step decisions: True where step t reads the reference token (step 0 always reads <SOS>)."""
    if ratio >= 1.0:
        return [True] * steps
    if ratio <= 0.0:
        draws = [False] * steps
    else:
        draws = (torch.rand(steps, generator=generator) < ratio).tolist()
    draws[0] = True
    return draws


def _rnn_class(cell: str) -> type[nn.RNNBase]:
    return {"rnn": nn.RNN, "lstm": nn.LSTM}[cell]


def _target_lengths(trg_in: Tensor) -> Tensor:
    return (trg_in != PAD).sum(1)  # [B]


class Seq2SeqModel(nn.Module):
    """Shared machinery: the teacher-forcing loop, loss and full-logits forward."""

    config: Seq2SeqConfig
    has_attention: bool = False
    uses_copy: bool = False
    linear_output: bool = True  # scores are ``self.out(features)`` (the fused loss applies)

    # -- to be provided by subclasses ------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """Read the sources [B, S] (real lengths [B]) once: the state the first decoder step starts from."""
        raise NotImplementedError

    def decode_step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One free-running step: previous tokens [n] -> (scores [n, V(+OOV)], next state, attention [n, S]
        or None)."""
        raise NotImplementedError

    def project(self, features: Tensor) -> Tensor:
        """Decoder features [..., F] -> vocabulary logits [..., V]."""
        return self.out(features)

    def _run_decoder(self, state: DecoderState, trg_in: Tensor, tf: list[bool], active: list[int],
                     predict: Callable[[Tensor, int, Tensor | None], Tensor]) -> DecoderRun:
        """The decoder over rows sorted by length (descending), teacher-forced at the steps ``tf`` marks;
        ``active[t]`` rows are still decoding at step t.

        ``predict(features_t [n, F], t, attention_t [n, S] | None)`` returns the argmax tokens fed
        to step t + 1 when that step is not teacher-forced.
        """
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------
    def _decode_sorted(self, src, src_lengths, trg_in, teacher_forcing, generator, src_ext=None, n_oov=0,
                       logits_buffer: bool = False):
        """Encode, then run the decoder over rows sorted by target length (descending).

        Returns (order, lengths, run, state, logits, filled) in sorted order. With ``logits_buffer``
        (models whose scores are ``self.out(features)``), the logits computed to pick the next input
        are written into ``logits`` [N, V], one row per real target position in time-major order
        (as ``DecoderRun.packed``), at the [start, end) row ranges ``filled`` lists; otherwise
        ``logits`` is None.
        """
        lengths = _target_lengths(trg_in)
        order = torch.argsort(lengths, descending=True, stable=True)
        src, trg_in, lengths = src[order], trg_in[order], lengths[order]
        src_lengths = src_lengths[order.cpu()]
        if src_ext is not None:
            src_ext = src_ext[order]
        state = self.encode(src, src_lengths)
        state.src_ext, state.n_oov = src_ext, n_oov
        tf = teacher_forcing_mask(trg_in.size(1), teacher_forcing, generator)
        sizes = active_rows(lengths, trg_in.size(1))  # rows still decoding at each step
        starts = list(accumulate(sizes, initial=0))    # where each step's rows begin, time-major
        logits = (self.out.weight.new_empty(starts[-1], self.out.out_features)
                  if logits_buffer and self.linear_output else None)
        filled: list[tuple[int, int]] = []

        def predict(feat_t: Tensor, t: int, attn_t: Tensor | None) -> Tensor:
            n = sizes[t]
            with torch.no_grad():  # the argmax needs no gradient; the loss reuses these logits
                if logits is not None:
                    scores = logits[starts[t] : starts[t] + n]  # [n, V]: the rows of step t
                    linear_into(scores, feat_t[:n], self.out.weight, self.out.bias)
                    filled.append((starts[t], starts[t] + n))
                else:
                    scores = self.project_step(feat_t, attn_t, state)  # [n, V(+OOV)]
            pred = scores.max(-1).indices  # the first maximum, as argmax, but faster on CPU
            if pred.size(0) < feat_t.size(0):  # rows that have ended (a dense decoder): any token
                pred = F.pad(pred, (0, feat_t.size(0) - pred.size(0)), value=PAD)
            # extended (copied) ids are read back as <UNK> by the embedding
            return pred.masked_fill(pred >= self.config.trg_vocab_size, UNK)

        run = self._run_decoder(state, trg_in, tf, sizes, predict)
        return order, lengths, run, state, logits, filled

    def project_step(self, feat_t: Tensor, attn_t: Tensor | None, state: DecoderState) -> Tensor:
        """Features of one step [n, F] (and its attention [n, S]) -> scores [n, V(+OOV)]."""
        return self.project(feat_t)

    def project_positions(self, features: Tensor, attn: Tensor | None, state: DecoderState,
                          mask: Tensor) -> Tensor:
        """Scores [N, V(+OOV)] for the positions selected by ``mask`` [B, T] (sorted rows)."""
        return self.project(features[mask])

    def loss_targets(self, batch: Batch) -> Tensor:
        return batch.trg_out  # [B, T]

    def positions_nll(self, features: Tensor, attn: Tensor | None, state: DecoderState, mask: Tensor,
                      targets: Tensor, smoothing: float = 0.0) -> Tensor:
        """Summed negative log-likelihood of ``targets`` [N] at the positions ``mask`` [B, T] selects
        (the loss of models whose scores are not one linear layer), label-smoothed by ``smoothing``."""
        return F.cross_entropy(self.project_positions(features, attn, state, mask), targets, reduction="sum",
                               label_smoothing=smoothing)

    def forward(self, src: Tensor, src_lengths: Tensor, trg_in: Tensor, teacher_forcing: float = 1.0,
                generator: torch.Generator | None = None, src_ext: Tensor | None = None,
                n_oov: int = 0) -> tuple[Tensor, Tensor | None]:
        """Scores [B, T, V] (and attention [B, T, S]) in the caller's row order.

        Scores are logits, or log-probabilities over the extended vocabulary for the copy model.
        """
        order, _, run, state, _, _ = self._decode_sorted(src, src_lengths, trg_in, teacher_forcing,
                                                         generator, src_ext, n_oov)
        features, attn = run.dense(*trg_in.shape)  # [B, T, F], [B, T, S]
        full = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        logits = self.project_positions(features, attn, state, full).view(*features.shape[:2], -1)  # [B, T, V]
        inv = torch.argsort(order)
        return logits[inv], (attn[inv] if attn is not None else None)

    def loss(self, batch: Batch, teacher_forcing: float = 1.0, generator: torch.Generator | None = None,
             smoothing: float = 0.0) -> tuple[Tensor, int]:
        """Summed cross-entropy over real target tokens (label-smoothed by ``smoothing``), and their number."""
        order, lengths, run, state, logits, filled = self._decode_sorted(
            batch.src, batch.src_lengths, batch.trg_in, teacher_forcing, generator, batch.src_ext, batch.n_oov,
            logits_buffer=True)
        trg_out = self.loss_targets(batch)[order]  # [B, T]
        if logits is None:  # scores that are not one linear layer: over the real positions of [B, T]
            features, attn = run.dense(*trg_out.shape)
            mask = trg_out != PAD  # [B, T]
            return self.positions_nll(features, attn, state, mask, trg_out[mask], smoothing), int(mask.sum())
        targets = pack_padded_sequence(trg_out, lengths.cpu(), batch_first=True).data  # [N], time-major
        total = linear_cross_entropy(run.packed(lengths), self.out, targets, logits,
                                     missing_ranges(filled, logits.size(0)), smoothing)
        return total, targets.numel()

    def _decoding_weights(self, build: Callable[[], object]):
        """``build()`` (weights regrouped for stepping) once per parameter state while no gradient is
        recorded (decoding calls ``decode_step`` many times); rebuilt at every call otherwise."""
        if torch.is_grad_enabled():
            return build()
        # the weights are cast to the autocast dtype (if any) when built: part of the key
        key = (compute_dtype(self.out.weight.device.type), *((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_weights_cache")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_weights_cache"] = (key, build())
        return cached[1]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
