"""utils.evaluation.plotting: every figure is saved, drawn from the data given, and labelled where it should be."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from utils.evaluation.plotting import (  # noqa: E402
    plot_attention_heatmap,
    plot_failure_classes,
    plot_length_buckets,
    plot_length_histograms,
    plot_training_curves,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _attention(t: int, s: int) -> np.ndarray:
    a = np.random.default_rng(0).random((t, s))
    return a / a.sum(1, keepdims=True)


def test_heatmap_ticks_label_their_own_cells(tmp_path):
    cols = ["<SOS>", "Return", "the", "sum", "of", "a", "and", "b", "<EOS>"]
    rows = ["def", "add", "(", "a", ",", "b", ")", ":"]
    a = _attention(len(rows), len(cols))
    out = tmp_path / "attn.png"
    fig = plot_attention_heatmap(a, rows, cols, out, title="attention")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert [t.get_text() for t in ax.get_yticklabels()] == rows
    np.testing.assert_allclose(ax.get_xticks(), np.arange(len(cols)) + 0.5)
    np.testing.assert_allclose(ax.get_yticks(), np.arange(len(rows)) + 0.5)
    # cell (i, j) of the drawn image is attention[i, j]: row 0 at the top, column 0 at the left
    mesh = ax.collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(a.shape), a)
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # y axis inverted: the first generated token on top
    assert out.is_file() and out.stat().st_size > 0
    assert ax.get_title() == "attention"


def test_heatmap_accepts_tensors_axes_and_odd_tokens(tmp_path):
    cols = ["<SOS>", "$", "cost", "in", "$x$", "<EOS>"]
    rows = ["'$%s$'", "x", "**"]
    fig, ax = plt.subplots()
    got = plot_attention_heatmap(torch.tensor(_attention(3, 6)), rows, cols, ax=ax)
    assert got is fig
    # "$" is escaped so that matplotlib shows it as a plain "$" instead of parsing math
    assert [t.get_text() for t in ax.get_xticklabels()] == [c.replace("$", "\\$") for c in cols]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["'\\$%s\\$'", "x", "**"]
    fig.savefig(tmp_path / "odd.png")  # "'$%s$'" read as math would raise here
    assert not any(t._preprocess_math(t.get_text())[1] for t in ax.get_xticklabels() + ax.get_yticklabels())
    with pytest.raises(ValueError, match="does not match"):
        plot_attention_heatmap(_attention(3, 5), rows, cols)


def test_heatmap_shortens_long_labels_only_when_asked():
    long = "'" + "x" * 40 + "'"
    fig = plot_attention_heatmap(_attention(1, 3), ["a"], ["<SOS>", long, "<EOS>"], max_label_chars=10)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[1] == long[:9] + "…" and labels[0] == "<SOS>"


def test_training_curves_come_from_the_history(tmp_path):
    histories = {
        "rnn": [{"epoch": 1, "train_loss": 5.0, "val_loss": 4.8, "val_token_acc_greedy": 2.0},
                {"epoch": 2, "train_loss": 4.0, "val_loss": 4.1, "val_token_acc_greedy": 5.0}],
        "attention": [{"epoch": 1, "train_loss": 4.5, "val_loss": 4.0, "val_token_acc_greedy": 7.0}],
        "empty": [],
    }
    out = tmp_path / "curves.png"
    fig = plot_training_curves(histories, out, best_epochs={"rnn": 2})
    ax_loss, ax_acc = fig.axes[:2]
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    np.testing.assert_allclose(lines["rnn train"].get_ydata(), [5.0, 4.0])
    np.testing.assert_allclose(lines["rnn valid (teacher-forced)"].get_ydata(), [4.8, 4.1])
    np.testing.assert_allclose(lines["attention train"].get_xdata(), [1])
    acc = {line.get_label(): line for line in ax_acc.get_lines()}
    assert set(acc) == {"rnn", "attention"}
    np.testing.assert_allclose(acc["rnn"].get_ydata(), [2.0, 5.0])
    stars = [line for line in ax_loss.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == [2] and list(stars[0].get_ydata()) == [4.1]
    assert out.is_file()
    with pytest.raises(ValueError, match="No training history"):
        plot_training_curves({"rnn": []}, tmp_path / "none.png")


def _bucket_table() -> pd.DataFrame:
    rows = []
    for model, base in (("rnn", 5.0), ("attention", 9.0)):
        for k, (bucket, n) in enumerate((("0-10", 40), ("11-20", 30), ("21-30", 20), (">30", 10))):
            rows.append({"model": model, "decoding": "greedy", "bucket": bucket, "n_examples": n,
                         "n_target_tokens": 10 * n, "bleu": base + k, "token_accuracy": 2 * base})
    return pd.DataFrame(rows)


def test_length_buckets(tmp_path):
    table = _bucket_table()
    fig = plot_length_buckets(table, tmp_path / "lb.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0-10\n(n=40)", "11-20\n(n=30)", "21-30\n(n=20)",
                                                            ">30\n(n=10)"]
    heights = [[bar.get_height() for bar in c] for c in ax.containers]
    assert heights == [[5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]
    assert (tmp_path / "lb.png").is_file()
    # two decodings of one model become two series
    both = pd.concat([table, table.assign(decoding="beam5")], ignore_index=True)
    fig = plot_length_buckets(both, tmp_path / "lb2.png", metric="token_accuracy")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "rnn (beam5)" in labels and len(labels) == 4
    with pytest.raises(ValueError, match="No column"):
        plot_length_buckets(table, tmp_path / "x.png", metric="nope")


def test_failure_classes(tmp_path):
    table = pd.DataFrame({"rnn": [3, 0, 7], "attention": [1, 2, 7]},
                         index=pd.Index(["syntax: other", "too long", "ok"], name="failure class"))
    fig = plot_failure_classes(table, tmp_path / "fail.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["syntax: other", "too long", "ok"]
    widths = [[bar.get_width() for bar in c] for c in ax.containers]
    assert widths == [[3, 0, 7], [1, 2, 7]]
    fig = plot_failure_classes(table, tmp_path / "fail_pct.png", n=10)
    assert [bar.get_width() for bar in fig.axes[0].containers[0]] == pytest.approx([30.0, 0.0, 70.0])
    assert (tmp_path / "fail.png").is_file() and (tmp_path / "fail_pct.png").is_file()


def test_length_histograms_still_work(tmp_path):
    rows = [{"docstring_tokens": ["a"] * n, "code_tokens": ["x"] * (2 * n)} for n in range(1, 6)]
    plot_length_histograms({"train": rows, "test": rows[:2]}, tmp_path / "h.png")
    assert (tmp_path / "h.png").is_file()
