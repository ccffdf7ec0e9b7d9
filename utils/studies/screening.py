"""Screening runs on the validation split: train one model on a processed corpus, decode the
validation docstrings greedily and score them on tokens, as notebook 03 scores the test split.

Shared by the studies that choose the project's settings (``utils.studies.vocabulary``,
``utils.studies.recipe``). The test split is never read here.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.config import Seq2SeqConfig
from utils.data.batch import Example, encode_pairs
from utils.data.processed import load_split, load_vocabs
from utils.data.vocabulary import Vocabulary, known_tokens
from utils.evaluation.baselines import (
    FLOOR_MODEL,
    RETRIEVAL_MODEL,
    retrieval_baseline,
    shared_ngrams,
    shuffled_reference_baseline,
)
from utils.evaluation.results import decode_split, load_trained
from utils.evaluation.source_reliance import source_reliance
from utils.metrics import NGram, evaluate_outputs
from utils.paths import git_commit
from utils.precision import resolve_precision
from utils.run_notebooks import load_params
from utils.training.trainer import train_model


@dataclass
class ScreeningData:
    """A processed corpus's vocabularies, encoded train and validation pairs, validation rows, and
    CrystalBLEU's ignored n-grams (those of every training function, whatever part of it an arm trains on)."""

    src: Vocabulary
    trg: Vocabulary
    train: list[Example]
    valid: list[Example]
    valid_rows: list[dict]
    shared: frozenset[NGram] | None = None

    @classmethod
    def load(cls, data_dir: str | Path) -> "ScreeningData":
        src, trg = load_vocabs(data_dir)
        train_rows, valid_rows = load_split(data_dir, "train"), load_split(data_dir, "valid")
        return cls(src, trg, encode_pairs(train_rows, src, trg, with_copy=True),
                   encode_pairs(valid_rows, src, trg, with_copy=True), valid_rows, shared_ngrams(train_rows))


def found_seeds(out: Path) -> list[int]:
    """The seeds whose runs a study keeps under ``out`` (its ``seed-<s>/`` folders), in order."""
    return sorted(int(d.name.removeprefix("seed-")) for d in out.glob("seed-*") if d.is_dir())


def provenance(params_path: str) -> dict[str, str]:
    """What a study's row records of where it ran: the commit (take it when the process starts: the code
    it imported) and the parameter file."""
    return {"commit": git_commit(), "params": params_path}


def load_study_data(parser: argparse.ArgumentParser, params_path: str, threads: int = 0) -> tuple[dict, ScreeningData]:
    """A study command's parameter file and its processed corpus (a bad file is ``parser``'s error,
    exit 2), on ``threads`` torch threads (0: torch's default)."""
    try:
        params = load_params(params_path)
        data = ScreeningData.load(params["data_dir"])
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    if threads:
        torch.set_num_threads(threads)
    return params, data


def greedy_figures(checkpoint_dir: str | Path, model: str, rows: list[dict], trg: Vocabulary,
                   shared: frozenset[NGram] | None = None) -> dict:
    """Decode ``rows``' docstrings greedily with ``<checkpoint_dir>/<model>_best.pt``; the metrics of
    notebook 03 on tokens (pieces joined back), CrystalBLEU with ``shared``."""
    loaded = load_trained(checkpoint_dir, [model], "cpu", log=lambda _: None)[model]
    decoded = decode_split(loaded, rows)
    return evaluate_outputs(decoded.hypotheses, [r["code_tokens"] for r in rows],
                            [r["docstring_tokens"] for r in rows], known_tokens(trg), shared)


def train_and_validate(config: Seq2SeqConfig, data: ScreeningData, checkpoint_dir: str | Path) -> dict:
    """Train ``config`` (resuming what ``checkpoint_dir`` holds), then its free-running validation
    figures: greedy decoding, metrics on tokens; the best epoch's teacher-forced loss and how much
    the docstring lowers it (``utils.evaluation.source_reliance``)."""
    result = train_model(config, data.train, data.valid, data.src, data.trg, checkpoint_dir=checkpoint_dir,
                         device="cpu", progress=False)
    m = greedy_figures(checkpoint_dir, config.model, data.valid_rows, data.trg, data.shared)
    best = result.history[result.best_epoch - 1]
    reliance = source_reliance(result.model, data.valid_rows, data.src, data.trg,
                               precision=resolve_precision(config.precision, "cpu"))
    return {
        "model": config.model, "train_pairs": len(data.train), "val_loss": best["val_loss"],
        "val_bleu": m["bleu"], "val_crystal_bleu": m.get("crystal_bleu", float("nan")),
        "val_codebleu": m["codebleu"], "val_exact_match": m["exact_match"],
        "val_distinct_outputs": m["distinct_outputs"], "val_syntax_valid": m["syntax_valid"],
        "val_unk_rate": m["unk_rate"], "val_copied_identifiers": m["copied_identifiers"],
        "val_source_gap": reliance.gap,
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "epoch_seconds": sum(h["epoch_seconds"] for h in result.history) / len(result.history),
    }


def baseline_figures(data_dir: str | Path) -> list[dict]:
    """The two baselines of notebook 03 on a processed corpus's validation split, as screening rows:
    retrieval (the nearest of its training docstrings) and the shuffled-reference floor."""
    train, valid = load_split(data_dir, "train"), load_split(data_dir, "valid")
    vocab, shared = known_tokens(load_vocabs(data_dir)[1]), shared_ngrams(train)
    rows = []
    for name, m in ((RETRIEVAL_MODEL, retrieval_baseline(train, valid, vocab, shared)),
                    (FLOOR_MODEL, shuffled_reference_baseline(valid, vocab, shared))):
        rows.append({"recipe": name, "model": "baseline", "train_pairs": len(train), "val_bleu": m["bleu"],
                     "val_crystal_bleu": m["crystal_bleu"],
                     "val_codebleu": m["codebleu"], "val_exact_match": m["exact_match"],
                     "val_distinct_outputs": m["distinct_outputs"], "val_syntax_valid": m["syntax_valid"],
                     "val_unk_rate": m["unk_rate"], "val_copied_identifiers": m["copied_identifiers"]})
    return rows
