"""Encoders over variable-length batches, run step by step for training.

``nn.RNN``/``nn.LSTM`` over a ``PackedSequence`` compute the right function, but on a CPU their
backward pass is quadratic in the source length: every time step slices the packed input, and the
gradient of each slice is a zero tensor the size of the *whole* packed input, added to the running
sum (profiled: about a quarter of the attention model's training step). ``run_encoder`` runs the same
layers over rows sorted by length, a shrinking (forward direction) or growing (backward direction)
block of rows per step, with the input products of all steps done at once and the recurrent
weight's gradient once per pass (``LoopWeight``). It reads the parameters of the ``nn.RNN`` /
``nn.LSTM`` module it is given, so checkpoints are unchanged, and it returns what the packed module
returns (tests compare them). In eval mode (decoding, inference) the packed module runs instead: its
per-step cost in C++ is lower, and the problem above is a backward one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from utils.fast.layers import LoopWeight, low_precision

# The states of a stack of L recurrent layers: an [L, n, H] tensor or a list of L [n, H] tensors
# (both index by layer), and for an LSTM a tuple (h, c) of two such.
Layered = Tensor | list[Tensor] | tuple[Tensor | list[Tensor], Tensor | list[Tensor]]


def cell_update(gates: Tensor, c: Tensor | None, lstm: bool) -> tuple[Tensor, Tensor | None]:
    """New (h, c) from pre-activations: LSTM gates [n, 4H] (i, f, g, o) with cell state [n, H], or
    a tanh RNN's [n, H] (c stays None)."""
    if not lstm:
        return torch.tanh(gates), None
    i, f, g, o = gates.chunk(4, 1)  # each [n, H]
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def active_rows(lengths: Tensor, steps: int) -> list[int]:
    """For rows sorted by length (descending): how many are longer than t, for t < ``steps``."""
    return (lengths.unsqueeze(1) > torch.arange(steps, device=lengths.device)).sum(0).tolist()


def layer_params(module: nn.RNNBase, layer: int, suffix: str = "") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer (``suffix`` "_reverse": its backward direction)."""
    return tuple(getattr(module, f"{name}_l{layer}{suffix}")  # type: ignore[return-value]
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def run_direction(x_proj: Tensor, active: list[int], w_hh: LoopWeight, lstm: bool,
                  reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer, one direction, over rows sorted by length (descending).

    ``x_proj`` [B, S, G] is the input part of the gates with both biases; ``active[t]`` the number
    of rows longer than t. Returns outputs [B, S, H] (zero on padding) and the final h and c [B, H]:
    at each row's last token going forward, at its first going backward.
    """
    B, S, _ = x_proj.shape
    H = w_hh.tensor.size(1)
    steps = x_proj.unbind(1)  # S x [B, G]
    outs: list[Tensor | None] = [None] * S
    # the rows in play: h [n, H], and c [n, H] for an LSTM (a tanh RNN has no cell state)
    h = x_proj.new_zeros(0 if reverse else B, H)
    c = torch.zeros_like(h) if lstm else None
    done: list[tuple[Tensor, Tensor | None]] = []  # forward: states of rows that have ended, shortest first

    def rows(n: int, state: Tensor | None) -> Tensor | None:
        """``state`` cut to its first n rows, or grown to n with zero rows for rows that start."""
        if state is None or n == state.size(0):
            return state
        return state[:n] if n < state.size(0) else torch.cat([state, state.new_zeros(n - state.size(0), H)])

    for t in (reversed(range(S)) if reverse else range(S)):
        n = active[t]
        if not reverse and n < h.size(0):  # rows that ended at t - 1 keep their state
            done.append((h[n:], None if c is None else c[n:]))
        h, c = rows(n, h), rows(n, c)      # backward: rows whose last token is at t start here
        if n == 0:
            continue
        h, c = cell_update(steps[t][:n] + w_hh(h), c, lstm)  # gates [n, G] -> [n, H]
        outs[t] = h
    if reverse:  # rows without tokens
        h, c = rows(B, h), rows(B, c)
    h_n = torch.cat([h] + [dh for dh, _ in done[::-1]])  # [B, H]
    c_n = torch.cat([c] + [dc for _, dc in done[::-1]]) if lstm else None
    zeros = x_proj.new_zeros(B, H)
    out = torch.stack([zeros if o is None else F.pad(o, (0, 0, 0, B - o.size(0))) for o in outs], 1)
    return out, h_n, c_n


def run_encoder(module: nn.RNNBase, x: Tensor, lengths: Tensor,
                dropout: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """``module`` (a batch-first ``nn.RNN``/``nn.LSTM``, any layers and directions) over the padded
    batch ``x`` [B, S, E] with ``lengths`` [B]: (outputs [B, S, D*H], h_n [L*D, B, H] or (h_n, c_n)),
    as the module returns them for the packed batch, in the caller's row order. ``dropout`` is applied
    between layers (the module's own ``dropout`` value is not used)."""
    lstm = isinstance(module, nn.LSTM)
    if not module.training:  # no dropout: the packed module computes the same, faster without backward
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hidden = module(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, hidden
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)
    active = active_rows(lengths.cpu()[order], x.size(1))  # rows longer than t
    x = x[order.to(x.device)]
    hs, cs = [], []
    directions = ["", "_reverse"] if module.bidirectional else [""]
    for layer in range(module.num_layers):
        if layer:
            x = dropout(x)
        outs = []
        for suffix in directions:
            w_ih, w_hh, b_ih, b_hh = layer_params(module, layer, suffix)
            x_proj = F.linear(x, w_ih, b_ih + b_hh)  # [B, S, G]: all steps at once
            out, h, c = run_direction(x_proj, active, LoopWeight(w_hh), lstm, reverse=bool(suffix))
            outs.append(out)
            hs.append(h)
            cs.append(c)
        x = torch.cat(outs, -1)  # [B, S, D*H]
    inv = torch.argsort(order).to(x.device)
    h_n = torch.stack(hs)[:, inv]  # [L*D, B, H]
    if lstm:
        return x[inv], (h_n, torch.stack(cs)[:, inv])
    return x[inv], h_n


@dataclass
class StackWeights:
    """A stack of RNN/LSTM layers' weights, regrouped once per pass for stepping.

    ``w_in0`` [G, E] is layer 0's weight on the part of its input known for all steps at once (the
    embedding); ``rec[l]`` reads the rest of layer l's input with its previous state (layer 0: [extra;
    h_0], e.g. the attention context; layer l: [x; h_l]) as one product whose gradient is computed
    once per pass; ``bias[l]`` is the sum of layer l's two biases.
    """

    w_in0: Tensor
    bias: list[Tensor]
    rec: list[LoopWeight]
    lstm: bool

    @classmethod
    def build(cls, layers: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]], in0: int, lstm: bool) -> "StackWeights":
        """``layers``: (weight_ih, weight_hh, bias_ih, bias_hh) per layer; ``in0`` columns of layer 0's
        input weight belong to the embedding."""
        rec = []
        for layer, (w_ih, w_hh, _, _) in enumerate(layers):
            rest = w_ih[:, in0:] if layer == 0 else w_ih
            rec.append(LoopWeight(torch.cat([rest, w_hh], 1) if rest.size(1) else w_hh))
        return cls(w_in0=low_precision(layers[0][0][:, :in0]), bias=[b_ih + b_hh for _, _, b_ih, b_hh in layers],
                   rec=rec, lstm=lstm)

    @classmethod
    def of_module(cls, module: nn.RNNBase, in0: int | None = None) -> "StackWeights":
        """The weights of a unidirectional ``nn.RNN`` / ``nn.LSTM``. With ``in0``, layer 0 keeps only its
        first ``in0`` input columns (the embedding's); the rest, an input that is the same at every step,
        is left to the caller to project once."""
        layers = [layer_params(module, k) for k in range(module.num_layers)]
        if in0 is not None:
            w_ih, w_hh, b_ih, b_hh = layers[0]
            layers[0] = (w_ih[:, :in0], w_hh, b_ih, b_hh)
        return cls.build(layers, module.input_size if in0 is None else in0, isinstance(module, nn.LSTM))

    def input_gates(self, emb: Tensor) -> Tensor:
        """Layer 0's embedding part with both biases: [..., E] -> [..., G]."""
        return F.linear(emb, self.w_in0, self.bias[0])

    def step(self, gates0: Tensor, hidden: Layered, dropout: Callable[[Tensor], Tensor],
             extra0: Tensor | None = None) -> tuple[Tensor, Layered]:
        """One time step of the stack: ``gates0`` [n, G] from ``input_gates``, ``hidden`` the layers'
        states (see ``Layered``), ``extra0`` [n, D] more input for layer 0. Returns (top output [n, H],
        new hidden as lists of L [n, H]), with ``dropout`` between layers. Lists, not [L, n, H]
        tensors: a training loop then never stacks the states at one step to pick them apart at the
        next (and, in backward, never fills zero gradients for the layers it did not pick)."""
        h, c = hidden if self.lstm else (hidden, None)
        hs, cs = [], []
        gates = gates0 + self.rec[0](h[0] if extra0 is None else torch.cat([extra0, h[0]], 1))  # [n, G]
        for layer in range(len(self.rec)):
            if layer:
                gates = self.bias[layer] + self.rec[layer](torch.cat([dropout(x), h[layer]], 1))  # noqa: F821 (x: the layer below)
            x, c_new = cell_update(gates, c[layer] if self.lstm else None, self.lstm)
            hs.append(x)
            cs.append(c_new)
        return x, ((hs, cs) if self.lstm else hs)


def first_rows(hidden: Layered, n: int) -> Layered:
    """The states of the first ``n`` rows (no-op when there are n)."""
    if isinstance(hidden, tuple):
        return tuple(first_rows(h, n) for h in hidden)  # type: ignore[return-value]
    if isinstance(hidden, Tensor):
        return hidden if hidden.size(1) == n else hidden[:, :n]
    return [h if h.size(0) == n else h[:n] for h in hidden]
