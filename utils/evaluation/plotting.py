"""Figures for the notebooks; each function saves its figure and returns it."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from utils.data.batch import SEPARATOR
from utils.files import atomic_write
from utils.paths import project_path


def _save(fig: Figure, out_path: str | Path) -> None:
    path = project_path(out_path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


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


def plot_training_curves(histories: Mapping[str, Sequence[dict]], out_path: str | Path,
                         best_epochs: Mapping[str, int | None] | None = None) -> Figure:
    """Left: training loss (solid) and teacher-forced validation loss (dashed) per epoch; right: greedy
    (free-running) validation token accuracy. Drawn from the recorded histories only; the best epoch
    (lowest validation loss) is marked when ``best_epochs`` gives it."""
    histories = {name: list(h) for name, h in histories.items() if h}
    if not histories:
        raise ValueError("No training history to plot; train a model with notebooks/02_train.ipynb first.")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
    colors = sns.color_palette(n_colors=max(len(histories), 1))
    for color, (name, hist) in zip(colors, histories.items()):
        epochs = [h.get("epoch", i + 1) for i, h in enumerate(hist)]
        if any("train_loss" in h for h in hist):
            ax_loss.plot(epochs, [h.get("train_loss", float("nan")) for h in hist], "-o", color=color, ms=3,
                         label=f"{name} train")
        if any("val_loss" in h for h in hist):
            ax_loss.plot(epochs, [h.get("val_loss", float("nan")) for h in hist], "--o", color=color, ms=3,
                         label=f"{name} valid (teacher-forced)")
        if any("val_token_acc_greedy" in h for h in hist):
            ax_acc.plot(epochs, [h.get("val_token_acc_greedy", float("nan")) for h in hist], "-o", color=color,
                        ms=3, label=name)
        best = (best_epochs or {}).get(name)
        if best is not None and best in epochs:
            k = epochs.index(best)
            ax_loss.plot([best], [hist[k].get("val_loss", float("nan"))], "*", color=color, ms=12)
    ax_loss.set(title="Loss per target token (★ best epoch)", xlabel="epoch", ylabel="cross-entropy (nats)")
    ax_acc.set(title="Validation token accuracy, greedy decoding", xlabel="epoch", ylabel="token accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
    return fig


def _series_label(table: pd.DataFrame) -> pd.Series:
    """"model" alone when it identifies a series, else "model (decoding)"."""
    if "decoding" in table and table.groupby("model")["decoding"].nunique().max() > 1:
        return table["model"].astype(str) + " (" + table["decoding"].astype(str) + ")"
    return table["model"].astype(str)


def plot_length_buckets(table: pd.DataFrame, out_path: str | Path, metric: str = "bleu",
                        title: str | None = None) -> Figure:
    """Grouped bars: ``metric`` per docstring-length bucket (x, with its number of examples) and model."""
    if table.empty:
        raise ValueError("The length-bucket table is empty; decode at least one model first.")
    if metric not in table:
        raise ValueError(f"No column {metric!r} in the table; choose one of {', '.join(map(str, table.columns))}.")
    frame = table.copy()
    frame["series"] = _series_label(frame)
    buckets = list(dict.fromkeys(frame["bucket"]))
    counts = frame.groupby("bucket", sort=False)["n_examples"].first()
    names = {b: f"{b}\n(n={int(counts[b])})" for b in buckets}
    frame["bucket label"] = frame["bucket"].map(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(buckets) + 0.4 * frame["series"].nunique()), 4))
    sns.barplot(frame, x="bucket label", y=metric, hue="series", order=[names[b] for b in buckets], ax=ax)
    ax.set(xlabel="docstring length (tokens)", ylabel=metric.replace("_", " "),
           title=title or f"{metric.replace('_', ' ')} by docstring length")
    ax.legend(title=None, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, out_path)
    return fig


def plot_attention_heatmap(attention: np.ndarray, row_tokens: Sequence[str], col_tokens: Sequence[str],
                           out_path: str | Path | None = None, ax: Axes | None = None, title: str | None = None,
                           max_label_chars: int | None = None) -> Figure:
    """Attention [T, S] as a heatmap: row t is generated token t, column j is source token j.

    Drawn with seaborn, so tick i sits at i + 0.5, the centre of cell i; every row and column is
    labelled; a retrieval model's separator column is framed by white lines. Labels are shown
    verbatim: a ``$`` is escaped (``\\$`` in ``get_text()``) so that it never
    starts math; ``max_label_chars`` shortens long ones with an ellipsis.
    """
    if hasattr(attention, "detach"):
        attention = attention.detach().float().cpu().numpy()
    a = np.asarray(attention, dtype=float)
    if a.ndim != 2 or a.shape != (len(row_tokens), len(col_tokens)):
        raise ValueError(f"attention shape {a.shape} does not match {len(row_tokens)} rows x "
                         f"{len(col_tokens)} columns.")

    def short(t: str) -> str:
        t = str(t)
        if max_label_chars is not None and len(t) > max_label_chars:
            t = t[: max_label_chars - 1] + "…"
        return t.replace("$", r"\$")  # matplotlib shows an escaped $ as a plain $

    if ax is None:
        fig, ax = plt.subplots(figsize=(min(2.0 + 0.42 * len(col_tokens), 30), min(1.5 + 0.32 * len(row_tokens), 30)))
    else:
        fig = ax.figure
    sns.heatmap(a, ax=ax, cmap="viridis", vmin=0.0, vmax=1.0, square=False, cbar_kws={"label": "attention"},
                xticklabels=[short(t) for t in col_tokens], yticklabels=[short(t) for t in row_tokens])
    ax.set_xticks(np.arange(len(col_tokens)) + 0.5, [short(t) for t in col_tokens], rotation=90)
    ax.set_yticks(np.arange(len(row_tokens)) + 0.5, [short(t) for t in row_tokens], rotation=0)
    ax.tick_params(labelsize=8, length=0)
    ax.set(xlabel="source (docstring) tokens", ylabel="generated tokens")
    if SEPARATOR in col_tokens:  # a retrieval model: the docstring, then the retrieved function
        j = list(col_tokens).index(SEPARATOR)
        for x in (j, j + 1):
            ax.axvline(x, color="white", linewidth=1.5)
        ax.set_xlabel(f"source tokens: docstring | {SEPARATOR} | retrieved training function")
    if title:
        ax.set_title(title)
    if out_path is not None:
        _save(fig, out_path)
    return fig


def plot_failure_classes(table: pd.DataFrame, out_path: str | Path, n: int | None = None) -> Figure:
    """Horizontal grouped bars: outputs per failure class (rows of ``table``) and model (its columns).

    With ``n`` (outputs per model) the bars are percentages of outputs instead of counts.
    """
    if table.empty or table.shape[1] == 0:
        raise ValueError("The failure table is empty; decode at least one model first.")
    frame = table.rename_axis("failure class").reset_index().melt(
        id_vars="failure class", var_name="model", value_name="outputs")
    value = "outputs"
    if n:
        frame["% of outputs"] = 100.0 * frame["outputs"] / n
        value = "% of outputs"
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.25 * len(frame)))
    sns.barplot(frame, y="failure class", x=value, hue="model", orient="h", ax=ax)
    ax.set(ylabel=None, title="Failure classes (an output can fall into several)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
    return fig
