"""The plain training loss: the function ``Seq2SeqModel.loss`` computes, written the straightforward way.

It runs on a model's own parameters the way the classic tutorials do: the encoder through the
PyTorch module over a packed batch (padded sources read only their real tokens), a decoder loop
over the whole batch, in the batch's own row order, that projects to the vocabulary at every step,
and the cross-entropy over the real target positions. Teacher forcing is decided per step from the
same generator draws as the fast path (``teacher_forcing_mask``), and label smoothing is the same,
so both paths compute one function (tests/test_plain.py checks losses, scores and gradients).

The trainer takes this path where ``Seq2SeqConfig.fast_path`` resolves to off (by default on CUDA,
where cuDNN's packed modules and full-batch kernels are fast); the benchmark times the fast path
against it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.batch import Batch
from utils.models.attention import AttentionSeq2Seq
from utils.models.base import DecoderState, Seq2SeqModel, teacher_forcing_mask
from utils.models.recurrent import RecurrentSeq2Seq
from utils.models.transformer import TransformerSeq2Seq
from utils.vocabulary import PAD, UNK


def plain_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float = 1.0,
               generator: torch.Generator | None = None, smoothing: float = 0.0) -> tuple[Tensor, int]:
    """Summed cross-entropy over the real target tokens (label-smoothed by ``smoothing``), and their number."""
    scores, _ = plain_forward(model, batch, teacher_forcing, generator)  # [B, T, V(+OOV)]
    targets = model.loss_targets(batch)  # [B, T]: extended ids for the copy model
    real = targets != PAD
    # the copy model's scores are log-probabilities: their log-softmax is themselves
    loss = F.cross_entropy(scores[real], targets[real], reduction="sum", label_smoothing=smoothing)
    return loss, int(real.sum())


def plain_forward(model: Seq2SeqModel, batch: Batch, teacher_forcing: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Scores [B, T, V] (log-probabilities over the extended vocabulary [B, T, V + OOV] for the copy
    model) and attention [B, T, S] (None without attention), as ``model.forward`` returns them."""
    tf = teacher_forcing_mask(batch.trg_in.size(1), teacher_forcing, generator)
    if isinstance(model, TransformerSeq2Seq):
        return _transformer(model, batch, tf)
    if isinstance(model, AttentionSeq2Seq):  # and the copy model
        return _attention(model, batch, tf)
    if isinstance(model, RecurrentSeq2Seq):
        return _recurrent(model, batch, tf)
    raise TypeError(f"No plain path for {type(model).__name__}.")


def _predicted(model: Seq2SeqModel, scores: Tensor) -> Tensor:
    """The next input where not teacher-forced: the argmax [B] of scores [B, V(+OOV)], a copied
    (extended) id read back as <UNK>."""
    pred = scores.argmax(-1)
    return pred.masked_fill(pred >= model.config.trg_vocab_size, UNK)


def _encode(module: nn.RNNBase, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """The recurrent encoder over the real tokens of emb [B, S, E]: (outputs [B, S, D*H], zero on
    padding; final state [L*D, B, H], for an LSTM with its cell state)."""
    packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, hidden = module(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))
    return out, hidden


def _recurrent(model: RecurrentSeq2Seq, batch: Batch, tf: list[bool]) -> tuple[Tensor, None]:
    T = batch.trg_in.size(1)
    _, hidden = _encode(model.encoder, model.dropout(model.src_embedding(batch.src)), batch.src_lengths)
    y = batch.trg_in[:, 0]  # [B]
    steps = []
    for t in range(T):
        emb = model.dropout(model.trg_embedding(y)).unsqueeze(1)  # [B, 1, E]
        out, hidden = model.decoder(emb, hidden)                  # [B, 1, H], [L, B, H]
        steps.append(model.out(out[:, 0]))                        # [B, V]
        if t + 1 < T:
            y = batch.trg_in[:, t + 1] if tf[t + 1] else _predicted(model, steps[-1])
    return torch.stack(steps, 1), None


def _attention(model: AttentionSeq2Seq, batch: Batch, tf: list[bool]) -> tuple[Tensor, Tensor]:
    (B, _), T, L = batch.src.shape, batch.trg_in.size(1), model.config.num_layers
    emb = model.dropout(model.src_embedding(batch.src))                        # [B, S, E]
    enc_out, (h, c) = _encode(model.encoder, emb, batch.src_lengths)          # [B, S, 2H], [2L, B, H]

    def bridge(state: Tensor, linear: nn.Linear) -> list[Tensor]:  # last forward and backward states
        state = state.view(L, 2, B, -1)                                        # [L, dir, B, H]
        return list(torch.tanh(linear(torch.cat([state[:, 0], state[:, 1]], -1))).unbind(0))  # L x [B, H]

    h, c = bridge(h, model.bridge_h), bridge(c, model.bridge_c)
    keys, mask = model.attention.compute_keys(enc_out), batch.src != PAD      # [B, S, A], [B, S]
    state = DecoderState(hidden=None, src_ext=batch.src_ext, n_oov=batch.n_oov)  # the copy model's scores read it
    y = batch.trg_in[:, 0]
    steps, attns = [], []
    for t in range(T):
        emb = model.dropout(model.trg_embedding(y))                            # [B, E]
        context, weights = model.attention(h[-1], keys, enc_out, mask)         # [B, 2H], [B, S]
        x = torch.cat([emb, context], -1)                                      # [B, E + 2H]
        for layer, cell in enumerate(model.dec_cells):
            h[layer], c[layer] = cell(x if layer == 0 else model.dropout(x), (h[layer], c[layer]))
            x = h[layer]                                                       # [B, H]
        features = torch.cat([x, context, emb], -1)                            # [B, H + 2H + E]
        steps.append(model.project_step(features, weights, state))              # [B, V(+OOV)]
        attns.append(weights)
        if t + 1 < T:
            y = batch.trg_in[:, t + 1] if tf[t + 1] else _predicted(model, steps[-1])
    return torch.stack(steps, 1), torch.stack(attns, 1)


def _transformer(model: TransformerSeq2Seq, batch: Batch, tf: list[bool]) -> tuple[Tensor, Tensor]:
    """All positions at once; where steps are not teacher-forced, the inputs are first built step
    by step from the model's own argmax over the prefix so far (as ``model.loss`` does)."""
    state = model.encode(batch.src, batch.src_lengths)  # memory [B, S, d]
    trg_in = batch.trg_in                               # [B, T]
    if not all(tf):
        columns = [trg_in[:, 0]]
        for t in range(trg_in.size(1) - 1):
            if tf[t + 1]:
                columns.append(trg_in[:, t + 1])
            else:
                features, _ = model._decode(torch.stack(columns, 1), state)  # [B, t + 1, d]
                columns.append(_predicted(model, model.out(features[:, -1])))
        trg_in = torch.stack(columns, 1)
    features, attn = model._decode(trg_in, state)  # [B, T, d], [B, T, S]
    return model.out(features), attn
