"""Building blocks of the fast path that compute the usual functions with less work on a CPU.

- ``linear_cross_entropy``: summed cross-entropy of ``x @ W.T + b`` that never keeps
  log-probabilities for backward: the forward pass turns the logits into their gradient
  (softmax minus one-hot) in place, and backward needs just two large matrix products. Rows whose
  logits a decoder has computed already (without gradient, to pick its next input) are written
  straight into the buffer the loss completes, so they are neither computed nor copied again.
- ``LoopWeight``, ``LoopMemory``, ``LoopEmbedding``: a weight, the encoder states or an embedding
  table used at every step of a Python loop get their gradient in one product after the loop.

Under bf16 autocast (``utils.precision``) the matrix products run in bf16 and their results are
written into the float32 logits buffer, whose softmax and sum stay float32; the ``Loop*`` helpers
cast the tensor they hold once per pass (not at every step), and their custom backward passes
compute in that same dtype.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def low_precision(tensor: Tensor) -> Tensor:
    """``tensor`` in the autocast dtype when autocast is on for its device (else unchanged): a weight
    used at every step of a loop is cast once, rather than by autocast at every step."""
    if torch.is_autocast_enabled(tensor.device.type) and tensor.is_floating_point():
        return tensor.to(torch.get_autocast_dtype(tensor.device.type))
    return tensor


def linear_into(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Write ``x @ weight.T + bias`` into ``out`` (float32, e.g. rows of a logits buffer). Under
    autocast the product runs in the autocast dtype and is copied in."""
    if torch.is_autocast_enabled(x.device.type) or x.dtype != out.dtype:
        return out.copy_(F.linear(x, weight, bias))
    return torch.addmm(bias, x, weight.t(), out=out)


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed CE of ``x @ W.T + b`` over all rows, in a logits buffer that is partly filled already."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, logits: Tensor, targets: Tensor,
                missing: list[tuple[int, int]], smoothing: float) -> Tensor:
        # x [N, F], weight [V, F], bias [V], logits [N, V] (rows outside ``missing`` filled), targets [N]
        for start, end in missing:  # the rows not computed yet, written in place
            linear_into(logits[start:end], x[start:end], weight, bias)       # [n, V]
        n, V = logits.shape
        target_logit = logits.gather(1, targets.unsqueeze(1))                # [N, 1]
        if smoothing:  # the target is (1 - eps) one-hot + eps uniform: its mean logit counts too
            target_logit = (1 - smoothing) * target_logit + smoothing * logits.mean(1, keepdim=True)
        top = logits.amax(1, keepdim=True)                                   # [N, 1]
        g = logits.sub_(top).exp_()                                          # in place: one exp pass
        total_exp = g.sum(1, keepdim=True)                                   # [N, 1]
        total = (top + total_exp.log() - target_logit).sum()                 # log-sum-exp - target
        g.div_(total_exp)                                                    # softmax
        if smoothing:
            g.sub_(smoothing / V)
        g[torch.arange(n, device=g.device), targets] -= 1.0 - smoothing      # d loss / d logits
        ctx.save_for_backward(x, weight, g)
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight, g = ctx.saved_tensors
        # the products run in x's dtype (bf16 under autocast); the weight's gradient is cast back
        # to float32 by autograd
        g_low, w_low = g.to(x.dtype), weight.to(x.dtype)
        # grad_out is a scalar: scale the small products, not the [N, V] gradient of the logits
        return ((g_low @ w_low).mul_(grad_out), (g_low.t() @ x).mul_(grad_out), g.sum(0).mul_(grad_out),
                None, None, None, None)


def linear_cross_entropy(x: Tensor, layer: nn.Linear, targets: Tensor, logits: Tensor | None = None,
                         missing: list[tuple[int, int]] | None = None, smoothing: float = 0.0) -> Tensor:
    """Summed cross-entropy of ``layer(x)`` (``x`` [N, F]) against class ids ``targets`` [N], with
    label smoothing ``smoothing`` as ``F.cross_entropy(..., label_smoothing=smoothing)``.

    ``logits`` [N, V] may hold some rows of ``layer(x)`` computed already without gradient (to pick a
    decoder's next input); ``missing`` lists the [start, end) row ranges that it does not hold yet.
    The buffer is completed and then overwritten in place. Without ``logits`` every row is computed.
    """
    if logits is None:
        logits, missing = x.new_empty(x.size(0), layer.out_features), [(0, x.size(0))]
    return _LinearCrossEntropy.apply(x, layer.weight, layer.bias, logits.detach(), targets, missing or [],
                                     smoothing)


def missing_ranges(filled: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of ``range(n)`` outside the sorted, disjoint ranges ``filled``."""
    out, pos = [], 0
    for start, end in filled:
        if start > pos:
            out.append((pos, start))
        pos = max(pos, end)
    return out + [(pos, n)] if pos < n else out


class _Anchor(torch.autograd.Function):
    """Identity on a tensor used at every step of a loop; its backward adds, in one go, the
    gradient the steps left aside (``deferred()``)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, deferred: Callable[[], Tensor]) -> Tensor:
        ctx.deferred = deferred
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # runs after every step's backward (they all consume this node's output)
        return grad + ctx.deferred(), None


class _LoopGradient:
    """What the ``Loop*`` helpers share: ``tensor`` behind an anchor whose backward adds the gradient
    ``_gradient`` computes, in one go, from the pairs the steps left in ``bucket``. Without gradients
    ``tensor`` is the plain tensor and nothing is kept."""

    def __init__(self, tensor: Tensor, cast: bool = True):
        self.bucket: list[tuple[Tensor, Tensor]] = []
        self.deferred = torch.is_grad_enabled() and tensor.requires_grad
        tensor = low_precision(tensor) if cast else tensor  # once per pass under autocast
        self.tensor = _Anchor.apply(tensor, self._deferred_gradient) if self.deferred else tensor

    def _deferred_gradient(self) -> Tensor:
        firsts, seconds = (list(column) for column in zip(*self.bucket))
        self.bucket.clear()
        return self._gradient(firsts, seconds)

    def _gradient(self, firsts: list[Tensor], seconds: list[Tensor]) -> Tensor:
        raise NotImplementedError


class _StepLinear(torch.autograd.Function):
    """``x @ W.T`` whose backward returns the input gradient and leaves the weight's to the anchor."""

    @staticmethod
    def forward(ctx, x: Tensor, anchor: Tensor, bucket: list) -> Tensor:
        x = x.to(anchor.dtype)  # backward then computes in one dtype, with or without autocast
        ctx.save_for_backward(x, anchor)
        ctx.bucket = bucket
        return x @ anchor.t()

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, w = ctx.saved_tensors
        ctx.bucket.append((x, dy))
        return dy @ w, None, None


class LoopWeight(_LoopGradient):
    """A weight applied at every step of a Python loop (``x [n, in] -> x @ W.T [n, out]``).

    Autograd would compute a small weight gradient at every step and add it to the running sum,
    each time writing the whole [out, in] matrix. Here the steps' inputs and output gradients are
    kept and the weight gradient is one large product after the loop's backward: the same sum,
    computed the way cuDNN does for its recurrent layers. Without gradients it is a plain product.
    """

    def _gradient(self, xs: list[Tensor], dys: list[Tensor]) -> Tensor:
        return torch.cat(dys).t() @ torch.cat(xs)  # [N, out]^T @ [N, in] -> [out, in]

    def __call__(self, x: Tensor) -> Tensor:
        if self.deferred:
            return _StepLinear.apply(x, self.tensor, self.bucket)
        return x @ self.tensor.t()


class _StepAttend(torch.autograd.Function):
    """``context = weights @ values[:n]`` whose backward leaves the values' gradient to the anchor."""

    @staticmethod
    def forward(ctx, weights: Tensor, anchor: Tensor, bucket: list) -> Tensor:
        values = anchor[: weights.size(0)]                            # [n, S, D]
        weights = weights.to(values.dtype)
        ctx.save_for_backward(weights, values)
        ctx.bucket = bucket
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1)     # [n, D]

    @staticmethod
    def backward(ctx, d_context: Tensor):
        weights, values = ctx.saved_tensors
        ctx.bucket.append((weights, d_context))
        return torch.bmm(values, d_context.unsqueeze(2)).squeeze(2), None, None  # [n, S]


class LoopMemory(_LoopGradient):
    """Encoder states read at every decoder step through attention weights (``context = w @ V``).

    Autograd would write a [n, S, D] gradient at every step (an outer product) and add it to the
    running sum; here the steps' weights and context gradients are kept and the gradient of the
    states is one batched product, [B, S, T] @ [B, T, D], after the loop's backward.
    """

    def _gradient(self, weights: list[Tensor], d_contexts: list[Tensor]) -> Tensor:
        B = self.tensor.size(0)
        w = torch.stack([F.pad(a, (0, 0, 0, B - a.size(0))) for a in weights], 2)     # [B, S, T]
        d = torch.stack([F.pad(g, (0, 0, 0, B - g.size(0))) for g in d_contexts], 1)  # [B, T, D]
        return torch.bmm(w, d)                                                         # [B, S, D]

    def attend(self, weights: Tensor) -> Tensor:
        """weights [n, S] over the first n rows -> context [n, D]."""
        if self.deferred:
            return _StepAttend.apply(weights, self.tensor, self.bucket)
        values = self.tensor[: weights.size(0)]
        return torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)


class _StepLookup(torch.autograd.Function):
    """``table[ids]`` whose backward leaves the table's gradient to the anchor."""

    @staticmethod
    def forward(ctx, ids: Tensor, anchor: Tensor, bucket: list) -> Tensor:
        ctx.ids, ctx.bucket = ids, bucket
        return anchor.index_select(0, ids)  # [n, E]

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.bucket.append((ctx.ids, grad))
        return None, None, None


class LoopEmbedding(_LoopGradient):
    """An embedding looked up at many steps of a loop (the tokens a decoder predicts).

    Autograd would write a whole [V, E] gradient at every lookup; here the ids and gradients are
    kept and added into one [V, E] gradient after the loop's backward. The padding row gets none,
    as with ``nn.Embedding(padding_idx=...)``.
    """

    def __init__(self, embedding: nn.Embedding):
        super().__init__(embedding.weight, cast=False)  # a lookup: nothing to gain from bf16
        self.padding_idx = embedding.padding_idx

    def _gradient(self, ids: list[Tensor], grads: list[Tensor]) -> Tensor:
        out = grads[0].new_zeros(self.tensor.shape).index_add_(0, torch.cat(ids), torch.cat(grads))  # [V, E]
        if self.padding_idx is not None:
            out[self.padding_idx] = 0
        return out

    def __call__(self, ids: Tensor) -> Tensor:
        """ids [n] -> embeddings [n, E]."""
        if self.deferred:
            return _StepLookup.apply(ids, self.tensor, self.bucket)
        return F.embedding(ids, self.tensor, self.padding_idx)
