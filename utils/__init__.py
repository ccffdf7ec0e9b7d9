"""Seq2seq code generation: corpus, tokenizers, models, training, decoding, metrics, plots.

Modules import downward only: ``paths``/``tokenizer``/``vocabulary`` at the bottom, ``data`` (above the
corpus builders ``python_corpus`` and ``codesearchnet``, which it reads and re-exports) and ``models`` above
them, ``fast`` (the CPU training shortcut, which reads the models) above those, ``training`` and ``decoding``
above that, ``metrics`` and ``plotting`` on top.
"""
