"""The sequence-to-sequence models, one interface for all.

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

import math
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from utils.batch import Batch
from utils.config import Seq2SeqConfig
from utils.layers import (
    Dropout,
    LoopEmbedding,
    LoopMemory,
    LoopWeight,
    linear_cross_entropy,
    linear_into,
    missing_ranges,
    use_fast_dropout,
)
from utils.precision import compute_dtype
from utils.recurrent import StackWeights, active_rows, first_rows, run_encoder, stack_hidden
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


class RecurrentSeq2Seq(Seq2SeqModel):
    """Encoder RNN -> final hidden state -> decoder RNN (no attention). ``cell`` is rnn or lstm."""

    cell = "rnn"

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        rnn = _rnn_class(self.cell)
        drop = c.dropout if c.num_layers > 1 else 0.0
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.embed_dim, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, c.embed_dim, padding_idx=PAD)
        self.encoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.decoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.dropout = Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.trg_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """The encoder's final hidden state (per layer) starts the decoder."""
        emb = self.dropout(self.src_embedding(src))  # [B, S, E]
        _, hidden = run_encoder(self.encoder, emb, src_lengths, self.dropout)  # [L, B, H] (x2 for LSTM)
        return DecoderState(hidden=hidden, src_mask=src != PAD)

    def decode_step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, None]:
        """One step of the decoder stack, then the output layer; no attention."""
        w = self._decoding_weights(lambda: StackWeights.of_module(self.decoder))
        emb = self.dropout(self.trg_embedding(y_prev))  # [B, E]
        out, hidden = w.step(w.input_gates(emb), state.hidden, self.dropout)  # [B, H]
        return self.out(out), replace(state, hidden=stack_hidden(hidden)), None

    def _run_decoder(self, state, trg_in, tf, active, predict):
        T = trg_in.size(1)
        w = StackWeights.of_module(self.decoder)
        emb_all = self.dropout(self.trg_embedding(trg_in))  # [B, T, E]
        # layer 0's input products for every teacher-forced step at once; unbind (not per-step
        # slicing) so that backward stacks the step gradients once
        gate_steps = w.input_gates(emb_all).unbind(1)      # T x [B, G]
        lookup = LoopEmbedding(self.trg_embedding)          # for the predicted tokens
        hidden = state.hidden
        outs = []
        pred: Tensor | None = None
        for t in range(T):
            n = active[t]
            if n == 0:
                break
            hidden = first_rows(hidden, n)
            if tf[t] or pred is None:
                gates0 = gate_steps[t][:n]
            else:
                gates0 = w.input_gates(self.dropout(lookup(pred[:n])))
            out, hidden = w.step(gates0, hidden, self.dropout)  # [n, H]
            outs.append(out)
            if t + 1 < T and not tf[t + 1]:
                pred = predict(out, t, None)
        return DecoderRun(outs)


class VanillaRNNSeq2Seq(RecurrentSeq2Seq):
    """``nn.RNN`` encoder and decoder; the decoder starts from the encoder's final hidden state."""

    cell = "rnn"


class LSTMSeq2Seq(RecurrentSeq2Seq):
    """``nn.LSTM`` encoder and decoder; hidden and cell state passed on."""

    cell = "lstm"


class BahdanauAttention(nn.Module):
    """Additive attention ``v^T tanh(W_q s + W_k h_j)``, masked over padding."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.key_proj = nn.Linear(key_dim, attn_dim, bias=False)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def compute_keys(self, enc_out: Tensor) -> Tensor:
        """Project the encoder states once per batch: [B, S, D] -> [B, S, A]."""
        return self.key_proj(enc_out)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor | LoopMemory, mask: Tensor,
                query_proj: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """query [n, Hq], keys [n, S, A], values [n, S, D] (or a ``LoopMemory`` over them), mask [n, S]
        -> (context [n, D], weights [n, S])."""
        q = (query_proj or self.query_proj)(query)                       # [n, A]
        energy = torch.tanh(keys + q.unsqueeze(1))                       # [n, S, A]
        scores = self.v(energy).squeeze(2).float().masked_fill(~mask, float("-inf"))  # [n, S]
        weights = torch.softmax(scores, dim=1)                   # [n, S], float32 under autocast too
        if isinstance(values, LoopMemory):
            return values.attend(weights), weights
        context = torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)  # [n, D]
        return context, weights


class AttentionSeq2Seq(Seq2SeqModel):
    """Bidirectional LSTM encoder, Bahdanau attention, LSTM decoder reading [embedding; context].

    The output layer reads [decoder state; context; embedding]; the decoder's initial state is a
    learned bridge (tanh of a linear map) from the encoder's final forward and backward states.
    """

    has_attention = True

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        E, H, L = c.embed_dim, c.hidden_dim, c.num_layers
        self.src_embedding = nn.Embedding(c.src_vocab_size, E, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, E, padding_idx=PAD)
        self.encoder = nn.LSTM(E, H, L, batch_first=True, bidirectional=True,
                               dropout=c.dropout if L > 1 else 0.0)
        self.bridge_h = nn.Linear(2 * H, H)
        self.bridge_c = nn.Linear(2 * H, H)
        self.attention = BahdanauAttention(H, 2 * H, H)
        # Decoder LSTM written out per layer: layer 0 reads [embedding; context]. Its input weight
        # is kept in two parts so the embedding part is applied to all teacher-forced steps at once.
        self.dec_cells = nn.ModuleList(
            [nn.LSTMCell(E + 2 * H if layer == 0 else H, H) for layer in range(L)])
        self.dropout = Dropout(c.dropout)
        self.out_dim = H + 2 * H + E
        self.out = nn.Linear(self.out_dim, c.trg_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """Encoder states, their attention keys (projected once), the bridged initial state, the mask."""
        B, S = src.shape
        emb = self.dropout(self.src_embedding(src))  # [B, S, E]
        enc_out, (h, c) = run_encoder(self.encoder, emb, src_lengths, self.dropout)  # [B, S, 2H]
        L = self.config.num_layers
        h = h.view(L, 2, B, -1)  # [L, dir, B, H]
        c = c.view(L, 2, B, -1)
        h0 = torch.tanh(self.bridge_h(torch.cat([h[:, 0], h[:, 1]], -1)))  # [L, B, H]
        c0 = torch.tanh(self.bridge_c(torch.cat([c[:, 0], c[:, 1]], -1)))  # [L, B, H]
        keys = self.attention.compute_keys(enc_out)  # [B, S, A]
        return DecoderState(hidden=(h0, c0), enc_out=enc_out, keys=keys, src_mask=src != PAD)

    def _step_weights(self) -> tuple[StackWeights, LoopWeight]:
        """The decoder stack's weights and the attention query projection, regrouped once per pass."""
        layers = [(c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh) for c in self.dec_cells]
        return (StackWeights.build(layers, self.config.embed_dim, lstm=True),
                LoopWeight(self.attention.query_proj.weight))

    def _cell_step(self, gates0: Tensor, emb: Tensor, hidden: tuple[Tensor, Tensor],
                   memory: tuple, w: tuple[StackWeights, LoopWeight]):
        """One decoder step. ``gates0`` [n, 4H] = layer 0's embedding part plus its biases;
        ``memory`` = (keys [n, S, A], encoder states [n, S, 2H] or a ``LoopMemory``, mask [n, S])."""
        stack, query = w
        context, weights = self.attention(hidden[0][-1], *memory, query_proj=query)  # [n, 2H], [n, S]
        x, hidden = stack.step(gates0, hidden, self.dropout, extra0=context)         # [n, H]
        features = torch.cat([x, context, emb], -1)  # [n, H + 2H + E]
        return features, hidden, weights

    def decode_step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """Attend with the top layer's state, step the stack on [embedding; context], project."""
        w = self._decoding_weights(self._step_weights)
        emb = self.dropout(self.trg_embedding(y_prev))  # [B, E]
        memory = (state.keys, state.enc_out, state.src_mask)
        feats, hidden, weights = self._cell_step(w[0].input_gates(emb), emb, state.hidden, memory, w)
        return self.project_step(feats, weights, state), replace(state, hidden=stack_hidden(hidden)), weights

    def _run_decoder(self, state, trg_in, tf, active, predict):
        T = trg_in.size(1)
        w = self._step_weights()
        emb_all = self.dropout(self.trg_embedding(trg_in))  # [B, T, E]
        gates_all = w[0].input_gates(emb_all)                # [B, T, 4H]: one product for all steps
        # unbind (not per-step slicing): backward then stacks the step gradients once
        emb_steps, gate_steps = emb_all.unbind(1), gates_all.unbind(1)  # T x [B, E], T x [B, 4H]
        values = LoopMemory(state.enc_out)
        lookup = LoopEmbedding(self.trg_embedding)  # for the predicted tokens
        memories: dict[int, tuple] = {}  # the first n rows, sliced once per n
        hidden = state.hidden
        feats, attns = [], []
        pred = None
        for t in range(T):
            n = active[t]
            if n == 0:
                break
            hidden = first_rows(hidden, n)
            if n not in memories:
                memories[n] = (state.keys[:n], values, state.src_mask[:n])
            if tf[t] or pred is None:
                emb, eg = emb_steps[t][:n], gate_steps[t][:n]
            else:
                emb = self.dropout(lookup(pred[:n]))
                eg = w[0].input_gates(emb)
            f, hidden, a = self._cell_step(eg, emb, hidden, memories[n], w)  # [n, F], [n, S]
            feats.append(f)
            attns.append(a)
            if t + 1 < T and not tf[t + 1]:
                pred = predict(f, t, a)
        return DecoderRun(feats, attns)


class CopyAttentionSeq2Seq(AttentionSeq2Seq):
    """Attention model with a copy (pointer-generator) mechanism.

    At every step a learned gate ``p_gen = sigmoid(w^T [s; c; e])`` mixes generating from the
    vocabulary with copying a source token through the attention distribution, over the target
    vocabulary extended by the out-of-vocabulary words of each source (ids ``V + k``). Scores are
    log-probabilities over that extended vocabulary, so copied identifiers come out as real names.
    """

    uses_copy = True
    linear_output = False

    def __init__(self, config: Seq2SeqConfig):
        super().__init__(config)
        self.gate = nn.Linear(self.out_dim, 1)

    def _mix(self, features: Tensor, attn: Tensor, src_ext: Tensor, n_oov: int) -> Tensor:
        """features [N, F], attn [N, S], src_ext [N, S] -> log-probabilities [N, V + n_oov]."""
        p_gen = torch.sigmoid(self.gate(features).float())                 # [N, 1]
        p_vocab = torch.softmax(self.out(features).float(), -1) * p_gen    # [N, V]
        p = F.pad(p_vocab, (0, n_oov))                                     # [N, V + n_oov]
        p = p.scatter_add(1, src_ext, attn * (1 - p_gen))                  # copy mass onto source ids
        return torch.log(p.clamp_min(1e-12))

    def _src_ext(self, state: DecoderState, n: int) -> Tensor:
        if state.src_ext is None:
            raise ValueError("The copy model needs the batch's extended source ids (make_batch of "
                             "examples built with encode_pairs(..., with_copy=True)).")
        return state.src_ext[:n]

    def project_step(self, feat_t: Tensor, attn_t: Tensor, state: DecoderState) -> Tensor:
        """Log-probabilities [n, V + OOV] of one step: generation and copying mixed."""
        return self._mix(feat_t, attn_t, self._src_ext(state, feat_t.size(0)), state.n_oov)

    def _src_ext_at(self, state: DecoderState, mask: Tensor) -> Tensor:
        """The extended source ids [N, S] of the rows of the positions ``mask`` [B, T] selects."""
        return self._src_ext(state, mask.size(0)).unsqueeze(1).expand(-1, mask.size(1), -1)[mask]

    def project_positions(self, features: Tensor, attn: Tensor, state: DecoderState, mask: Tensor) -> Tensor:
        """Log-probabilities [N, V + OOV] at the positions ``mask`` [B, T] selects."""
        return self._mix(features[mask], attn[mask], self._src_ext_at(state, mask), state.n_oov)

    def positions_nll(self, features: Tensor, attn: Tensor, state: DecoderState, mask: Tensor,
                      targets: Tensor, smoothing: float = 0.0) -> Tensor:
        """``-log p(y)`` with ``p(y) = p_gen softmax(out(f))_y + (1 - p_gen) sum_{j: src_j = y} a_j``,
        from each row's log-sum-exp and target logit: the same loss as the cross-entropy of
        ``project_positions`` (whose rows sum to 1), without building, scattering into and taking
        the log of the [N, V + OOV] distribution (a third less time for 4,000 target tokens).
        Label smoothing needs every column, so it takes the plain path over the extended vocabulary."""
        if smoothing:
            return super().positions_nll(features, attn, state, mask, targets, smoothing)
        V = self.config.trg_vocab_size
        src_ext = self._src_ext_at(state, mask)                                           # [N, S]
        feats, weights = features[mask], attn[mask]                                       # [N, F], [N, S]
        p_gen = torch.sigmoid(self.gate(feats).float()).squeeze(1)                         # [N]
        logits = self.out(feats).float()                                                   # [N, V]
        target_logit = logits.gather(1, targets.clamp_max(V - 1).unsqueeze(1)).squeeze(1)  # [N]
        p_vocab = torch.exp(target_logit - torch.logsumexp(logits, 1)) * (targets < V)     # [N]
        p_copy = (weights * (src_ext == targets.unsqueeze(1))).sum(1)                      # [N]
        p = p_gen * p_vocab + (1 - p_gen) * p_copy
        return -torch.log(p.clamp_min(1e-12)).sum()

    def loss_targets(self, batch: Batch) -> Tensor:
        if batch.trg_out_ext is None:
            raise ValueError("The copy model needs extended target ids: build examples with "
                             "encode_pairs(..., with_copy=True).")
        return batch.trg_out_ext


def sinusoidal_positions(n: int, dim: int) -> Tensor:
    """The fixed sine/cosine position table [n, dim] of Vaswani et al."""
    pos = torch.arange(n, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


class TransformerDecoderLayer(nn.Module):
    """Pre-norm decoder layer that also returns its cross-attention weights (averaged over heads)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(3)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, causal: Tensor, memory_pad: Tensor) -> tuple[Tensor, Tensor]:
        h = self.norms[0](x)
        x = x + self.dropout(self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0])
        h = self.norms[1](x)
        a, w = self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=True)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ff(self.norms[2](x)))
        return x, w  # [B, T, d], [B, T, S]

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention's keys and values of the encoder states, per head: 2 x [B, h, S, d/h]."""
        d = memory.size(-1)
        w, b = self.cross_attn.in_proj_weight[d:], self.cross_attn.in_proj_bias[d:]
        k, v = F.linear(memory, w, b).chunk(2, -1)  # [B, S, d] each
        return _split_heads(k, self.cross_attn.num_heads), _split_heads(v, self.cross_attn.num_heads)

    def step(self, x: Tensor, self_kv: tuple[Tensor, Tensor], memory_kv: tuple[Tensor, Tensor],
             memory_pad: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """One new position (inference, no dropout): x [B, 1, d] and the cached keys/values of the
        earlier positions [B, h, t, d/h] -> (x [B, 1, d], keys/values [B, h, t+1, d/h], cross-attention
        [B, S] averaged over heads). The same function as ``forward`` at the last position."""
        sa, ca = self.self_attn, self.cross_attn
        heads, d = sa.num_heads, x.size(-1)
        q, k, v = F.linear(self.norms[0](x), sa.in_proj_weight, sa.in_proj_bias).chunk(3, -1)  # [B, 1, d] each
        keys = torch.cat([self_kv[0], _split_heads(k, heads)], 2)    # [B, h, t+1, d/h]
        values = torch.cat([self_kv[1], _split_heads(v, heads)], 2)
        a = F.scaled_dot_product_attention(_split_heads(q, heads), keys, values)  # [B, h, 1, d/h]
        x = x + sa.out_proj(_merge_heads(a))
        q = F.linear(self.norms[1](x), ca.in_proj_weight[:d], ca.in_proj_bias[:d])  # [B, 1, d]
        scores = _split_heads(q, heads) @ memory_kv[0].transpose(2, 3) / math.sqrt(d // heads)  # [B, h, 1, S]
        w = torch.softmax(scores.float().masked_fill(memory_pad[:, None, None, :], float("-inf")), -1)
        x = x + ca.out_proj(_merge_heads(w @ memory_kv[1]))
        x = x + self.ff(self.norms[2](x))
        return x, (keys, values), w.mean(1)[:, 0]


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, L, d] -> [B, h, L, d/h]."""
    B, L, d = x.shape
    return x.view(B, L, heads, d // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """[B, h, L, d/h] -> [B, L, d]."""
    B, h, L, dh = x.shape
    return x.transpose(1, 2).reshape(B, L, h * dh)


class TransformerSeq2Seq(Seq2SeqModel):
    """A small pre-norm encoder-decoder Transformer with sinusoidal positions.

    Width ``hidden_dim``, ``num_layers`` layers each side, ``n_heads`` heads, ``ff_dim`` inner size.
    With full teacher forcing all decoder steps run in parallel; the heatmaps read the last layer's
    cross-attention averaged over heads. In eval mode ``decode_step`` runs only the new position,
    reading the earlier positions' self-attention keys/values and the encoder states' cross-attention
    keys/values from ``DecoderState.cache``; in training mode it re-runs the prefix.
    """

    has_attention = True

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        d = c.hidden_dim
        if d % c.n_heads:
            raise ValueError(f"hidden_dim ({d}) must be divisible by n_heads ({c.n_heads}).")
        self.src_embedding = nn.Embedding(c.src_vocab_size, d, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, d, padding_idx=PAD)
        for emb in (self.src_embedding, self.trg_embedding):  # N(0, 1/d): scaled by sqrt(d), unit size
            nn.init.normal_(emb.weight, 0.0, d ** -0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()
        self.register_buffer("positions", sinusoidal_positions(c.max_positions, d), persistent=False)
        layer = nn.TransformerEncoderLayer(d, c.n_heads, c.ff_dim, c.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder_layers = nn.ModuleList(
            [TransformerDecoderLayer(d, c.n_heads, c.ff_dim, c.dropout) for _ in range(c.num_layers)])
        self.final_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(d, c.trg_vocab_size)
        use_fast_dropout(self)  # the attention weights' own dropout (inside nn.MultiheadAttention) stays

    def _embed(self, emb: nn.Embedding, ids: Tensor, start: int = 0) -> Tensor:
        """ids [B, L] at positions start .. start + L - 1 -> scaled embeddings plus positions [B, L, d]."""
        end = start + ids.size(1)
        if end > self.positions.size(0):
            raise ValueError(f"Sequence of {end} tokens exceeds max_positions={self.positions.size(0)}.")
        x = emb(ids) * math.sqrt(self.config.hidden_dim) + self.positions[start:end]
        return self.dropout(x)  # [B, L, d]

    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """Encoder layers over the sources: the memory [B, S, d] and its mask (decoding caches its keys
        and values at the first step)."""
        mask = src != PAD
        memory = self.encoder(self._embed(self.src_embedding, src), src_key_padding_mask=~mask)  # [B, S, d]
        prev = src.new_empty(src.size(0), 0)
        return DecoderState(hidden=None, enc_out=memory, src_mask=mask, prev=prev)

    def _decode(self, trg_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """All steps at once: trg_in [B, T] -> (features [B, T, d], cross-attention [B, T, S])."""
        T = trg_in.size(1)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=trg_in.device), 1)
        x = self._embed(self.trg_embedding, trg_in)
        w = None
        for layer in self.decoder_layers:
            x, w = layer(x, state.enc_out, causal, ~state.src_mask)
        return self.final_norm(x), w

    def decode_step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """One position: self-attention over the cached keys and values of the earlier ones."""
        prev = torch.cat([state.prev, y_prev.unsqueeze(1)], 1)  # [B, t]
        if self.training:  # dropout (attention weights' too) as in training: re-run the prefix
            feats, w = self._decode(prev, state)
            return self.out(feats[:, -1]), replace(state, prev=prev), w[:, -1]
        cache = state.cache
        if not cache:  # first step: the encoder states' keys/values, and no earlier positions
            empty = state.enc_out.new_zeros(prev.size(0), self.config.n_heads, 0,
                                            self.config.hidden_dim // self.config.n_heads)
            cache = tuple(kv for layer in self.decoder_layers for kv in (empty, empty, *layer.memory_kv(state.enc_out)))
        x = self._embed(self.trg_embedding, y_prev.unsqueeze(1), start=prev.size(1) - 1)  # [B, 1, d]
        memory_pad = ~state.src_mask
        new_cache: list[Tensor] = []
        for i, layer in enumerate(self.decoder_layers):
            sk, sv, mk, mv = cache[4 * i : 4 * i + 4]
            x, (sk, sv), w = layer.step(x, (sk, sv), (mk, mv), memory_pad)
            new_cache += [sk, sv, mk, mv]
        logits = self.out(self.final_norm(x[:, 0]))  # [B, V]
        return logits, replace(state, prev=prev, cache=tuple(new_cache)), w

    def _run_decoder(self, state, trg_in, tf, active, predict):
        if all(tf):
            return DecoderRun(*self._decode(trg_in, state))
        # Mixed teacher forcing: the prefix must be built step by step from the model's own outputs.
        T = trg_in.size(1)
        columns = [trg_in[:, 0]]
        for t in range(T - 1):
            if tf[t + 1]:
                columns.append(trg_in[:, t + 1])
            else:
                feats, w = self._decode(torch.stack(columns, 1), state)
                columns.append(predict(feats[:, -1], t, w[:, -1]))
        return DecoderRun(*self._decode(torch.stack(columns, 1), state))


MODEL_CLASSES: dict[str, type[Seq2SeqModel]] = {
    "rnn": VanillaRNNSeq2Seq,
    "lstm": LSTMSeq2Seq,
    "attention": AttentionSeq2Seq,
    "copy": CopyAttentionSeq2Seq,
    "transformer": TransformerSeq2Seq,
}


def build_model(config: Seq2SeqConfig) -> Seq2SeqModel:
    """Instantiate the model named by ``config.model``."""
    if config.src_vocab_size <= 4 or config.trg_vocab_size <= 4:
        raise ValueError("Vocabulary sizes must be set in the config (src_vocab_size, trg_vocab_size).")
    try:
        cls = MODEL_CLASSES[config.model]
    except KeyError:
        raise ValueError(f"Unknown model {config.model!r}; choose one of {', '.join(MODEL_CLASSES)}.") from None
    return cls(config)
