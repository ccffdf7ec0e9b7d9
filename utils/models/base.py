"""The interface every model shares: read the docstring once, then write the code one token at a time.

Every model offers
- ``encode(src, src_lengths) -> state``: run the encoder once per batch of docstrings;
- ``decode_step(y_prev, state) -> (scores [B, V], state, attention [B, S] | None)``: one decoder step,
  used by greedy and beam search and by inference;
- ``forward(src, src_lengths, trg_in, teacher_forcing, ...) -> (scores [B, T, V], attention [B, T, S] | None)``:
  the decoder over a whole target, each step reading the reference token or, where teacher forcing
  does not, its own previous argmax;
- ``loss(batch, teacher_forcing, generator, smoothing) -> (summed cross-entropy, number of target tokens)``.

Scores are logits, or log-probabilities over the extended vocabulary for the copy model. Teacher
forcing is decided once per decoder step for the whole batch (the classic tutorial rule), from a
generator the trainer seeds. Training on a CPU takes a faster route to the same loss (``utils.fast``,
chosen by ``Seq2SeqConfig.fast_path``); tests check that both give the same losses, scores and
gradients, so a reader never needs to open it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.config import Seq2SeqConfig
from utils.data.batch import Batch
from utils.data.vocabulary import PAD, UNK

Hidden = Tensor | tuple[Tensor, Tensor]  # [L, B, H], or (h, c) for an LSTM


class State(Protocol):
    """What a decoder step reads and returns (each model family has its own dataclass)."""

    def select(self, rows: Tensor) -> "State":
        """Keep (and reorder or repeat) batch rows ``rows``: beam search and shrinking batches."""
        ...


def select_hidden(hidden: Hidden, rows: Tensor) -> Hidden:
    """Rows ``rows`` of recurrent states [L, B, H] (both of an LSTM's pair)."""
    if isinstance(hidden, tuple):
        return tuple(h.index_select(1, rows) for h in hidden)  # type: ignore[return-value]
    return hidden.index_select(1, rows)


def run_packed(rnn: nn.RNNBase, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Hidden]:
    """A batch-first ``nn.RNN`` / ``nn.LSTM`` over the real tokens of emb [B, S, E] (lengths [B]):
    (outputs [B, S, D*H], zero on padding; final states [L*D, B, H])."""
    packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, hidden = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))
    return out, hidden


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


class Seq2SeqModel(nn.Module):
    """The shared loop: ``forward`` runs ``decode_step`` over the target; ``loss`` is its cross-entropy."""

    config: Seq2SeqConfig
    has_attention: bool = False
    uses_copy: bool = False

    def encode(self, src: Tensor, src_lengths: Tensor) -> State:
        """Read the sources [B, S] (real lengths [B]) once: the state the first decoder step starts from."""
        raise NotImplementedError

    def decode_step(self, y_prev: Tensor, state: State) -> tuple[Tensor, State, Tensor | None]:
        """Previous tokens [B] -> (scores [B, V(+OOV)], next state, attention [B, S] or None)."""
        raise NotImplementedError

    def encode_batch(self, src: Tensor, src_lengths: Tensor, src_ext: Tensor | None = None,
                     n_oov: int = 0) -> State:
        """``encode``; the copy model's state also gets the batch's extended source ids [B, S]."""
        state = self.encode(src, src_lengths)
        return replace(state, src_ext=src_ext, n_oov=n_oov) if self.uses_copy else state

    def next_input(self, scores: Tensor) -> Tensor:
        """The token a step feeds to the next where teacher forcing does not: the argmax [B] of its
        scores [B, V(+OOV)], a copied (extended) id read back as <UNK>."""
        pred = scores.argmax(-1)
        return pred.masked_fill(pred >= self.config.trg_vocab_size, UNK)

    def forward(self, src: Tensor, src_lengths: Tensor, trg_in: Tensor, teacher_forcing: float = 1.0,
                generator: torch.Generator | None = None, src_ext: Tensor | None = None,
                n_oov: int = 0) -> tuple[Tensor, Tensor | None]:
        """Scores [B, T, V] and attention [B, T, S] (None without attention) for the inputs trg_in [B, T]."""
        T = trg_in.size(1)
        tf = teacher_forcing_mask(T, teacher_forcing, generator)
        state = self.encode_batch(src, src_lengths, src_ext, n_oov)
        y = trg_in[:, 0]  # <SOS>
        scores, attention = [], []
        for t in range(T):
            step_scores, state, weights = self.decode_step(y, state)  # [B, V], [B, S] | None
            scores.append(step_scores)
            attention.append(weights)
            if t + 1 < T:
                y = trg_in[:, t + 1] if tf[t + 1] else self.next_input(step_scores)
        attn = torch.stack(attention, 1) if self.has_attention else None
        return torch.stack(scores, 1), attn

    def loss_targets(self, batch: Batch) -> Tensor:
        """The ids [B, T] the loss scores: the copy model's extended ids, the target ids otherwise."""
        return batch.trg_out

    def loss(self, batch: Batch, teacher_forcing: float = 1.0, generator: torch.Generator | None = None,
             smoothing: float = 0.0) -> tuple[Tensor, int]:
        """Summed cross-entropy over the real target tokens (label-smoothed by ``smoothing``), and their number."""
        scores, _ = self(batch.src, batch.src_lengths, batch.trg_in, teacher_forcing, generator, batch.src_ext,
                         batch.n_oov)                                # [B, T, V(+OOV)]
        targets = self.loss_targets(batch)                           # [B, T]
        real = targets != PAD
        # the copy model's scores are log-probabilities: their log-softmax is themselves
        total = F.cross_entropy(scores[real], targets[real], reduction="sum", label_smoothing=smoothing)
        return total, int(real.sum())

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
