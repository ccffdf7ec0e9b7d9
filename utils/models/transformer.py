"""The Transformer baseline: encoder and decoder layers with a key/value cache for step-by-step decoding."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.data.vocabulary import PAD
from utils.models.base import Seq2SeqModel, teacher_forcing_mask


def sinusoidal_positions(n: int, dim: int) -> Tensor:
    """The fixed sine/cosine position table [n, dim] of Vaswani et al."""
    pos = torch.arange(n, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


class LayerCache(NamedTuple):
    """One decoder layer's keys and values, per head, kept between decoding steps."""

    self_keys: Tensor      # [B, h, t, d/h]  of the positions decoded so far
    self_values: Tensor    # [B, h, t, d/h]
    memory_keys: Tensor    # [B, h, S, d/h]  of the encoder states, computed at the first step
    memory_values: Tensor  # [B, h, S, d/h]

    def select(self, rows: Tensor) -> "LayerCache":
        return LayerCache(*(x.index_select(0, rows) for x in self))


@dataclass
class TransformerState:
    """The encoder's output, the tokens so far and (in eval mode) each decoder layer's cache."""

    memory: Tensor                       # [B, S, d]
    src_mask: Tensor                     # [B, S] True on real tokens
    prev: Tensor                         # [B, t] tokens decoded so far
    cache: list[LayerCache] | None = None

    def select(self, rows: Tensor) -> "TransformerState":
        cache = None if self.cache is None else [layer.select(rows) for layer in self.cache]
        return TransformerState(self.memory.index_select(0, rows), self.src_mask.index_select(0, rows),
                                self.prev.index_select(0, rows), cache)


def _in_projection(attn: nn.MultiheadAttention, x: Tensor, part: slice) -> Tensor:
    """Part of ``attn``'s input projection of x [B, L, d]: ``nn.MultiheadAttention`` keeps the query,
    key and value weights stacked in one [3d, d] matrix, rows [0, d), [d, 2d) and [2d, 3d)."""
    d = x.size(-1)
    rows = slice(part.start * d, part.stop * d)
    return F.linear(x, attn.in_proj_weight[rows], attn.in_proj_bias[rows])


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

    def memory_cache(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention's keys and values of the encoder states, per head: 2 x [B, h, S, d/h]."""
        k, v = _in_projection(self.cross_attn, memory, slice(1, 3)).chunk(2, -1)  # [B, S, d] each
        return _split_heads(k, self.cross_attn.num_heads), _split_heads(v, self.cross_attn.num_heads)

    def step(self, x: Tensor, cache: LayerCache, memory_pad: Tensor) -> tuple[Tensor, LayerCache, Tensor]:
        """One new position (inference, no dropout): x [B, 1, d] and the cache of the earlier positions
        -> (x [B, 1, d], the cache with this position added, cross-attention [B, S] averaged over
        heads). The same function as ``forward`` at the last position."""
        sa, ca = self.self_attn, self.cross_attn
        heads, d = sa.num_heads, x.size(-1)
        q, k, v = _in_projection(sa, self.norms[0](x), slice(0, 3)).chunk(3, -1)  # [B, 1, d] each
        keys = torch.cat([cache.self_keys, _split_heads(k, heads)], 2)           # [B, h, t+1, d/h]
        values = torch.cat([cache.self_values, _split_heads(v, heads)], 2)
        a = F.scaled_dot_product_attention(_split_heads(q, heads), keys, values)  # [B, h, 1, d/h]
        x = x + sa.out_proj(_merge_heads(a))
        q = _split_heads(_in_projection(ca, self.norms[1](x), slice(0, 1)), heads)      # [B, h, 1, d/h]
        scores = q @ cache.memory_keys.transpose(2, 3) / math.sqrt(d // heads)          # [B, h, 1, S]
        w = torch.softmax(scores.float().masked_fill(memory_pad[:, None, None, :], float("-inf")), -1)
        x = x + ca.out_proj(_merge_heads(w @ cache.memory_values))
        x = x + self.ff(self.norms[2](x))
        return x, cache._replace(self_keys=keys, self_values=values), w.mean(1)[:, 0]


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
    keys/values from ``TransformerState.cache``; in training mode it re-runs the prefix.
    """

    has_attention = True

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        d = c.hidden_dim
        if d % c.n_heads:
            raise ValueError(f"hidden_dim ({d}) must be divisible by n_heads ({c.n_heads}).")
        self.src_embedding = nn.Embedding(c.source_symbols, d, padding_idx=PAD)
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

    def _embed(self, emb: nn.Embedding, ids: Tensor, start: int = 0) -> Tensor:
        """ids [B, L] at positions start .. start + L - 1 -> scaled embeddings plus positions [B, L, d]."""
        end = start + ids.size(1)
        if end > self.positions.size(0):
            raise ValueError(f"Sequence of {end} tokens exceeds max_positions={self.positions.size(0)}.")
        x = emb(ids) * math.sqrt(self.config.hidden_dim) + self.positions[start:end]
        return self.dropout(x)  # [B, L, d]

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerState:
        """Encoder layers over the sources: the memory [B, S, d] and its mask (decoding caches its keys
        and values at the first step)."""
        mask = src != PAD
        memory = self.encoder(self._embed(self.src_embedding, src), src_key_padding_mask=~mask)  # [B, S, d]
        return TransformerState(memory, mask, prev=src.new_empty(src.size(0), 0))

    def decode(self, trg_in: Tensor, state: TransformerState) -> tuple[Tensor, Tensor]:
        """All steps at once: trg_in [B, T] -> (features [B, T, d], cross-attention [B, T, S])."""
        T = trg_in.size(1)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=trg_in.device), 1)
        x = self._embed(self.trg_embedding, trg_in)
        w = None
        for layer in self.decoder_layers:
            x, w = layer(x, state.memory, causal, ~state.src_mask)
        return self.final_norm(x), w

    def decoder_inputs(self, trg_in: Tensor, state: TransformerState, tf: list[bool]) -> Tensor:
        """trg_in [B, T] where every step is teacher-forced; otherwise built step by step, each step
        not teacher-forced reading the model's own argmax after the prefix so far."""
        if all(tf):
            return trg_in
        columns = [trg_in[:, 0]]
        for t in range(trg_in.size(1) - 1):
            if tf[t + 1]:
                columns.append(trg_in[:, t + 1])
            else:
                features, _ = self.decode(torch.stack(columns, 1), state)  # [B, t + 1, d]
                columns.append(self.next_input(self.out(features[:, -1])))
        return torch.stack(columns, 1)

    def forward(self, src: Tensor, src_lengths: Tensor, trg_in: Tensor, teacher_forcing: float = 1.0,
                generator: torch.Generator | None = None, src_ext: Tensor | None = None,
                n_oov: int = 0) -> tuple[Tensor, Tensor]:
        """Logits [B, T, V] and the last layer's cross-attention [B, T, S], every position at once."""
        tf = teacher_forcing_mask(trg_in.size(1), teacher_forcing, generator)
        state = self.encode(src, src_lengths)
        features, attn = self.decode(self.decoder_inputs(trg_in, state, tf), state)  # [B, T, d], [B, T, S]
        return self.out(features), attn

    def decode_step(self, y_prev: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState, Tensor]:
        """One position: self-attention over the cached keys and values of the earlier ones."""
        prev = torch.cat([state.prev, y_prev.unsqueeze(1)], 1)  # [B, t]
        if self.training:  # dropout (attention weights' too) as in training: re-run the prefix
            feats, w = self.decode(prev, state)
            return self.out(feats[:, -1]), TransformerState(state.memory, state.src_mask, prev), w[:, -1]
        cache = state.cache
        if cache is None:  # first step: the encoder states' keys/values, and no earlier positions
            c = self.config
            empty = state.memory.new_zeros(prev.size(0), c.n_heads, 0, c.hidden_dim // c.n_heads)
            cache = [LayerCache(empty, empty, *layer.memory_cache(state.memory)) for layer in self.decoder_layers]
        x = self._embed(self.trg_embedding, y_prev.unsqueeze(1), start=prev.size(1) - 1)  # [B, 1, d]
        new_cache = []
        for layer, layer_cache in zip(self.decoder_layers, cache):
            x, layer_cache, w = layer.step(x, layer_cache, ~state.src_mask)
            new_cache.append(layer_cache)
        logits = self.out(self.final_norm(x[:, 0]))  # [B, V]
        return logits, TransformerState(state.memory, state.src_mask, prev, new_cache), w
