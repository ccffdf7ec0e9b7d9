"""95% intervals for the results table, by paired bootstrap resampling of the test functions
(``utils.bleu``; Koehn 2004): every row's BLEU and CrystalBLEU, each row's difference from the
retrieval row, and each model's difference from the model below it in the README's ranking, with
the same decoding. Every row is resampled with the same draws, so a difference is paired.
CodeBLEU is too slow to resample (a parser per function per resample): it has no interval.
"""
from __future__ import annotations

from collections.abc import Container, Sequence

import numpy as np
import pandas as pd

from utils.bleu import RESAMPLES, bleu_interval, difference_interval, resample_weights
from utils.metrics import NGram, bleu_statistics

# The steps of the ranking the README states, as (lower, higher): rnn < lstm < attention, and the two
# later models against attention. Each model is compared with the model below it.
RANKING = (("rnn", "lstm"), ("lstm", "attention"), ("attention", "transformer"), ("attention", "copy"))
BELOW = {high: low for low, high in RANKING}
SCORES = (("bleu", ()), ("crystal_bleu", None))  # (column prefix, n-grams ignored: None = the shared ones)


def interval_columns(table: pd.DataFrame, outputs: Sequence[Sequence[Sequence[str]]],
                     refs: Sequence[Sequence[str]], shared: Container[NGram] | None, reference_row: str | None,
                     resamples: int = RESAMPLES) -> pd.DataFrame:
    """For each row of ``table`` (``model``, ``decoding``) and its ``outputs`` (one token list per
    function of ``refs``): ``<score>_low`` / ``_high``, ``<score>_vs_retrieval`` (+ ``_low``/``_high``)
    against the row whose model is ``reference_row``, and ``compared_with`` with ``<score>_vs_below``
    (+ interval) against the same decoding of :data:`BELOW`'s model. CrystalBLEU only with ``shared``."""
    if len(outputs) != len(table):
        raise ValueError(f"{len(outputs)} output lists for {len(table)} table rows.")
    weights = resample_weights(len(refs), resamples)
    keys = list(zip(table["model"], table["decoding"]))
    out = pd.DataFrame(index=table.index)
    below = [BELOW.get(m) if (BELOW.get(m), d) in keys else None for m, d in keys]
    out["compared_with"] = below
    models = [m for m, _ in keys]
    base = models.index(reference_row) if reference_row in models else None
    against = {"retrieval": [base] * len(keys),  # the row each row is paired with, by position
               "below": [keys.index((c, d)) if c else None for c, (_, d) in zip(below, keys)]}
    for score, ignore in SCORES:
        if ignore is None and shared is None:
            continue
        stats = [bleu_statistics(o, refs, shared if ignore is None else ignore) for o in outputs]
        bounds = np.array([bleu_interval(s, weights) for s in stats])
        out[f"{score}_low"], out[f"{score}_high"] = bounds[:, 0], bounds[:, 1]
        for name, partners in against.items():
            diffs = [difference_interval(stats[i], stats[j], weights) if j is not None and j != i else (np.nan,) * 3
                     for i, j in enumerate(partners)]
            for part, values in zip(("", "_low", "_high"), np.array(diffs, dtype=float).T):
                out[f"{score}_vs_{name}{part}"] = values
    return out
