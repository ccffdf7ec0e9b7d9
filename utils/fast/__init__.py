"""The CPU training shortcut: the models' scores and loss computed with less work, behind one switch.

The trainer calls ``fast_loss`` where ``Seq2SeqConfig.fast_path`` resolves to on (``auto``: on a CPU,
where it measures faster; on CUDA, cuDNN's packed modules and full-batch kernels are the fast path and
the models' own ``loss`` runs). It computes the function ``Seq2SeqModel.loss`` computes; the tests
(tests/test_fast.py) hold the two to the same losses, scores and gradients at every teacher-forcing
ratio. Nothing in ``utils.models`` depends on it: a reader who never opens this package still
understands, and can change, every model.

- ``decoders``: the pass over length-sorted, shrinking batches, and the losses;
- ``encoder``: the recurrent encoder run step by step, and the decoder stacks' regrouped weights;
- ``layers``: the fused linear cross-entropy and the loop-deferred gradients;
- ``dropout``: the cheaper dropout mask.
"""
from __future__ import annotations

from utils.fast.decoders import fast_forward, fast_loss

__all__ = ["fast_forward", "fast_loss"]
