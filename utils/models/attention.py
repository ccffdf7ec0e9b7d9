"""Bahdanau (additive) attention, the LSTM decoder that attends over the encoder's outputs, and the
copy (pointer-generator) model built on it."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.batch import Batch
from utils.config import Seq2SeqConfig
from utils.layers import (
    Dropout,
    LoopEmbedding,
    LoopMemory,
    LoopWeight,
)
from utils.models.base import DecoderRun, DecoderState, Seq2SeqModel
from utils.recurrent import StackWeights, first_rows, run_encoder, stack_hidden
from utils.vocabulary import PAD


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
