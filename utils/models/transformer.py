"""The Transformer baseline: encoder and decoder layers with a key/value cache for step-by-step decoding."""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.layers import (
    use_fast_dropout,
)
from utils.models.base import DecoderRun, DecoderState, Seq2SeqModel
from utils.vocabulary import PAD


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
