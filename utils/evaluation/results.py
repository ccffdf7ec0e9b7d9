"""Evaluating trained checkpoints on a split: loading, decoding, the results table with its baseline
rows (``baselines``) and intervals (``intervals``), length buckets. (The length penalty is chosen in
``length_penalty``, attention analysed in ``attention_analysis``, the study's figures quoted in ``study_results``.)

Free-running metrics (BLEU, token accuracy, exact match, syntax validity, ``<UNK>`` rate, copied
identifiers) are computed by :func:`utils.metrics.evaluate_outputs` on decoded outputs, where the
model never sees a reference token. Teacher-forced perplexity is a different quantity (every step
reads the reference prefix) and is computed apart, by :func:`teacher_forced_perplexity`, as is the
docstring gap (:func:`teacher_forced_figures` gives both: the gap is the loss with other rows'
docstrings minus the loss with their own).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from utils.checkpoint import LoadedModel, load_checkpoint, run_or_shipped
from utils.config import model_names, resolve_device
from utils.data.batch import SEPARATOR, encode_pairs, retrieved_code, source_symbols
from utils.data.processed import load_split
from utils.data.retrieval import retrieval_outputs
from utils.data.subwords import join_pieces, merge_attention
from utils.data.vocabulary import known_tokens
from utils.decoding.search import check_length_penalty, decode_examples, ids_to_tokens
from utils.evaluation.baselines import RETRIEVAL_MODEL, baseline_rows, references, shared_ngrams
from utils.evaluation.intervals import interval_columns
from utils.evaluation.source_reliance import source_reliance
from utils.files import save_csv
from utils.metrics import (
    edit_figures,
    evaluate_outputs,
    length_bucket_table,
    perplexity,
)
from utils.paths import TRAIN_HINT, project_path
from utils.precision import resolve_precision
from utils.training.trainer import evaluate_loss

# Column names of the results table -> labels for display.
RESULT_LABELS: dict[str, str] = {
    "model": "model",
    "decoding": "decoding",
    "length_penalty": "length penalty (beam)",
    "n": "test examples",
    "bleu": "BLEU",
    "bleu_low": "BLEU 95% low",
    "bleu_high": "BLEU 95% high",
    "brevity_penalty": "BLEU brevity penalty",
    "ngram_precision": "BLEU n-gram precision (geometric mean)",
    "bleu_study": "BLEU (study variant, inflated)",
    "codebleu": "CodeBLEU",
    "crystal_bleu": "CrystalBLEU",
    "crystal_bleu_low": "CrystalBLEU 95% low",
    "crystal_bleu_high": "CrystalBLEU 95% high",
    "bleu_vs_retrieval": "BLEU minus retrieval's",
    "bleu_vs_retrieval_low": "BLEU minus retrieval's, 95% low",
    "bleu_vs_retrieval_high": "BLEU minus retrieval's, 95% high",
    "crystal_bleu_vs_retrieval": "CrystalBLEU minus retrieval's",
    "crystal_bleu_vs_retrieval_low": "CrystalBLEU minus retrieval's, 95% low",
    "crystal_bleu_vs_retrieval_high": "CrystalBLEU minus retrieval's, 95% high",
    "compared_with": "model below in the ranking",
    "bleu_vs_below": "BLEU minus its",
    "bleu_vs_below_low": "BLEU minus its, 95% low",
    "bleu_vs_below_high": "BLEU minus its, 95% high",
    "crystal_bleu_vs_below": "CrystalBLEU minus its",
    "crystal_bleu_vs_below_low": "CrystalBLEU minus its, 95% low",
    "crystal_bleu_vs_below_high": "CrystalBLEU minus its, 95% high",
    "token_accuracy": "token accuracy %",
    "exact_match": "exact match %",
    "syntax_valid": "syntax valid %",
    "unk_rate": "<UNK> in output %",
    "copied_identifiers": "copied identifiers %",
    "distinct_outputs": "distinct outputs %",
    "output_length": "output length % of reference",
    "test_ppl": "test perplexity (teacher-forced)",
    "source_gap": "docstring gap (nats, teacher-forced)",
    "same_as_retrieved": "same as retrieved %",
    "better_than_retrieved": "better than retrieved %",
    "decode_seconds": "decode s",
    "parameters": "parameters",
    "train_seconds": "training s",
    "epochs": "epochs run",
    "best_epoch": "best epoch",
    "ended_by": "training ended by",
}
RESULT_COLUMNS: list[str] = list(RESULT_LABELS)

# Beam search's length penalty: one value for every model, or one per (model, decoding label).
LengthPenalties = float | Mapping[tuple[str, str], float]


# -- loading ------------------------------------------------------------------------------------

def _device(device: str | torch.device | None) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def load_trained(checkpoint_dir: str | Path, models: str | Sequence[str], device: str | torch.device | None = "auto",
                 log: Callable[[str], None] = print, precision: str = "auto") -> dict[str, LoadedModel]:
    """Load ``<checkpoint_dir>/<model>_best.pt`` for each model name, in the given order, to decode
    in ``precision`` (whatever precision it was trained in).

    A model without a checkpoint is skipped with a note; if none has one, FileNotFoundError.
    A checkpoint that exists but cannot be loaded raises (a broken file is not silently ignored).
    """
    models = model_names(models)
    device = _device(device)
    precision = resolve_precision(precision, device)
    folder = project_path(checkpoint_dir)
    loaded: dict[str, LoadedModel] = {}
    for name in models:
        path = folder / f"{name}_best.pt"
        if not path.is_file():
            log(f"note: no checkpoint for '{name}' at {path}; skipping it.")
            continue
        ckpt = load_checkpoint(path, device)
        loaded[name] = LoadedModel.from_checkpoint(ckpt, path, device, expected_model=name, precision=precision)
    if not loaded:
        raise FileNotFoundError(
            f"No trained checkpoint (<model>_best.pt) for any of {list(models)} in {folder}; {TRAIN_HINT}.")
    return loaded


def evaluation_setup(data_dir: str | Path, checkpoint_dir: str | Path, models: str | Sequence[str],
                     device: str | torch.device | None = "auto", max_examples: int = 0,
                     log: Callable[[str], None] = print,
                     precision: str = "auto") -> tuple[list[dict], dict[str, LoadedModel], torch.device]:
    """What notebooks 03-05 start from: the test rows (the first ``max_examples`` when positive), the
    trained models that have a checkpoint (the run's, else the shipped weights; to decode in
    ``precision``), and the device; one line says what was found."""
    device = _device(device)
    rows = load_split(data_dir, "test", required=True)
    rows = rows[:max_examples] if max_examples else rows
    folder = run_or_shipped(checkpoint_dir, model_names(models), log)  # the run's, or the shipped weights
    loaded = load_trained(folder, models, device, log=log, precision=precision)
    arithmetic = next(iter(loaded.values())).precision
    log(f"{len(rows):,} test examples; models: {', '.join(loaded)}; device: {device}; precision: {arithmetic}")
    return rows, loaded, device


# -- decoding -----------------------------------------------------------------------------------

def decoding_label(beam_size: int, syntax_aware: bool = False) -> str:
    """"greedy" for beam size 1, else "beam<k>"; "+syntax" with syntax-aware decoding."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}.")
    return ("greedy" if beam_size == 1 else f"beam{beam_size}") + ("+syntax" if syntax_aware else "")


@dataclass
class DecodedSplit:
    """One model's outputs on a split, in row order.

    ``attention[i]`` is [len(hypotheses[i]), len(src_tokens[i])]: row t is generated token t, column
    j is source position j, where ``src_tokens[i]`` = ``<SOS>`` + docstring tokens (+ ``<SEP>`` and
    the retrieved function's tokens, for a retrieval model) + ``<EOS>``
    (the words of the row; ``src_seen[i]`` is the same with the words the encoder read as ``<UNK>``).
    """

    model: str
    decoding: str
    beam_size: int
    hypotheses: list[list[str]]
    attention: list[np.ndarray | None]
    src_tokens: list[list[str]]
    src_seen: list[list[str]]
    scores: list[float]
    seconds: float
    syntax_aware: bool = False
    length_penalty: float | None = None  # None for greedy decoding
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hypotheses)

    @property
    def has_attention(self) -> bool:
        return any(a is not None for a in self.attention)


def decode_split(loaded: LoadedModel, rows: Sequence[dict], beam_size: int = 1, max_len: int = 0,
                 batch_size: int = 128, device: str | torch.device | None = None, syntax_aware: bool = False,
                 length_penalty: LengthPenalties = 1.0) -> DecodedSplit:
    """Decode every row's docstring with ``loaded``'s model (greedy for beam size 1, else beam search
    with ``length_penalty``: one value, or one per (model, decoding) as :func:`choose_length_penalty`
    gives them). ``max_len`` 0: the model's own target limit (``config.max_trg_len`` symbols)."""
    max_len = max_len or loaded.model.config.max_trg_len
    label = decoding_label(beam_size, syntax_aware)
    alpha = penalty_for(length_penalty, loaded.name, label) if beam_size > 1 else None  # greedy has none
    model = loaded.model
    device = next(model.parameters()).device if device is None else _device(device)
    model.to(device).eval()
    examples = encode_pairs(rows, loaded.src_vocab, loaded.trg_vocab, with_copy=model.uses_copy,
                            retrieval_input=model.config.retrieval_input)
    start = time.perf_counter()
    if examples:
        hyp = decode_examples(model, examples, batch_size=batch_size, beam_size=beam_size, max_len=max_len,
                              length_penalty=1.0 if alpha is None else alpha, device=device, syntax_aware=syntax_aware,
                              trg_vocab=loaded.trg_vocab, precision=loaded.precision)
    else:
        hyp = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    hyps, attns, srcs, seen = [], [], [], []
    for i, (row, ex) in enumerate(zip(rows, examples)):
        pieces = ids_to_tokens(hyp.tokens[i], loaded.trg_vocab, ex.src_oov)  # the model's symbols
        tokens = join_pieces(pieces)  # every metric is computed on tokens, never on pieces
        src = ["<SOS>", *source_tokens(row, model.config.retrieval_input), "<EOS>"]
        src_pieces = ["<SOS>", *source_symbols(ex.src, loaded.src_vocab), "<EOS>"]
        a = hyp.attention[i] if hyp.attention else None
        if a is not None:
            a = a.detach().float().cpu().numpy()[:, : len(src_pieces)]  # drop the batch's padding columns
            if a.shape[0] != len(pieces):
                raise RuntimeError(f"{loaded.name}: attention has {a.shape[0]} rows for {len(pieces)} output symbols.")
            if loaded.trg_vocab.is_subword:  # heatmaps and statistics read tokens: merge the pieces
                a = merge_attention(a, pieces, src_pieces)
        elif model.has_attention and not tokens:
            a = np.zeros((0, len(src)))
        hyps.append(tokens)
        attns.append(a)
        srcs.append(src)
        seen.append(join_pieces(src_pieces) if loaded.src_vocab.is_subword else src_pieces)
    scores = list(hyp.scores) if hyp is not None else []
    return DecodedSplit(loaded.name, label, beam_size, hyps, attns, srcs, seen, scores, seconds, syntax_aware, alpha)


def source_tokens(row: dict, retrieval_input: str = "none") -> list[str]:
    """What the encoder reads of a row, in tokens: the docstring, then (retrieval models) the
    separator and the retrieved function."""
    doc = list(row["docstring_tokens"])
    return doc if retrieval_input == "none" else [*doc, SEPARATOR, *retrieved_code(row)]


# -- the beam's length penalty (chosen in utils.evaluation.length_penalty) ------------------------------------

def penalty_for(length_penalty: LengthPenalties, model: str, decoding: str) -> float:
    """The length penalty of ``model``'s ``decoding`` (e.g. "beam5+syntax") in ``length_penalty``."""
    if not isinstance(length_penalty, Mapping):
        return check_length_penalty(length_penalty)
    try:
        return check_length_penalty(length_penalty[(model, decoding)])
    except KeyError:
        chosen = ", ".join(f"{m} {d}" for m, d in length_penalty) or "none"
        raise KeyError(f"No length penalty was chosen for {model} {decoding} (chosen for: {chosen}). Run "
                       f"notebooks/03_bleu.ipynb with these models and beam size, or set length_penalty "
                       f"to a number.") from None


# -- metrics ------------------------------------------------------------------------------------

@torch.no_grad()
def teacher_forced_perplexity(loaded: LoadedModel, rows: Sequence[dict], device: str | torch.device | None = None,
                              batch_size: int = 128) -> float:
    """exp(mean NLL per target token) with every decoder step reading the reference prefix.

    Not a free-running metric: it says how well the model predicts the next reference token.
    """
    model = loaded.model
    device = next(model.parameters()).device if device is None else _device(device)
    examples = encode_pairs(rows, loaded.src_vocab, loaded.trg_vocab, with_copy=model.uses_copy,
                            retrieval_input=model.config.retrieval_input)
    if not examples:
        return float("nan")
    return perplexity(evaluate_loss(model.to(device), examples, batch_size, device, loaded.precision))


def teacher_forced_figures(loaded: LoadedModel, rows: Sequence[dict], device: str | torch.device | None = None,
                           batch_size: int = 128) -> tuple[float, float]:
    """(perplexity, docstring gap) of ``rows``, from one pass over them as they are and one with their
    docstrings swapped (``utils.evaluation.source_reliance``): the gap is how much worse the model predicts each
    reference given another row's docstring, in nats per symbol, 0 for a model that ignores it.
    With fewer than two rows there is nothing to swap: the gap is NaN."""
    if len(rows) < 2:
        return teacher_forced_perplexity(loaded, rows, device, batch_size), float("nan")
    model = loaded.model
    device = next(model.parameters()).device if device is None else _device(device)
    r = source_reliance(model.to(device), rows, loaded.src_vocab, loaded.trg_vocab, device, batch_size,
                        loaded.precision)
    return perplexity(r.loss), r.gap


def results_table(decoded: Sequence[DecodedSplit], loaded: Mapping[str, LoadedModel], rows: Sequence[dict],
                  device: str | torch.device | None = None, out_path: str | Path | None = None,
                  include_floor: bool = True, batch_size: int = 128, train_rows: Sequence[dict] | None = None,
                  constant: Sequence[str] | None = None,
                  systems: Sequence[tuple[dict, list[list[str]]]] = ()) -> pd.DataFrame:
    """One row per (model, decoding), then each of ``systems`` ((``model``/``decoding`` labels, one
    output per row): the combined system of ``utils.evaluation.rerank``), plus the shuffled-reference
    floor, the best constant program
    (``constant``: its code tokens, ``utils.evaluation.baselines.constant_program``) and (given the
    training rows) the retrieval baseline, scored exactly like the models, with bootstrap intervals
    (``utils.evaluation.intervals``); written as CSV to ``out_path``. CrystalBLEU needs the training
    rows (its ignored n-grams are the training code's most frequent).

    Columns: :data:`RESULT_COLUMNS` (percentages 0-100; ``test_ppl`` and ``source_gap`` are
    teacher-forced and the same for every decoding of a model; ``train_seconds`` sums the recorded
    epochs; ``same_as_retrieved``: % of outputs equal to the function the row read, or for a model
    that reads none and for ``systems``, to the retrieval row's output; ``better_than_retrieved``: %
    of functions where the output's sentence BLEU beats the retrieval row's; both need the training
    rows, or, for a retrieval model, the function it read).
    """
    refs, docs = references(rows)
    ppl: dict[str, float] = {}
    gap: dict[str, float] = {}
    records, outputs = [], []
    baseline = retrieval_outputs(train_rows, rows) if train_rows else None
    shared = shared_ngrams(train_rows)
    for d in decoded:
        if len(d) != len(rows):
            raise ValueError(f"{d.model} {d.decoding}: {len(d)} outputs for {len(rows)} rows.")
        lm = loaded[d.model]
        if d.model not in ppl:
            ppl[d.model], gap[d.model] = teacher_forced_figures(lm, rows, device, batch_size)
        m = evaluate_outputs(d.hypotheses, refs, docs, known_tokens(lm.trg_vocab), shared)
        m |= _against_retrieval(d.hypotheses, rows, refs, baseline, lm.model.config.retrieval_input != "none")
        records.append({
            "model": d.model, "decoding": d.decoding, "length_penalty": d.length_penalty, **m,
            "test_ppl": ppl[d.model], "source_gap": gap[d.model], "decode_seconds": d.seconds,
            "parameters": lm.n_parameters, "train_seconds": lm.training_seconds, "epochs": len(lm.history),
            "best_epoch": lm.best_epoch, "ended_by": lm.ended_by or None,
        })
        outputs.append(d.hypotheses)
    vocab = known_tokens(next(iter(loaded.values())).trg_vocab) if loaded else None
    for labels, output in systems:
        records.append({**labels, **evaluate_outputs(output, refs, docs, vocab, shared),
                        **_against_retrieval(output, rows, refs, baseline, False)})
        outputs.append(output)
    for record, output in baseline_rows(rows, baseline, constant, include_floor, vocab, shared):
        records.append(record)
        outputs.append(output)
    table = pd.DataFrame(records)
    if rows:
        table = table.join(interval_columns(table, outputs, refs, shared, RETRIEVAL_MODEL))
    table = table.reindex(columns=RESULT_COLUMNS)
    table["n"] = table["n"].astype("Int64")
    for col in ("parameters", "epochs", "best_epoch"):
        table[col] = pd.to_numeric(table[col]).astype("Int64")
    if out_path is not None:
        save_csv(table, out_path)
    return table


def _against_retrieval(outputs: Sequence[list[str]], rows: Sequence[dict], refs: Sequence[list[str]],
                       baseline: Sequence[list[str]] | None, reads_retrieved: bool) -> dict[str, float]:
    """``same_as_retrieved``/``better_than_retrieved`` of ``outputs``: a retrieval model against the
    function it read (and the retrieval row's output, when known), any other against the retrieval
    row's output (``baseline``); nothing when neither is known."""
    if reads_retrieved:  # how much it edits the function it read
        retrieved = [retrieved_code(r) for r in rows]
        return edit_figures(outputs, retrieved, retrieved if baseline is None else baseline, refs)
    return edit_figures(outputs, baseline, baseline, refs) if baseline is not None else {}


def length_bucket_results(decoded: Sequence[DecodedSplit], rows: Sequence[dict]) -> pd.DataFrame:
    """:func:`utils.metrics.length_bucket_table` for every decoded split, stacked (model, decoding first)."""
    refs, docs = references(rows)
    parts = []
    for d in decoded:
        t = length_bucket_table(d.hypotheses, refs, docs)
        t.insert(0, "decoding", d.decoding)
        t.insert(0, "model", d.model)
        parts.append(t)
    if not parts:
        return pd.DataFrame(columns=["model", "decoding", "bucket", "n_examples", "n_target_tokens", "bleu",
                                     "token_accuracy", "exact_match", "syntax_valid"])
    return pd.concat(parts, ignore_index=True)
