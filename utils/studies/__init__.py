"""The studies: experiments run with the library, each writing its table to ``plots/``.

``recipe`` chooses the training recipe one lever at a time, ``seeds`` checks that the comparison
holds across seeds, ``vocabulary`` compares words with BPE of several sizes, ``precision`` compares
bf16 with fp32, ``retrieval`` chooses what the retrieval models read, ``convergence`` compares
batching, schedule and precision by the time to early stopping, ``budget`` compares model
sizes, pairs, epochs and peak rates at the main job's budget with several seeds and picks the
recipe, ``recurrent`` asks how the RNN and the LSTM can be made to read their docstrings, and
``guided`` tries retrieval-guided beam search as a candidate source of the combined system;
``screening`` is what they share (train one model on a processed corpus and score it on the
validation split). ``python -m utils.studies <name>`` runs any of them, and the notebook chains
of the README's other runs (``python -m utils.studies --list``). The studies sit on top: nothing
in the library imports them.
"""
