"""Evaluation: how good the trained models are, and how they fail, on a split they never trained on.

``results`` loads the trained checkpoints, decodes a split (greedy and beam search) and scores it
into the results table, with the baseline rows of ``baselines`` (reference-shuffled floor, best
constant program, retrieval), the bootstrap intervals of ``intervals`` and the length buckets; the
scores themselves are ``utils.metrics`` (BLEU, CodeBLEU, token accuracy, ...), which
sits below training because the trainer scores its validation outputs with it. ``length_penalty``
chooses beam search's length penalty on validation rows, ``source_reliance`` measures whether a
model reads its docstring at all, ``error_analysis`` sorts outputs into failure classes,
``attention_analysis`` reads the attention weights, ``decoded_store`` decodes every model and keeps
the outputs on disk for the notebooks that follow, ``rerank`` fits the combined system (the
nearest training functions and the models' beams, one chooser) on the validation split,
``study_results`` quotes the original study's figures beside this project's, ``plotting`` and
``markdown`` draw the notebooks' figures and examples, and ``shipped`` releases a run's checkpoints
as the weights that come with the repository (manifest and recorded outputs).
"""
from __future__ import annotations

from utils.evaluation.attention_analysis import attention_statistics, pick_heatmap_examples
from utils.evaluation.baselines import constant_program
from utils.evaluation.decoded_store import decode_models, decode_stored
from utils.evaluation.error_analysis import FAILURE_CLASSES, classify_output, failure_examples, failure_table
from utils.evaluation.length_penalty import choose_length_penalty
from utils.evaluation.markdown import render_example
from utils.evaluation.plotting import (
    plot_attention_heatmap,
    plot_failure_classes,
    plot_length_buckets,
    plot_length_histograms,
    plot_training_curves,
)
from utils.evaluation.rerank import RERANK_MODEL, combined_system, decoding_name, load_reviewer, save_reranker
from utils.evaluation.results import (
    RESULT_LABELS,
    decode_split,
    decoding_label,
    evaluation_setup,
    length_bucket_results,
    penalty_for,
    results_table,
)
from utils.evaluation.study_results import study_comparison, study_table

__all__ = ["FAILURE_CLASSES", "RERANK_MODEL", "RESULT_LABELS", "attention_statistics", "choose_length_penalty",
           "classify_output", "combined_system", "constant_program", "decode_models", "decode_split",
           "decode_stored",
           "decoding_label", "decoding_name", "evaluation_setup", "failure_examples", "failure_table",
           "length_bucket_results", "load_reviewer", "penalty_for", "pick_heatmap_examples",
           "plot_attention_heatmap", "plot_failure_classes", "plot_length_buckets", "plot_length_histograms",
           "plot_training_curves", "render_example", "results_table", "save_reranker", "study_comparison",
           "study_table"]
