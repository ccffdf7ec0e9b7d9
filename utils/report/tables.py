"""The Markdown tables of the results, each from a file a run or a study wrote (never typed numbers):
the main table in full (``results_markdown``) and short with intervals (``headline_markdown``), word
against BPE, seconds per epoch, stage times, the recipe and budget studies."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from utils.checkpoint import load_checkpoint
from utils.evaluation.markdown import cell, markdown_table
from utils.evaluation.rerank import FOLDS
from utils.paths import project_path
from utils.studies.recipe import STUDY

# (column in plots/results.csv, header in the README, digits); None digits = integer with separators
README_COLUMNS: list[tuple[str, str, int | None]] = [
    ("model", "model", 0),
    ("decoding", "decoding", 0),
    ("length_penalty", "length penalty", 0),
    ("bleu", "BLEU", 2),
    ("brevity_penalty", "BP", 2),
    ("crystal_bleu", "CrystalBLEU", 2),
    ("codebleu", "CodeBLEU", 2),
    ("token_accuracy", "token acc %", 2),
    ("exact_match", "exact %", 1),
    ("syntax_valid", "syntax valid %", 1),
    ("unk_rate", "<UNK> %", 1),
    ("copied_identifiers", "copied ids %", 1),
    ("distinct_outputs", "distinct outputs %", 1),
    ("output_length", "output length %", 0),
    ("test_ppl", "test ppl (TF)", 2),
    ("source_gap", "docstring gap (TF)", 2),
    ("same_as_retrieved", "same as retrieved %", 1),
    ("better_than_retrieved", "better than retrieved %", 1),
    ("decode_seconds", "decode s", 1),
    ("parameters", "params", None),
    ("train_seconds", "train s", 0),
    ("epochs", "epochs", 0),
    ("ended_by", "ended by", 0),
]
# The README's short table: each model greedy and with its best-tuned decoding, beside the two baselines;
# README_COLUMNS' headers and digits, BLEU and CodeBLEU to one decimal (CrystalBLEU, near 0, to two).
HEADLINE = ("model", "decoding", "bleu", "brevity_penalty", "crystal_bleu", "codebleu", "syntax_valid",
            "distinct_outputs", "source_gap", "epochs", "ended_by")
HEADLINE_COLUMNS = [(col, header, 1 if col in ("bleu", "codebleu") else digits)
                    for col, header, digits in README_COLUMNS if col in HEADLINE]
HEADLINE_DECODINGS = ("greedy", "beam5+syntax")
# The columns the word-vs-BPE comparison puts side by side.
COMPARED: list[tuple[str, str]] = [
    ("bleu", "BLEU"),
    ("codebleu", "CodeBLEU"),
    ("unk_rate", "<UNK> %"),
    ("syntax_valid", "syntax valid %"),
    ("copied_identifiers", "copied ids %"),
    ("distinct_outputs", "distinct %"),
]


def results_markdown(results: pd.DataFrame) -> str:
    """``plots/results.csv`` as the README's table."""
    rows = [[cell(r.get(col), d) for col, _, d in README_COLUMNS] for r in results.to_dict("records")]
    return markdown_table(rows, [h for _, h, _ in README_COLUMNS])


def with_interval(row: dict, col: str, digits: int | None) -> str:
    """``row[col]`` with its 95% bootstrap interval, "12.3 (11.2-13.4)", where the row has one."""
    low, high = row.get(f"{col}_low"), row.get(f"{col}_high")
    if low is None or pd.isna(low) or pd.isna(row.get(col)):
        return cell(row.get(col), digits)
    return f"{cell(row[col], digits)} ({cell(low, digits)}-{cell(high, digits)})"


def headline_markdown(results: pd.DataFrame) -> str:
    """The README's short table: the rows of ``HEADLINE_DECODINGS`` and the baselines, fewer columns;
    BLEU and CrystalBLEU with their 95% bootstrap intervals."""
    rows = results[results["decoding"].isin(HEADLINE_DECODINGS) | ~results["decoding"].map(_is_model_row)]
    header = [h + (" (95% CI)" if col in ("bleu", "crystal_bleu") else "") for col, h, _ in HEADLINE_COLUMNS]
    return markdown_table([[with_interval(r, col, d) for col, _, d in HEADLINE_COLUMNS]
                           for r in rows.to_dict("records")], header)


def vocabulary_comparison(bpe: pd.DataFrame, word: pd.DataFrame,
                          decodings: Sequence[str] = ("greedy", "greedy+syntax")) -> pd.DataFrame:
    """One row per model (and baseline) and decoding: each compared column under word and BPE.

    Rows are matched on ``model`` and the ``decoding`` label exactly (``beam5`` with ``beam5``: both runs
    use the same beam width; each keeps the length penalty it chose). Baseline rows are always kept.
    """
    def key(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df["decoding"] = df["decoding"].astype(str)
        return df.set_index(["model", "decoding"])

    b, w = key(bpe), key(word)
    keep = [k for k in b.index if k in w.index and (k[1] in decodings or not _is_model_row(k[1]))]
    out = pd.DataFrame(index=pd.MultiIndex.from_tuples(keep, names=["model", "decoding"]))
    for col, _ in COMPARED:
        out[f"{col}_word"] = [w.loc[k, col] for k in keep]
        out[f"{col}_bpe"] = [b.loc[k, col] for k in keep]
    return out.reset_index()


def _is_model_row(decoding: str) -> bool:
    return decoding.startswith(("greedy", "beam"))


def comparison_markdown(table: pd.DataFrame) -> str:
    """:func:`vocabulary_comparison` as a Markdown table: ``word → bpe`` in each cell."""
    rows = []
    for r in table.to_dict("records"):
        rows.append([r["model"], r["decoding"]] + [
            f"{cell(r[f'{col}_word'], 1)} → {cell(r[f'{col}_bpe'], 1)}" for col, _ in COMPARED])
    return markdown_table(rows, ["model", "decoding"] + [f"{h} word → BPE" for _, h in COMPARED])


def epoch_history(checkpoint_dir: str | Path, models: Sequence[str], vocabulary: str) -> pd.DataFrame:
    """Every finished epoch of every model in ``checkpoint_dir`` (from ``<model>_last.pt``), with the
    epoch cap the model trained under (``epoch_cap``)."""
    records = []
    for model in models:
        path = project_path(checkpoint_dir) / f"{model}_last.pt"
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        for h in ckpt["history"]:
            records.append({"vocabulary": vocabulary, "model": model, "epoch": h["epoch"],
                            "epoch_cap": ckpt["config"]["epochs"],
                            "train_seconds": h["train_seconds"], "epoch_seconds": h["epoch_seconds"],
                            "train_tokens_per_s": h["train_tokens_per_s"], "train_loss": h["train_loss"],
                            "val_loss": h["val_loss"], "val_token_acc_greedy": h["val_token_acc_greedy"]})
    return pd.DataFrame.from_records(records)


def epoch_times(history: pd.DataFrame) -> pd.DataFrame:
    """Seconds of the fastest epoch (training + validation: other work on a shared machine can only
    slow an epoch down), epochs run and best validation loss, per model and vocabulary."""
    g = history.groupby(["model", "vocabulary"], sort=False)
    cap = {"epoch_cap": ("epoch_cap", "max")} if "epoch_cap" in history else {}
    out = g.agg(epochs=("epoch", "max"), seconds_per_epoch=("epoch_seconds", "min"),
                best_val_loss=("val_loss", "min"), **cap).reset_index()
    out["best_epoch"] = [int(history.loc[i, "epoch"]) for i in g["val_loss"].idxmin()]
    return out


def stopping_markdown(times: pd.DataFrame) -> str:
    """Per model: epochs run, the epoch of the best validation loss (the checkpoint kept), that loss,
    and whether early stopping or the model's epoch cap ended training."""
    rows = []
    for r in times.to_dict("records"):
        ended = "epoch cap" if r["epochs"] >= r["epoch_cap"] else "early stopping"
        rows.append([r["model"], f"{int(r['epochs'])}", f"{int(r['best_epoch'])}", cell(r["best_val_loss"], 3),
                     ended, cell(r["seconds_per_epoch"], 0)])
    return markdown_table(rows, ["model", "epochs run", "best epoch", "best val loss (TF)", "ended by",
                                 "s / epoch (fastest)"])


def epoch_times_markdown(times: pd.DataFrame) -> str:
    """Per model: seconds per epoch and epochs run under each vocabulary (validation losses are per
    token or per piece, not comparable across vocabularies, so they stay in the CSV)."""
    vocabularies = list(dict.fromkeys(times["vocabulary"]))
    rows = []
    for model in dict.fromkeys(times["model"]):
        cells = [model]
        for v in vocabularies:
            hit = times[(times["model"] == model) & (times["vocabulary"] == v)]
            if hit.empty:
                cells += ["", ""]
                continue
            r = hit.iloc[0]
            cells += [f"{r['seconds_per_epoch']:.0f}", f"{int(r['epochs'])}"]
        rows.append(cells)
    header = ["model"] + [f"{v} {h}" for v in vocabularies for h in ("s / epoch (fastest)", "epochs")]
    return markdown_table(rows, header)


def timings_markdown(timings: dict[str, dict[str, float]]) -> str:
    """Wall seconds of each notebook (rows) for each run (columns)."""
    runs = list(timings)
    stages = list(dict.fromkeys(s for t in timings.values() for s in t))
    rows = [[s.removesuffix(".ipynb")] + [cell(timings[r].get(s), 0) for r in runs] for s in stages]
    return markdown_table(rows, ["stage"] + [f"{r} (s)" for r in runs])


def _changes(row: dict) -> str:
    """What a recipe changes from the study's: ``teacher_forcing 1.0, train_size all``."""
    changed = []
    for key, base in STUDY.items():
        value = row.get(key)
        missing = value is None or (isinstance(value, float) and pd.isna(value))
        if key == "train_size":  # None or "all": every pair; "10000.0" once read back
            value = None if missing or value == "all" else int(float(value))
        elif missing:  # screened before this lever was added: the study's value
            value = base
        if value != base:
            changed.append(f"{key} {'all' if value is None else value}")
    return ", ".join(changed) or "(the study's recipe)"


def _baseline_change(row: dict) -> str:
    if str(row["recipe"]).startswith("retrieval"):
        return f"nearest of {int(row['train_pairs']):,} training docstrings"
    return "another validation reference"


def _epochs(row: dict) -> str:
    if pd.isna(row.get("best_epoch")):
        return ""
    return f"{int(row['best_epoch'])} / {int(row['epochs_run'])}"


def recipe_markdown(table: pd.DataFrame) -> str:
    """``plots/recipe_study.csv`` as a Markdown table: one row per recipe and model, validation split."""
    header = ["model", "recipe", "changes", "val loss (TF)", "docstring gap (TF)", "val BLEU", "val CodeBLEU",
              "distinct %", "syntax valid %", "exact %", "best epoch / run", "s per epoch"]
    rows = [[r["model"], r["recipe"], _changes(r) if r["model"] != "baseline" else _baseline_change(r),
             cell(r.get("val_loss"), 3), cell(r.get("val_source_gap"), 3), cell(r["val_bleu"], 2),
             cell(r["val_codebleu"], 2), cell(r["val_distinct_outputs"], 1), cell(r["val_syntax_valid"], 1),
             cell(r["val_exact_match"], 1), _epochs(r), cell(r.get("epoch_seconds"), 0)]
            for r in table.to_dict("records")]
    return markdown_table(rows, header)


def budget_markdown(table: pd.DataFrame) -> str:
    """``plots/budget_study.csv``: one row per model, arm and seed (size, pairs, epochs, peak rate),
    validation split."""
    header = ["model", "arm", "seed", "budget", "embed / hidden", "pairs", "epochs", "peak lr", "val loss (TF)",
              "val BLEU", "val CrystalBLEU", "val CodeBLEU", "distinct %", "docstring gap", "train s", "ended by"]
    rows = [[r.get("model", "attention"), r["arm"], cell(r.get("seed"), 0), r["budget"],
             f"{r['embed_dim']} / {r['hidden_dim']}", cell(r["train_pairs"], None), cell(r["epochs"], 0),
             f"{r['lr']:g}", cell(r["val_loss"], 3), cell(r["val_bleu"], 2), cell(r.get("val_crystal_bleu"), 2),
             cell(r["val_codebleu"], 2),
             cell(r["val_distinct_outputs"], 1), cell(r.get("val_source_gap"), 2), cell(r["train_seconds"], 0),
             r["ended_by"]] for r in table.to_dict("records")]
    return markdown_table(rows, header)


def rerank_study_markdown(table: pd.DataFrame) -> str:
    """``plots/rerank_study.csv``: each candidate set of the combined system, its validation BLEU
    (cross-validated: the choice; fitted on all of validation) and, for the record, its test
    BLEU and CrystalBLEU with the share of picks a model wrote."""
    rows = [[int(r["k"]), r["beams"], cell(r["valid_cv_bleu"], 2), cell(r["valid_fitted_bleu"], 2),
             cell(r["test_bleu"], 2), cell(r["test_crystal_bleu"], 2), cell(r["test_brevity_penalty"], 2),
             cell(r["test_generated_picked"], 1), "yes" if r["chosen"] else ""] for r in table.to_dict("records")]
    return markdown_table(rows, ["k nearest", "beams", f"validation BLEU ({FOLDS}-fold CV)", "validation BLEU (fitted)",
                                 "test BLEU", "test CrystalBLEU", "test BP", "test picks generated %", "chosen"])


def guided_study_markdown(table: pd.DataFrame) -> str:
    """``plots/guided_study.csv``: each model's beam plain (bonus 0) and retrieval-guided, its own BLEU
    and the combined system's cross-validated BLEU with it as candidates (validation split)."""
    rows = [[r["model"], cell(r["bonus"], 1), int(r["k"]), cell(r["beam_bleu"], 2), cell(r["valid_cv_bleu"], 2)]
            for r in table.to_dict("records")]
    return markdown_table(rows, ["model", "bonus (nats)", "k nearest", "beam's own BLEU",
                                 f"combined, validation BLEU ({FOLDS}-fold CV)"])


def reviewer_batching_markdown(table: pd.DataFrame) -> str:
    """``plots/reviewer_batching.csv``: the reviewer's batches sorted by target or by source length, its
    epochs' seconds (how they were timed), validation losses, and the combined system's validation BLEU
    (cross-validated) with it, with retrieval's candidates alone (5 nearest) and with both beams."""
    def joined(r: dict, what: str, digits: int) -> str:
        return " / ".join(cell(r[f"epoch{e}_{what}"], digits) for e in (1, 2, 3) if pd.notna(r[f"epoch{e}_{what}"]))
    rows = [[r["batches_sorted_by"], int(r["epochs"]), r["timed"], joined(r, "seconds", 0), joined(r, "val_loss", 3),
             cell(r["cv_5_none"], 2), cell(r["cv_5_both"], 2), r["commit"]] for r in table.to_dict("records")]
    return markdown_table(rows, ["batches sorted by", "epochs", "timed", "epoch seconds", "validation loss",
                                 f"5 nearest, CV BLEU ({FOLDS} folds)", "5 nearest + both beams, CV BLEU", "commit"])
