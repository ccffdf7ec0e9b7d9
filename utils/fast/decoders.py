"""The fast training pass: the scores and the loss the models compute (``Seq2SeqModel.forward`` and
``loss``), with less work on a CPU.

What it does without changing the function:
- rows are sorted by target length (descending), and decoder rows that have ended drop out of the batch;
- inputs known in advance are projected for all steps at once (the embedding part of layer 0's
  gates), attention keys once per batch;
- in training mode the recurrent encoder runs step by step over length-sorted rows
  (``encoder.run_encoder``) rather than through the packed CPU module, whose backward is quadratic in
  the source length;
- weights, encoder states and embeddings used at every step get their gradient in one product after
  the loop (``layers.LoopWeight`` / ``LoopMemory`` / ``LoopEmbedding``);
- the vocabulary projection, the most expensive layer, runs without gradient only at the steps
  whose argmax feeds the next input, writing into the loss's logits buffer; the loss projects the
  other real (non-pad) positions into the same buffer (``layers.linear_cross_entropy``). The
  decoder's steps are kept as they come, [n_t, F] for the n_t rows still decoding, and joined
  time-major for the loss (the layout of a ``PackedSequence``), never padded to [B, T, F] first;
- the copy model's loss comes from each row's log-sum-exp and target logit, without building its
  [N, V + OOV] distribution;
- dropout masks are drawn from 16 random bits per element (``dropout.cheap_dropout``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from utils.data.batch import Batch
from utils.data.vocabulary import PAD, UNK
from utils.fast.dropout import cheap_dropout
from utils.fast.encoder import StackWeights, active_rows, first_rows, layer_params, run_encoder
from utils.fast.layers import LoopEmbedding, LoopMemory, LoopWeight, linear_cross_entropy, linear_into, missing_ranges
from utils.models import (
    AttentionSeq2Seq,
    AttentionState,
    CopyAttentionSeq2Seq,
    RecurrentSeq2Seq,
    RecurrentState,
    Seq2SeqModel,
    State,
    TransformerSeq2Seq,
    TransformerState,
    teacher_forcing_mask,
)

# predict(features_t [n, F], t, attention_t [n, S] | None) -> the argmax tokens [n] fed to step t + 1
Predict = Callable[[Tensor, int, Tensor | None], Tensor]


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


def _encode(model: Seq2SeqModel, src: Tensor, src_lengths: Tensor) -> State:
    """``model.encode``, with the recurrent encoders run step by step in training mode."""
    if isinstance(model, TransformerSeq2Seq):
        return model.encode(src, src_lengths)
    read = model.source_order(src, src_lengths) if isinstance(model, RecurrentSeq2Seq) else src
    emb = model.dropout(model.src_embedding(read))  # [B, S, E]
    enc_out, hidden = run_encoder(model.encoder, emb, src_lengths, model.dropout)
    if isinstance(model, AttentionSeq2Seq):
        return model.start_state(src, enc_out, *hidden)
    return model.start_state(hidden)


def _recurrent_steps(model: RecurrentSeq2Seq, state: RecurrentState, trg_in: Tensor, tf: list[bool],
                     active: list[int], predict: Predict) -> DecoderRun:
    T, E = trg_in.size(1), model.config.embed_dim
    # layer 0 reads [embedding; context]: its embedding columns step by step, the context's once
    w = StackWeights.of_module(model.decoder, E)
    context_gates = (None if state.context is None
                     else F.linear(state.context, layer_params(model.decoder, 0)[0][:, E:]))  # [B, G]
    emb_all = model.dropout(model.trg_embedding(trg_in))  # [B, T, E]
    gates_all = w.input_gates(emb_all)                    # [B, T, G]
    if context_gates is not None:
        gates_all = gates_all + context_gates.unsqueeze(1)
    # layer 0's input products for every teacher-forced step at once; unbind (not per-step
    # slicing) so that backward stacks the step gradients once
    gate_steps = gates_all.unbind(1)                    # T x [B, G]
    lookup = LoopEmbedding(model.trg_embedding)         # for the predicted tokens
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
            gates0 = w.input_gates(model.dropout(lookup(pred[:n])))
            gates0 = gates0 if context_gates is None else gates0 + context_gates[:n]
        out, hidden = w.step(gates0, hidden, model.dropout)  # [n, H]
        if state.context is not None:
            out = torch.cat([out, state.context[:n]], 1)   # [n, 2H]: the output layer reads it too
        outs.append(out)
        if t + 1 < T and not tf[t + 1]:
            pred = predict(out, t, None)
    return DecoderRun(outs)


def _attention_steps(model: AttentionSeq2Seq, state: AttentionState, trg_in: Tensor, tf: list[bool],
                     active: list[int], predict: Predict) -> DecoderRun:
    T = trg_in.size(1)
    layers = [(c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh) for c in model.dec_cells]
    stack = StackWeights.build(layers, model.config.embed_dim, lstm=True)
    query = LoopWeight(model.attention.query_proj.weight)
    emb_all = model.dropout(model.trg_embedding(trg_in))  # [B, T, E]
    gates_all = stack.input_gates(emb_all)                # [B, T, 4H]: one product for all steps
    # unbind (not per-step slicing): backward then stacks the step gradients once
    emb_steps, gate_steps = emb_all.unbind(1), gates_all.unbind(1)  # T x [B, E], T x [B, 4H]
    values = LoopMemory(state.enc_out)
    lookup = LoopEmbedding(model.trg_embedding)  # for the predicted tokens
    masks: dict[int, tuple[Tensor, Tensor]] = {}  # keys and mask of the first n rows, sliced once per n
    hidden = state.hidden
    feats, attns = [], []
    pred = None
    for t in range(T):
        n = active[t]
        if n == 0:
            break
        hidden = first_rows(hidden, n)
        if n not in masks:
            masks[n] = (state.keys[:n], state.src_mask[:n])
        if tf[t] or pred is None:
            emb, eg = emb_steps[t][:n], gate_steps[t][:n]
        else:
            emb = model.dropout(lookup(pred[:n]))
            eg = stack.input_gates(emb)
        weights = model.attention.weights(query(hidden[0][-1]), *masks[n])  # [n, S]
        context = values.attend(weights)                                    # [n, 2H]
        x, hidden = stack.step(eg, hidden, model.dropout, extra0=context)   # [n, H]
        f = torch.cat([x, context, emb], -1)                                # [n, H + 2H + E]
        feats.append(f)
        attns.append(weights)
        if t + 1 < T and not tf[t + 1]:
            pred = predict(f, t, weights)
    return DecoderRun(feats, attns)


def _transformer_steps(model: TransformerSeq2Seq, state: TransformerState, trg_in: Tensor, tf: list[bool],
                       active: list[int], predict: Predict) -> DecoderRun:
    if all(tf):
        return DecoderRun(*model.decode(trg_in, state))
    # Mixed teacher forcing: the prefix must be built step by step from the model's own outputs.
    T = trg_in.size(1)
    columns = [trg_in[:, 0]]
    for t in range(T - 1):
        if tf[t + 1]:
            columns.append(trg_in[:, t + 1])
        else:
            feats, w = model.decode(torch.stack(columns, 1), state)
            columns.append(predict(feats[:, -1], t, w[:, -1]))
    return DecoderRun(*model.decode(torch.stack(columns, 1), state))


def _steps(model: Seq2SeqModel):
    if isinstance(model, TransformerSeq2Seq):
        return _transformer_steps
    if isinstance(model, AttentionSeq2Seq):  # and the copy model
        return _attention_steps
    if isinstance(model, RecurrentSeq2Seq):
        return _recurrent_steps
    raise TypeError(f"No fast path for {type(model).__name__}.")


@dataclass
class SortedPass:
    """A decoder pass over rows sorted by target length (descending), and its bookkeeping."""

    order: Tensor                 # [B] the batch's rows in sorted order
    lengths: Tensor               # [B] their target lengths
    run: DecoderRun
    state: State                  # the encoder's state, sorted rows
    logits: Tensor | None         # [N, V] rows of the loss's logits already computed (linear scores only)
    filled: list[tuple[int, int]]  # which [start, end) rows of ``logits`` those are


def sorted_pass(model: Seq2SeqModel, batch: Batch, teacher_forcing: float, generator: torch.Generator | None,
                logits_buffer: bool = False) -> SortedPass:
    """Encode, then run the decoder over rows sorted by target length (descending).

    With ``logits_buffer`` (models whose scores are ``model.out(features)``), the logits computed to
    pick the next input are written into ``logits`` [N, V], one row per real target position in
    time-major order (as ``DecoderRun.packed``), at the row ranges ``filled`` lists.
    """
    steps = _steps(model)
    lengths = (batch.trg_in != PAD).sum(1)  # [B]
    order = torch.argsort(lengths, descending=True, stable=True)
    src, trg_in, lengths = batch.src[order], batch.trg_in[order], lengths[order]
    state = _encode(model, src, batch.src_lengths[order.cpu()])
    if model.uses_copy:
        state = replace(state, src_ext=batch.src_ext[order], n_oov=batch.n_oov)
    tf = teacher_forcing_mask(trg_in.size(1), teacher_forcing, generator)
    sizes = active_rows(lengths, trg_in.size(1))  # rows still decoding at each step
    starts = list(accumulate(sizes, initial=0))    # where each step's rows begin, time-major
    logits = (model.out.weight.new_empty(starts[-1], model.out.out_features)
              if logits_buffer and not model.uses_copy else None)
    filled: list[tuple[int, int]] = []

    def predict(feat_t: Tensor, t: int, attn_t: Tensor | None) -> Tensor:
        n = sizes[t]
        with torch.no_grad():  # the argmax needs no gradient; the loss reuses these logits
            if logits is not None:
                scores = logits[starts[t] : starts[t] + n]  # [n, V]: the rows of step t
                linear_into(scores, feat_t[:n], model.out.weight, model.out.bias)
                filled.append((starts[t], starts[t] + n))
            elif model.uses_copy:
                scores = model.mix(feat_t, attn_t, state.src_ext[: feat_t.size(0)], state.n_oov)  # [n, V + OOV]
            else:
                scores = model.out(feat_t)
        pred = scores.max(-1).indices  # the first maximum, as argmax, but faster on CPU
        if pred.size(0) < feat_t.size(0):  # rows that have ended (a dense decoder): any token
            pred = F.pad(pred, (0, feat_t.size(0) - pred.size(0)), value=PAD)
        # extended (copied) ids are read back as <UNK> by the embedding
        return pred.masked_fill(pred >= model.config.trg_vocab_size, UNK)

    run = steps(model, state, trg_in, tf, sizes, predict)
    return SortedPass(order, lengths, run, state, logits, filled)


def _src_ext_at(state: AttentionState, mask: Tensor) -> Tensor:
    """The extended source ids [N, S] of the rows of the positions ``mask`` [B, T] selects."""
    return state.src_ext.unsqueeze(1).expand(-1, mask.size(1), -1)[mask]


def _positions(model: Seq2SeqModel, features: Tensor, attn: Tensor | None, state: State, mask: Tensor) -> Tensor:
    """Scores [N, V(+OOV)] at the positions ``mask`` [B, T] selects (sorted rows)."""
    if not model.uses_copy:
        return model.out(features[mask])
    return model.mix(features[mask], attn[mask], _src_ext_at(state, mask), state.n_oov)


def _copy_nll(model: CopyAttentionSeq2Seq, features: Tensor, attn: Tensor, state: AttentionState, mask: Tensor,
              targets: Tensor) -> Tensor:
    """``-log p(y)`` summed, with ``p(y) = p_gen softmax(out(f))_y + (1 - p_gen) sum_{j: src_j = y} a_j``,
    from each row's log-sum-exp and target logit: the cross-entropy of the copy model's scores
    (whose rows sum to 1) without building, scattering into and taking the log of the [N, V + OOV]
    distribution (a third less time for 4,000 target tokens)."""
    V = model.config.trg_vocab_size
    src_ext = _src_ext_at(state, mask)                                                 # [N, S]
    feats, weights = features[mask], attn[mask]                                        # [N, F], [N, S]
    p_gen = torch.sigmoid(model.gate(feats).float()).squeeze(1)                         # [N]
    logits = model.out(feats).float()                                                   # [N, V]
    target_logit = logits.gather(1, targets.clamp_max(V - 1).unsqueeze(1)).squeeze(1)  # [N]
    p_vocab = torch.exp(target_logit - torch.logsumexp(logits, 1)) * (targets < V)     # [N]
    p_copy = (weights * (src_ext == targets.unsqueeze(1))).sum(1)                      # [N]
    p = p_gen * p_vocab + (1 - p_gen) * p_copy
    return -torch.log(p.clamp_min(1e-12)).sum()


def fast_forward(model: Seq2SeqModel, batch: Batch, teacher_forcing: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """What ``model(batch...)`` returns, scores [B, T, V(+OOV)] and attention [B, T, S] | None, in
    the batch's row order."""
    with cheap_dropout(model):
        p = sorted_pass(model, batch, teacher_forcing, generator)
        features, attn = p.run.dense(*batch.trg_in.shape)  # [B, T, F], [B, T, S]
        full = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        scores = _positions(model, features, attn, p.state, full).view(*features.shape[:2], -1)  # [B, T, V]
    inv = torch.argsort(p.order)
    return scores[inv], (attn[inv] if attn is not None else None)


def fast_loss(model: Seq2SeqModel, batch: Batch, teacher_forcing: float = 1.0,
              generator: torch.Generator | None = None, smoothing: float = 0.0) -> tuple[Tensor, int]:
    """What ``model.loss`` returns: the summed (label-smoothed) cross-entropy over the real target
    tokens, and their number."""
    with cheap_dropout(model):
        p = sorted_pass(model, batch, teacher_forcing, generator, logits_buffer=True)
        trg_out = model.loss_targets(batch)[p.order]  # [B, T]
        if p.logits is None:  # the copy model: over the real positions of [B, T]
            features, attn = p.run.dense(*trg_out.shape)
            mask = trg_out != PAD  # [B, T]
            if smoothing:  # needs every column: the cross-entropy of the full scores
                scores = _positions(model, features, attn, p.state, mask)
                total = F.cross_entropy(scores, trg_out[mask], reduction="sum", label_smoothing=smoothing)
            else:
                total = _copy_nll(model, features, attn, p.state, mask, trg_out[mask])
            return total, int(mask.sum())
        targets = pack_padded_sequence(trg_out, p.lengths.cpu(), batch_first=True).data  # [N], time-major
        total = linear_cross_entropy(p.run.packed(p.lengths), model.out, targets, p.logits,
                                     missing_ranges(p.filled, p.logits.size(0)), smoothing)
        return total, targets.numel()
