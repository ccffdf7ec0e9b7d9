"""Bahdanau (additive) attention, the LSTM decoder that attends over the encoder's outputs
(Bahdanau et al., 2015), and the copy (pointer-generator) model built on it (See et al., 2017)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.data.batch import Batch
from utils.data.vocabulary import PAD
from utils.models.base import Seq2SeqModel, run_packed


@dataclass
class AttentionState:
    """The decoder's state and what it attends over."""

    hidden: tuple[Tensor, Tensor]   # the decoder's (h, c), each [L, B, H]
    enc_out: Tensor                 # [B, S, 2H]  encoder states: the attention's values
    keys: Tensor                    # [B, S, A]   their projection, once per batch
    src_mask: Tensor                # [B, S]      True on real tokens
    src_ext: Tensor | None = None   # [B, S]      extended source ids (copy model)
    n_oov: int = 0                  # source words outside the target vocabulary (copy model)

    def select(self, rows: Tensor) -> "AttentionState":
        pick = lambda t: None if t is None else t.index_select(0, rows)  # noqa: E731
        return AttentionState(tuple(h.index_select(1, rows) for h in self.hidden), pick(self.enc_out),
                              pick(self.keys), pick(self.src_mask), pick(self.src_ext), self.n_oov)


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

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query s [B, Hq], keys W_k h [B, S, A], values h [B, S, D], mask [B, S] -> (context [B, D],
        weights [B, S]): e_j = v^T tanh(W_q s + W_k h_j), a = softmax(e) over the real tokens,
        context = sum_j a_j h_j."""
        weights = self.weights(self.query_proj(query), keys, mask)                     # [B, S]
        context = torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)  # [B, D]
        return context, weights

    def weights(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """The attention weights [B, S] of a projected query W_q s [B, A] over keys [B, S, A]."""
        energy = torch.tanh(keys + query.unsqueeze(1))                                 # [B, S, A]
        scores = self.v(energy).squeeze(2).float().masked_fill(~mask, float("-inf"))  # [B, S]
        return torch.softmax(scores, dim=1)  # float32 under autocast too


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
        self.src_embedding = nn.Embedding(c.source_symbols, E, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, E, padding_idx=PAD)
        self.encoder = nn.LSTM(E, H, L, batch_first=True, bidirectional=True,
                               dropout=c.dropout if L > 1 else 0.0)
        self.bridge_h = nn.Linear(2 * H, H)
        self.bridge_c = nn.Linear(2 * H, H)
        self.attention = BahdanauAttention(H, 2 * H, H)
        # The decoder's layers as cells: layer 0 reads [embedding; context] at every step.
        self.dec_cells = nn.ModuleList(
            [nn.LSTMCell(E + 2 * H if layer == 0 else H, H) for layer in range(L)])
        self.dropout = nn.Dropout(c.dropout)
        self.out_dim = H + 2 * H + E
        self.out = nn.Linear(self.out_dim, c.trg_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> AttentionState:
        """Encoder states, their attention keys (projected once), the bridged initial state, the mask."""
        emb = self.dropout(self.src_embedding(src))                 # [B, S, E]
        enc_out, (h, c) = run_packed(self.encoder, emb, src_lengths)  # [B, S, 2H], 2 x [2L, B, H]
        return self.start_state(src, enc_out, h, c)

    def start_state(self, src: Tensor, enc_out: Tensor, h: Tensor, c: Tensor) -> AttentionState:
        """The decoder's first state from the encoder's final states h, c [2L, B, H] (per layer, the
        forward and backward directions): s_0 = tanh(W [h_fwd; h_bwd] + b), likewise the cell."""
        L, B = self.config.num_layers, src.size(0)
        h, c = h.view(L, 2, B, -1), c.view(L, 2, B, -1)                    # [L, dir, B, H]
        h0 = torch.tanh(self.bridge_h(torch.cat([h[:, 0], h[:, 1]], -1)))  # [L, B, H]
        c0 = torch.tanh(self.bridge_c(torch.cat([c[:, 0], c[:, 1]], -1)))  # [L, B, H]
        keys = self.attention.compute_keys(enc_out)                         # [B, S, A]
        return AttentionState((h0, c0), enc_out, keys, src != PAD)

    def decode_step(self, y_prev: Tensor, state: AttentionState) -> tuple[Tensor, AttentionState, Tensor]:
        """Attend with the top layer's previous state, step the LSTM layers on [embedding; context],
        score [top state; context; embedding]."""
        emb = self.dropout(self.trg_embedding(y_prev))                               # [B, E]
        h, c = list(state.hidden[0]), list(state.hidden[1])                          # L x [B, H]
        context, weights = self.attention(h[-1], state.keys, state.enc_out, state.src_mask)  # [B, 2H], [B, S]
        x = torch.cat([emb, context], -1)                                            # [B, E + 2H]
        for layer, cell in enumerate(self.dec_cells):
            h[layer], c[layer] = cell(x if layer == 0 else self.dropout(x), (h[layer], c[layer]))
            x = h[layer]                                                             # [B, H]
        features = torch.cat([x, context, emb], -1)                                  # [B, H + 2H + E]
        state = replace(state, hidden=(torch.stack(h), torch.stack(c)))
        return self.project(features, weights, state), state, weights

    def project(self, features: Tensor, weights: Tensor, state: AttentionState) -> Tensor:
        """Features [N, H + 2H + E] -> logits [N, V] (the copy model also reads the attention [N, S])."""
        return self.out(features)


class CopyAttentionSeq2Seq(AttentionSeq2Seq):
    """Attention model with a copy (pointer-generator) mechanism.

    At every step a learned gate ``p_gen = sigmoid(w^T [s; c; e])`` mixes generating from the
    vocabulary with copying a source token through the attention distribution, over the target
    vocabulary extended by the out-of-vocabulary words of each source (ids ``V + k``). Scores are
    log-probabilities over that extended vocabulary, so copied identifiers come out as real names.
    """

    uses_copy = True

    def __init__(self, config: Seq2SeqConfig):
        super().__init__(config)
        self.gate = nn.Linear(self.out_dim, 1)

    def mix(self, features: Tensor, attn: Tensor, src_ext: Tensor, n_oov: int) -> Tensor:
        """features [N, F], attn [N, S], src_ext [N, S] -> log-probabilities [N, V + n_oov]."""
        p_gen = torch.sigmoid(self.gate(features).float())                 # [N, 1]
        p_vocab = torch.softmax(self.out(features).float(), -1) * p_gen    # [N, V]
        p = F.pad(p_vocab, (0, n_oov))                                     # [N, V + n_oov]
        p = p.scatter_add(1, src_ext, attn * (1 - p_gen))                  # copy mass onto source ids
        return torch.log(p.clamp_min(1e-12))

    def project(self, features: Tensor, weights: Tensor, state: AttentionState) -> Tensor:
        """Log-probabilities [B, V + OOV]: generation and copying mixed."""
        if state.src_ext is None:
            raise ValueError("The copy model needs the batch's extended source ids (make_batch of "
                             "examples built with encode_pairs(..., with_copy=True)).")
        return self.mix(features, weights, state.src_ext, state.n_oov)

    def loss_targets(self, batch: Batch) -> Tensor:
        if batch.trg_out_ext is None:
            raise ValueError("The copy model needs extended target ids: build examples with "
                             "encode_pairs(..., with_copy=True).")
        return batch.trg_out_ext
