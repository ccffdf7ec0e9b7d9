"""The figures of the README and the docs, rendered from committed files into marked blocks.

A block in a Markdown file is the text between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``;
``BLOCKS[NAME]`` renders it from the committed files (``plots/*.csv``, ``plots/timings.json``,
``checkpoints/manifest.json``): a table, or sentences that quote figures. ``write_documents``
rewrites every block of ``DOCUMENTS`` and nothing else; ``stale_documents`` lists the files whose
blocks differ from what they would render (the test that keeps the docs honest).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from utils.evaluation.baselines import CONSTANT_MODEL, RETRIEVAL_MODEL
from utils.evaluation.intervals import RANKING
from utils.evaluation.markdown import cell, markdown_table
from utils.evaluation.rerank import RERANK_MODEL
from utils.files import write_text
from utils.paths import project_path
from utils.report.tables import (
    budget_markdown,
    comparison_markdown,
    epoch_times,
    guided_study_markdown,
    headline_markdown,
    recipe_markdown,
    rerank_study_markdown,
    results_markdown,
    reviewer_batching_markdown,
    stopping_markdown,
    timings_markdown,
)
from utils.studies.budget import check_markdown
from utils.studies.budget import summary_markdown as budget_summary_markdown
from utils.studies.recurrent import markdown as recurrent_markdown
from utils.studies.seeds import BEAM, claims, claims_markdown
from utils.studies.seeds import summary_markdown as seed_summary_markdown

DOCUMENTS = ("README.md", "docs/results.md", "docs/benchmarks.md")
BLOCK = re.compile(r"(?P<open><!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /report:(?P=name) -->)",
                   re.S)


@dataclass
class Files:
    """The committed files the blocks are rendered from, read once."""

    root: Path

    def csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.root / "plots" / name)

    def optional_csv(self, name: str) -> pd.DataFrame | None:
        """``plots/<name>``, or None where a study has not written it yet."""
        return self.csv(name) if (self.root / "plots" / name).is_file() else None

    def main_epochs(self) -> pd.DataFrame:
        """The main run's epochs (``plots/training_epochs.csv``, the BPE vocabulary)."""
        epochs = self.csv("training_epochs.csv")
        return epochs[epochs["vocabulary"] == "bpe"]

    def greedy_and_beam(self) -> list[tuple[str, pd.Series, pd.Series]]:
        """(model, greedy row, beam 5 + syntax row) of every model that has both, in the table's order."""
        r = self.results.set_index(["model", "decoding"])
        return [(m, r.loc[(m, "greedy")], r.loc[(m, BEAM)]) for m in dict.fromkeys(self.results["model"])
                if (m, "greedy") in r.index and (m, BEAM) in r.index]

    @cached_property
    def results(self) -> pd.DataFrame:
        return self.csv("results.csv")

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.root / "checkpoints" / "manifest.json").read_text())

    @cached_property
    def timings(self) -> dict:
        return json.loads((self.root / "plots" / "timings.json").read_text())

    def row(self, model: str, decoding: str | None = None) -> pd.Series:
        found = self.results[(self.results["model"] == model)
                             & ((self.results["decoding"] == decoding) if decoding else True)]
        if found.empty:
            raise KeyError(f"plots/results.csv has no row {model} {decoding or ''}")
        return found.iloc[0]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}"


def provenance(files: Files) -> str:
    """Which run the main table and the shipped weights come from, on what machine, in how long."""
    m, t = files.manifest, files.timings
    machine = t["machine"]
    features = ", ".join(name for name, on in (("AVX-512 BF16", machine["avx512_bf16"]), ("AMX", machine["amx"]))
                         if on) or "no native bf16"
    return (f"From `make main` with `{m['params']}`, shipped by `make release` at commit `{m['commit'][:7]}` "
            f"(`checkpoints/manifest.json`), on the corpus with sha256 `{m['corpus_sha256'][:12]}…`: "
            f"{cell(t['stages']['total'], 0)} s ({_minutes(t['stages']['total'])} minutes) on "
            f"{machine['cores']} cores of {machine['cpu']} ({features}), torch {machine['torch']} "
            f"(`plots/timings.json`)." + _added(t))


def projected_seconds(timings: dict) -> float:
    """``make main`` with what a later run added: the timed run, plus half the reviewer's training
    seconds (the two cores share it), plus what every notebook but 02 took longer in the later run."""
    added = timings["added"]
    later = {k: v for k, v in added["stages"].items() if k != "total" and not k.startswith("02")}
    return (timings["stages"]["total"] + sum(added.get("reviewer_epoch_seconds", [])) / 2
            + sum(v - timings["stages"].get(k, 0.0) for k, v in later.items()))


def _added(t: dict) -> str:
    """What was added to the timed run afterwards, and the projected time of ``make main`` with it."""
    if "added" not in t:
        return ""
    added, stages = t["added"], t["added"]["stages"]
    reviewer = sum(added.get("reviewer_epoch_seconds", []))
    return (f" The reviewer ({cell(reviewer, 0)} s for its {len(added.get('reviewer_epoch_seconds', []))} epochs, "
            f"trained afterwards beside two other trainings on the two cores) and the combined system were added "
            f"later (`{added['run']}`: 02 trained nothing new, 03 took {cell(stages['03_bleu.ipynb'], 0)} s against "
            f"{cell(t['stages']['03_bleu.ipynb'], 0)} s), so `make main` from scratch now needs about "
            f"{_minutes(projected_seconds(t))} minutes (projected from these figures, not yet measured end to end).")


def main_job_minutes(files: Files) -> str:
    return f"{_minutes(files.timings['stages']['total'])} minutes"


def headline(files: Files) -> str:
    """The README's opening figures: retrieval, the best model row, the constant program."""
    results, retrieval = files.results, files.row(RETRIEVAL_MODEL)
    models = results[results["decoding"].str.startswith(("greedy", "beam"))]
    best, crystal = models.loc[models["bleu"].idxmax()], models.loc[models["crystal_bleu"].idxmax()]
    above = models[models["bleu"] > retrieval["bleu"]]
    verdict = (f"{len(above)} model rows score above simply returning the training function with the most "
               f"similar docstring" if len(above) else
               "No single model beats simply returning the training function with the most similar docstring")
    constant = files.row(CONSTANT_MODEL)
    return (f"{verdict}: {cell(retrieval['bleu'], 1)} BLEU and {cell(retrieval['crystal_bleu'], 2)} CrystalBLEU. "
            f"The best model row by BLEU is {best['model']} with {best['decoding']} ({cell(best['bleu'], 1)} BLEU, "
            f"{cell(best['crystal_bleu'], 2)} CrystalBLEU); by CrystalBLEU, which leaves out the n-grams every "
            f"Python function shares, {crystal['model']} with {crystal['decoding']} ({cell(crystal['bleu'], 1)} BLEU, "
            f"{cell(crystal['crystal_bleu'], 2)} CrystalBLEU). One constant program returned for every docstring "
            f"scores {cell(constant['bleu'], 1)} BLEU and {cell(constant['crystal_bleu'], 2)} CrystalBLEU."
            + combined_sentence(files))


def combined_sentence(files: Files) -> str:
    """The combined system's row against retrieval (nothing where the table has no such row)."""
    found = files.results[files.results["model"] == RERANK_MODEL]
    if found.empty:
        return ""
    row = found.iloc[0]
    return (f" The combined system ({row['decoding']}, one chooser fitted on the validation split) scores "
            f"{cell(row['bleu'], 1)} BLEU and {cell(row['crystal_bleu'], 2)} CrystalBLEU: "
            f"{_difference(row, 'bleu_vs_retrieval')} BLEU against retrieval and "
            f"{_difference(row, 'crystal_bleu_vs_retrieval')} CrystalBLEU.")


def _difference(row: pd.Series, column: str) -> str:
    """"+2.88 (2.74 to 3.01)" from ``column`` and its ``_low``/``_high``, with "a tie" where the 95%
    interval holds 0."""
    low, high = row[f"{column}_low"], row[f"{column}_high"]
    sign = "+" if row[column] >= 0 else ""
    tie = ", a tie" if low <= 0 <= high else ""
    return f"{sign}{cell(row[column], 2)} ({cell(low, 2)} to {cell(high, 2)}{tie})"


def ranking(files: Files) -> str:
    """Each step of the ranking on the test split (greedy): the difference with its 95% interval, and in
    how many seeds it holds (``plots/seed_study.csv``, when it has the step)."""
    seeds = files.optional_csv("seed_study.csv")
    steps = claims(seeds) if seeds is not None and "decoding" in seeds else pd.DataFrame(columns=["claim"])
    lines = []
    for low, high in RANKING:
        row = files.row(high, "greedy")
        found = steps[steps["claim"] == f"{low} < {high}"]
        seeds_text = (f"; higher by BLEU in {found.iloc[0]['holds']} of {found.iloc[0]['seeds']} training seeds"
                      if len(found) else "; not yet run with other training seeds")
        lines.append(f"- {high} minus {low}, greedy: BLEU {_difference(row, 'bleu_vs_below')}, CrystalBLEU "
                     f"{_difference(row, 'crystal_bleu_vs_below')}{seeds_text}.")
    return "\n".join(lines)


def study_source(table: pd.DataFrame) -> str:
    """Where a study's rows ran, from their ``commit`` and ``params`` columns (rows from before the
    studies recorded them are counted apart)."""
    recorded = table.dropna(subset=["commit"]) if {"commit", "params"} <= set(table) else table.iloc[0:0]
    found = [f"{n} at `{c[:7]}` with `{p}`" for (c, p), n in recorded.groupby(["commit", "params"]).size().items()
             ] if len(recorded) else []
    older = len(table) - len(recorded)
    if older:
        found.append(f"{older} before the study recorded its commit and parameter file")
    return f"Rows of this table: {'; '.join(found)}."


def _plots_csv(name: str, render: Callable[[pd.DataFrame], str]) -> Callable[[Files], str]:
    return lambda files: render(files.csv(name))


def seeds(files: Files) -> str:
    """The seed study's table and claims; a line saying it has not run where its CSV is missing."""
    table = files.optional_csv("seed_study.csv")
    if table is None:
        return "The seed study has not run at this recipe yet (`python -m utils.studies seeds`)."
    return seed_summary_markdown(table) + "\n\n" + claims_markdown(table)


def val_losses(files: Files) -> str:
    """Each model's validation loss per epoch (``plots/training_epochs.csv``, the BPE run)."""
    epochs = files.main_epochs()
    return "; ".join(f"{model} " + " → ".join(cell(v, 2) for v in rows.sort_values("epoch")["val_loss"])
                     for model, rows in epochs.groupby("model", sort=False)) + "."


def bleu_parts(files: Files) -> str:
    """Per model, greedy beside beam 5 + syntax: BLEU, its brevity penalty and n-gram precision, and
    CrystalBLEU (``plots/results.csv``)."""
    columns = ("bleu", "brevity_penalty", "ngram_precision", "crystal_bleu")
    rows = [[m, *(cell(row[c], 2) for c in columns for row in (g, b))] for m, g, b in files.greedy_and_beam()]
    header = ["model", *(f"{name} {d}" for name in ("BLEU", "BP", "n-gram precision", "CrystalBLEU")
                         for d in ("greedy", "beam"))]
    return markdown_table(rows, header)


def beam_against_greedy(files: Files) -> str:
    """Per model, what beam 5 + syntax changes against greedy, split into BLEU's two parts: log BLEU is
    log BP + log precision, so the part whose logarithm moves more accounts for most of the change."""
    lines = []
    for m, g, b in files.greedy_and_beam():
        change = b["bleu"] - g["bleu"]
        by_bp = abs(np.log(b["brevity_penalty"] / g["brevity_penalty"]))
        by_precision = abs(np.log(b["ngram_precision"] / g["ngram_precision"])) if g["ngram_precision"] > 0 else np.inf
        cause = ("the length (brevity penalty) moves more" if by_bp > by_precision
                 else "the n-grams (precision) move more")
        lines.append(f"- {m}: BLEU {'+' if change >= 0 else ''}{cell(change, 2)}; BP {cell(g['brevity_penalty'], 2)} → "
                     f"{cell(b['brevity_penalty'], 2)}, n-gram precision {cell(g['ngram_precision'], 2)} → "
                     f"{cell(b['ngram_precision'], 2)}: {cause}; CrystalBLEU {cell(g['crystal_bleu'], 2)} → "
                     f"{cell(b['crystal_bleu'], 2)}.")
    return "\n".join(lines)


def epoch_seconds(files: Files) -> str:
    """Each model's seconds per epoch in the main job (training and validation, one core each beside
    another model), from ``plots/training_epochs.csv``."""
    epochs = files.main_epochs()
    wide = epochs.pivot(index="model", columns="epoch", values="epoch_seconds")
    wide = wide.reindex([m for m in dict.fromkeys(epochs["model"]) if m in wide.index])
    return markdown_table([[m, *(cell(v, 0) for v in row)] for m, row in wide.iterrows()],
                          ["model", *(f"epoch {int(e)} (s)" for e in wide.columns)])


def retrieval_study_markdown(table: pd.DataFrame) -> str:
    """``plots/retrieval_study.csv``: what each model reads, its validation loss, greedy token accuracy
    and beam-5 BLEU on the validation rows notebook 03 tunes on."""
    rows = [[r["model"], r.get("retrieval_input") if isinstance(r.get("retrieval_input"), str) else "",
             cell(r.get("val_loss"), 3), cell(r.get("val_token_acc_greedy"), 1), cell(r["val_beam_bleu"], 2)]
            for r in table.to_dict("records")]
    return markdown_table(rows, ["model", "retrieval input", "validation loss (TF)", "greedy token acc %",
                                 "beam5 BLEU (validation rows)"])


BLOCKS: dict[str, Callable[[Files], str]] = {
    "provenance": provenance,
    "main-job-minutes": main_job_minutes,
    "headline": headline,
    "results-short": lambda files: headline_markdown(files.results),
    "results-full": lambda files: results_markdown(files.results),
    "ranking": ranking,
    "epoch-seconds": epoch_seconds,
    "bleu-parts": bleu_parts,
    "beam-against-greedy": beam_against_greedy,
    "main-job-stages": lambda files: timings_markdown({"make main": files.timings["stages"]}),
    "val-losses": val_losses,
    "budget-runs": _plots_csv("budget_study.csv", budget_markdown),
    "retrieval-study": _plots_csv("retrieval_study.csv", retrieval_study_markdown),
    "guided-study": lambda files: (guided_study_markdown(table) if (table := files.optional_csv("guided_study.csv"))
                                   is not None else "Not run yet: `python -m utils.studies guided` writes it."),
    "rerank-study-k10": _plots_csv("rerank_study_k10.csv", rerank_study_markdown),
    "rerank-study": lambda files: (rerank_study_markdown(table) if (table := files.optional_csv("rerank_study.csv"))
                                   is not None else "Not run yet: notebook 03 of the main job writes it."),
    "reviewer-batching": _plots_csv("reviewer_batching.csv", reviewer_batching_markdown),
    "vocabulary-comparison": _plots_csv("vocabulary_comparison.csv", comparison_markdown),
    "study-settings": _plots_csv("study_settings.csv", results_markdown),
    "study-settings-stopping": _plots_csv("study_settings_epochs.csv", lambda t: stopping_markdown(epoch_times(t))),
    "recipe-study": _plots_csv("recipe_study.csv", recipe_markdown),
    "budget-source": _plots_csv("budget_study.csv", study_source),
    "recurrent-source": _plots_csv("recurrent_study.csv", study_source),
    "budget-summary": _plots_csv("budget_study.csv", budget_summary_markdown),
    "budget-check": _plots_csv("budget_check.csv", check_markdown),
    "recurrent": _plots_csv("recurrent_study.csv", recurrent_markdown),
    "seeds": seeds,
}


def render(text: str, files: Files, where: str = "") -> str:
    """``text`` with every block rendered again; an unknown block name is a ValueError naming it."""
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"{where}: unknown block <!-- report:{name} -->; known: {', '.join(BLOCKS)}")
        return match["open"] + BLOCKS[name](files).rstrip("\n") + "\n" + match["close"]

    return BLOCK.sub(fill, text)


def stale_documents(root: str | Path = ".", documents: tuple[str, ...] = DOCUMENTS) -> list[str]:
    """The documents whose blocks differ from what the committed files render."""
    base, files = project_path(root), Files(project_path(root))
    return [d for d in documents if (text := (base / d).read_text()) != render(text, files, d)]


def write_documents(root: str | Path = ".", documents: tuple[str, ...] = DOCUMENTS) -> list[str]:
    """Rewrite every block of ``documents`` from the committed files; the documents that changed."""
    base, files = project_path(root), Files(project_path(root))
    changed = []
    for d in documents:
        text = (base / d).read_text()
        if (new := render(text, files, d)) != text:
            write_text(base / d, new)
            changed.append(d)
    return changed
