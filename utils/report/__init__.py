"""The results as the README and the docs show them, rendered from the files the runs wrote.

``tables`` turns the committed CSVs (``plots/results.csv``, the studies' tables, the epochs and stage
times) into Markdown tables. ``blocks`` renders those tables, and the sentences that quote their
figures, into the marked blocks of the README and the docs (``<!-- report:NAME -->``), so that no
figure there is typed by hand and a test fails when one no longer matches its file. ``cli`` is
``python -m utils.report``: it prints every table, saves what the tables need from the runs into
``plots/``, and with ``--write`` rewrites the blocks from committed files only (``--check`` lists
the documents out of date); ``__main__`` runs it.
"""
from __future__ import annotations

from utils.evaluation.markdown import markdown_table
from utils.report.cli import main, run_timings
from utils.report.tables import (
    comparison_markdown,
    epoch_history,
    epoch_times,
    epoch_times_markdown,
    headline_markdown,
    results_markdown,
    stopping_markdown,
    vocabulary_comparison,
)

__all__ = ["comparison_markdown", "epoch_history", "epoch_times", "epoch_times_markdown", "headline_markdown",
           "main", "markdown_table", "results_markdown", "run_timings", "stopping_markdown", "vocabulary_comparison"]
