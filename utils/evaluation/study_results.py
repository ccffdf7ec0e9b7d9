"""The original study's published results, quoted (the only numbers typed into the project), and
this project's figures beside them."""
from __future__ import annotations

import pandas as pd

# The original study's published test-set results. QUOTED LITERATURE VALUES, not computed here.
_STUDY_RESULTS = [
    {"model": "rnn", "study_model": "RNN", "bleu": 11.16, "token_accuracy": 19.13, "exact_match": 0.0},
    {"model": "lstm", "study_model": "LSTM", "bleu": 19.64, "token_accuracy": 18.67, "exact_match": 0.0},
    {"model": "attention", "study_model": "LSTM + attention", "bleu": 21.26, "token_accuracy": 21.06,
     "exact_match": 0.0},
]


STUDY_SOURCE = "quoted from the original study (published numbers, not reproduced here)"


def study_table() -> pd.DataFrame:
    """The original study's published test results. QUOTED, not computed: literature values only."""
    table = pd.DataFrame(_STUDY_RESULTS)
    table["source"] = STUDY_SOURCE
    table.attrs["note"] = STUDY_SOURCE
    return table


def study_comparison(results: pd.DataFrame, decoding: str = "greedy") -> pd.DataFrame:
    """Our ``decoding`` rows beside the study's quoted numbers, for the models the study had."""
    ours = results[results["decoding"] == decoding].set_index("model")
    rows = []
    for s in _STUDY_RESULTS:
        o = ours.loc[s["model"]] if s["model"] in ours.index else None
        get = (lambda c, o=o: float(o[c])) if o is not None else (lambda c: float("nan"))  # noqa: E731
        rows.append({
            "model": s["study_model"],
            "BLEU (study, quoted)": s["bleu"],
            "BLEU (ours)": get("bleu"),
            "BLEU (ours, study variant)": get("bleu_study"),
            "token accuracy % (study, quoted)": s["token_accuracy"],
            "token accuracy % (ours)": get("token_accuracy"),
            "exact match % (study, quoted)": s["exact_match"],
            "exact match % (ours)": get("exact_match"),
        })
    return pd.DataFrame(rows).set_index("model")
