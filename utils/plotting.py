"""Figures for the notebooks; each function saves its figure and returns it."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from utils.paths import project_path


def _save(fig: Figure, out_path: str | Path) -> None:
    path = project_path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def plot_length_histograms(splits_or_rows: Mapping[str, Sequence[dict]] | Sequence[dict],
                           out_path: str | Path) -> Figure:
    """Histograms of docstring and code token lengths, one colour per split when given a dict of splits."""
    splits = splits_or_rows if isinstance(splits_or_rows, Mapping) else {"all": splits_or_rows}
    frame = pd.DataFrame([{"split": name, "docstring tokens": len(r["docstring_tokens"]),
                           "code tokens": len(r["code_tokens"])}
                          for name, rows in splits.items() for r in rows])
    if frame.empty:
        raise ValueError("No rows to plot; pass a non-empty list of rows or dict of splits.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, column, title in zip(axes, ("docstring tokens", "code tokens"), ("Docstring summary", "Code")):
        # Densities, not counts: train is ten times larger than valid/test and would flatten them.
        sns.histplot(frame, x=column, hue="split", stat="density", common_norm=False, element="step",
                     discrete=True, ax=ax)
        ax.set_title(f"{title} length (tokens)")
    fig.tight_layout()
    _save(fig, out_path)
    return fig
