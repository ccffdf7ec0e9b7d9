"""A straightforward implementation of the same models, the yardstick for speed and correctness.

It runs on the very parameters of a ``Seq2SeqModel`` but the way the classic tutorials do: the
encoder over padded batches without packing, a per-step decoder loop that projects to the
vocabulary at every step and recomputes the attention keys at every step. On batches whose sources
carry no padding it computes the same function as the fast path (a test checks this); the benchmark
times both side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.batch import Batch
from utils.models import AttentionSeq2Seq, RecurrentSeq2Seq, Seq2SeqModel, teacher_forcing_mask
from utils.vocabulary import PAD


def naive_forward(model: Seq2SeqModel, src: Tensor, trg_in: Tensor, teacher_forcing: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Logits [B, T, V] (and attention [B, T, S] for the attention model), step by step."""
    B, T = trg_in.shape
    tf = teacher_forcing_mask(T, teacher_forcing, generator)
    if isinstance(model, AttentionSeq2Seq):
        return _naive_attention(model, src, trg_in, tf)
    if not isinstance(model, RecurrentSeq2Seq):
        raise TypeError(f"No straightforward reference for {type(model).__name__}.")
    _, hidden = model.encoder(model.dropout(model.src_embedding(src)))  # padded, not packed
    y = trg_in[:, 0]
    logits_all = []
    for t in range(T):
        emb = model.dropout(model.trg_embedding(y)).unsqueeze(1)  # [B, 1, E]
        out, hidden = model.decoder(emb, hidden)                  # [B, 1, H]
        logits = model.out(out[:, 0])                             # [B, V]
        logits_all.append(logits)
        if t + 1 < T:
            y = trg_in[:, t + 1] if tf[t + 1] else logits.argmax(-1)
    return torch.stack(logits_all, 1), None


def _naive_attention(model: AttentionSeq2Seq, src: Tensor, trg_in: Tensor, tf: list[bool]):
    B, S = src.shape
    T = trg_in.size(1)
    L = model.config.num_layers
    enc_out, (h, c) = model.encoder(model.dropout(model.src_embedding(src)))  # [B, S, 2H]
    h, c = h.view(L, 2, B, -1), c.view(L, 2, B, -1)
    h = list(torch.tanh(model.bridge_h(torch.cat([h[:, 0], h[:, 1]], -1))).unbind(0))  # L x [B, H]
    c = list(torch.tanh(model.bridge_c(torch.cat([c[:, 0], c[:, 1]], -1))).unbind(0))
    mask = src != PAD
    att = model.attention
    y = trg_in[:, 0]
    logits_all, attn_all = [], []
    for t in range(T):
        emb = model.dropout(model.trg_embedding(y))  # [B, E]
        keys = att.key_proj(enc_out)                   # [B, S, A], recomputed at every step
        energy = torch.tanh(keys + att.query_proj(h[-1]).unsqueeze(1))
        scores = att.v(energy).squeeze(2).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, 1)                                 # [B, S]
        context = torch.bmm(weights.unsqueeze(1), enc_out).squeeze(1)      # [B, 2H]
        x = torch.cat([emb, context], -1)
        for layer, cell in enumerate(model.dec_cells):
            h[layer], c[layer] = cell(x if layer == 0 else model.dropout(x), (h[layer], c[layer]))
            x = h[layer]
        logits = model.out(torch.cat([x, context, emb], -1))  # [B, V] at every step
        logits_all.append(logits)
        attn_all.append(weights)
        if t + 1 < T:
            y = trg_in[:, t + 1] if tf[t + 1] else logits.argmax(-1)
    return torch.stack(logits_all, 1), torch.stack(attn_all, 1)


def naive_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """Summed cross-entropy (ignoring <PAD>) over the full [B, T, V] logits."""
    logits, _ = naive_forward(model, batch.src, batch.trg_in, teacher_forcing, generator)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.trg_out.flatten(), ignore_index=PAD, reduction="sum")
    return loss, batch.n_tokens
