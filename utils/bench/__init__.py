"""The benchmarks: how fast the library trains and decodes on this machine, printed, never asserted.

``steps`` is the command line (``python -m utils.bench.steps``): training steps of every model on
synthetic or real data, the fast path against the models' own loss or fp32 against bf16, and with
``--decode`` greedy decoding. ``training`` times the training steps and counts what they cost,
``decoding`` times batched against one-at-a-time and fp32 against bf16 decoding, ``batching``
compares batches of sequences with batches of target pieces, and ``profiling`` splits a training
epoch's time into its phases. Like the studies, the benchmarks sit on top: nothing in the library
imports them.
"""
