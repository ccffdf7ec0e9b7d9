"""Seq2seq code generation, one package per concept, in the order a run goes through them.

- ``data``: from Python source files to the processed corpus and padded batches (tokenizers,
  vocabularies, BPE, the retrieval models' neighbours);
- ``models``: the five sequence-to-sequence models; ``fast``: their CPU training shortcut;
- ``decoding``: greedy decoding and beam search, with the syntax constraints;
- ``training``: the trainer, and several models trained side by side;
- ``evaluation``: scoring trained checkpoints, the analyses of their outputs, the notebooks' plots;
- ``studies``: the experiments run with the library (``python -m utils.studies --list``);
- ``bench``: the benchmarks (``python -m utils.bench.steps``).

At the top level sits the plumbing: ``config`` (the one configuration object), ``paths``, ``files``,
``precision``, ``checkpoint``, and ``metrics`` (the scores of generated code, which both the trainer
and the evaluation use), with two entry points, ``run_notebooks`` (the numbered notebooks with one
parameter file) and ``report`` (the README's tables). Imports go one way, down this order: paths,
files, precision and config; data; metrics; models; fast; checkpoint; decoding; training;
evaluation; and on top the studies, the benchmarks, ``report`` and ``run_notebooks``
(tests/test_layout.py holds the package to it).
"""
