"""Evaluation metrics for generated code, defined so that they cannot be inflated.

Definitions (all corpus figures in percent unless noted):

* Before scoring, hypotheses and references are cut at their first ``<EOS>`` and ``<PAD>``/``<SOS>``
  are removed.
  References are the *raw* code tokens (never mapped through a vocabulary, never truncated).
* ``<UNK>`` in a hypothesis stays and never matches anything, not even a literal ``"<UNK>"``
  in a reference; the original study mapped references through the vocabulary so that
  ``<UNK>`` matched ``<UNK>`` (kept only as :func:`study_bleu_score`, labelled inflated).
* BLEU: corpus-level BLEU-4 (NLTK ``corpus_bleu``), one reference per hypothesis, uniform
  weights, no smoothing unless asked (method1), scaled to 0-100.
* BLEU's parts (``utils.bleu``): ``brevity_penalty`` (1 at or above the reference length) and
  ``ngram_precision``, the geometric mean of the four clipped n-gram precisions; BLEU is their product.
* Token accuracy: per example, position-by-position matches / reference length (extra hypothesis
  tokens are not penalised, as in the study), averaged (:func:`token_accuracy_micro` pools tokens).
* Exact match: hypothesis token sequence equals the reference (and holds no ``<UNK>``).
* Syntax validity: the detokenized hypothesis is non-empty, holds no ``<UNK>`` and
  ``ast.parse`` accepts it. Nothing is ever executed.
* Copied identifiers: of the distinct reference identifiers (Python names that are not
  keywords) that the docstring mentions, the share the hypothesis contains (pooled).
* Distinct outputs: distinct hypotheses (after cleaning) per 100 inputs: a decoder that ignores
  its input writes one program for every docstring and scores 0.1 on 1,000 inputs.
* Output length: output tokens per 100 reference tokens, pooled over the corpus (specials stripped):
  the ratio behind BLEU's brevity penalty, which scales BLEU by ``exp(1 - 100 / output_length)``
  below 100. Beam search that ends hypotheses too early shows here first.
* CrystalBLEU (Eghbali and Pradel, 2022; the authors' ``crystalbleu`` package): BLEU-4 with the
  *trivially shared* n-grams left out of every count, the ``SHARED_NGRAMS`` (500) most frequent
  1- to 4-grams of the training split's code (:func:`trivially_shared_ngrams`, once per corpus).
  ``def``, ``( self``, ``return None`` and layout runs match between any two Python functions;
  without them a constant generic program scores about 0 where BLEU gives it more. The brevity
  penalty is BLEU's, on all tokens.
* CodeBLEU (Ren et al., 2020, as CodeXGLUE reports it; the ``codebleu`` package): BLEU's n-grams,
  keyword-weighted n-grams, syntax-tree and data-flow matches of the *detokenized* source, equal
  weights, 0-100. BLEU over code tokens rewards layout tokens; CodeBLEU also asks for structure.
* An empty corpus gives NaN for ratio metrics rather than a made-up number.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import math
import warnings
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from utils.bleu import N_STATS, corpus_scores, sentence_stats
from utils.data.tokenizer import DEDENT, INDENT, NEWLINE, detokenize

SPECIAL_TOKENS: frozenset[str] = frozenset({"<PAD>", "<SOS>", "<EOS>"})
UNK_TOKEN = "<UNK>"
EOS_TOKEN = "<EOS>"
LAYOUT_TOKENS: frozenset[str] = frozenset({NEWLINE, INDENT, DEDENT})
BUILTIN_NAMES: frozenset[str] = frozenset(dir(builtins))

# Docstring length buckets: (low, high inclusive or None for open-ended, label).
LENGTH_BUCKETS: list[tuple[int, int | None, str]] = [
    (0, 10, "0-10"),
    (11, 20, "11-20"),
    (21, 30, "21-30"),
    (31, None, ">30"),
]

# A private token that equals no reference token, so a hypothesis <UNK> can never match.
_UNMATCHABLE = "\x00<UNK-never-matches>\x00"

Tokens = Sequence[str]
NGram = tuple[str, ...]
SHARED_NGRAMS = 500  # CrystalBLEU's k: the n-grams too common in the training code to say anything


def strip_special(tokens: Tokens) -> list[str]:
    """Cut at the first ``<EOS>`` (nothing after it was output) and drop ``<PAD>``/``<SOS>``; ``<UNK>`` is kept."""
    out: list[str] = []
    for t in tokens:
        if t == EOS_TOKEN:
            break
        if t not in SPECIAL_TOKENS:
            out.append(t)
    return out


def is_identifier(token: str) -> bool:
    """True for a Python name that is not a (hard) keyword."""
    return token.isidentifier() and not keyword.iskeyword(token)


def _check_parallel(name_a: str, a: Sequence[Any], name_b: str, b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must be parallel lists; got {len(a)} and {len(b)} items.")


def _honest_hyp(tokens: Tokens) -> list[str]:
    return [_UNMATCHABLE if t == UNK_TOKEN else t for t in strip_special(tokens)]


def _bleu(hyps: list[list[str]], refs: list[list[str]], smoothing: bool) -> float:
    if not hyps:
        return float("nan")
    smooth = SmoothingFunction().method1 if smoothing else None
    with warnings.catch_warnings():
        # NLTK warns whenever an n-gram order has no match; a 0 score already says so.
        warnings.simplefilter("ignore")
        score = corpus_bleu([[r] for r in refs], hyps, weights=(0.25, 0.25, 0.25, 0.25), smoothing_function=smooth)
    return 100.0 * float(score)


def corpus_bleu_score(
    hypotheses: Sequence[Tokens], references: Sequence[Tokens], smoothing: bool = False
) -> float:
    """Honest corpus BLEU-4 (0-100): specials stripped, hypothesis ``<UNK>`` never matches."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    return _bleu([_honest_hyp(h) for h in hypotheses], [strip_special(r) for r in references], smoothing)


def trivially_shared_ngrams(code: Iterable[Tokens], k: int = SHARED_NGRAMS, max_n: int = 4) -> frozenset[NGram]:
    """The ``k`` most frequent 1- to ``max_n``-grams of a corpus's code token lists (CrystalBLEU's
    ignored n-grams; ties keep the order of first appearance)."""
    counts: Counter[NGram] = Counter()
    for tokens in code:
        toks = strip_special(tokens)
        for n in range(1, max_n + 1):
            counts.update(zip(*(toks[i:] for i in range(n))))
    return frozenset(g for g, _ in counts.most_common(k))


def crystal_bleu_score(hypotheses: Sequence[Tokens], references: Sequence[Tokens], shared: Container[NGram]) -> float:
    """Corpus CrystalBLEU-4 (0-100): :func:`corpus_bleu_score` with the n-grams in ``shared``
    (:func:`trivially_shared_ngrams` of the training code) counted neither in the hypotheses nor in
    the references; 0 where no n-gram outside ``shared`` matches, NaN for no hypotheses."""
    from crystalbleu import corpus_bleu as crystal_corpus_bleu

    _check_parallel("hypotheses", hypotheses, "references", references)
    hyps, refs = [_honest_hyp(h) for h in hypotheses], [strip_special(r) for r in references]
    if not hyps:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 0 score already says that an order had no match
        try:
            score = crystal_corpus_bleu([[r] for r in refs], hyps, ignoring=shared)
        except ZeroDivisionError:  # every n-gram of one order is shared: nothing left to match
            return 0.0
    return 100.0 * float(score)


def bleu_statistics(hypotheses: Sequence[Tokens], references: Sequence[Tokens], ignore: Container[NGram] = ()
                    ) -> np.ndarray:
    """Each function's BLEU counts, (n, ``utils.bleu.N_STATS``), cleaned as :func:`corpus_bleu_score`
    cleans them; with ``ignore`` (CrystalBLEU's shared n-grams) those of :func:`crystal_bleu_score`."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    rows = [sentence_stats(_honest_hyp(h), strip_special(r), ignore) for h, r in zip(hypotheses, references)]
    return np.array(rows).reshape(-1, N_STATS)


def sentence_bleu_scores(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> list[float]:
    """Honest BLEU-4 (0-100) of each hypothesis against its reference, smoothed (Chen and Cherry's
    method 1) so that one missing n-gram order does not zero a single function's score."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    smooth = SmoothingFunction().method1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [100.0 * float(sentence_bleu([strip_special(r)], _honest_hyp(h), smoothing_function=smooth))
                if h and r else 0.0 for h, r in zip(hypotheses, references)]


def edit_figures(hypotheses: Sequence[Tokens], retrieved: Sequence[Tokens], baseline: Sequence[Tokens],
                 references: Sequence[Tokens]) -> dict[str, float]:
    """How much a retrieval model edits: ``same_as_retrieved`` (% of outputs whose tokens equal the
    function it retrieved) and ``better_than_retrieved`` (% of functions whose sentence BLEU beats
    the retrieval baseline's output on that function; ties count as not better)."""
    _check_parallel("hypotheses", hypotheses, "retrieved", retrieved)
    same = [strip_special(h) == strip_special(r) for h, r in zip(hypotheses, retrieved)]
    ours, theirs = sentence_bleu_scores(hypotheses, references), sentence_bleu_scores(baseline, references)
    better = [a > b + 1e-9 for a, b in zip(ours, theirs)]
    return {"same_as_retrieved": _mean_pct(same), "better_than_retrieved": _mean_pct(better)}


def study_bleu_score(
    hypotheses: Sequence[Tokens], references: Sequence[Tokens], trg_vocab: Container[str], smoothing: bool = False
) -> float:
    """INFLATED BLEU as the original study computed it, for comparison only.

    References are mapped through ``trg_vocab`` (OOV -> ``<UNK>``), so a hypothesis ``<UNK>`` is
    rewarded for matching a word the model could not produce.
    """
    _check_parallel("hypotheses", hypotheses, "references", references)
    refs = [[t if t in trg_vocab else UNK_TOKEN for t in strip_special(r)] for r in references]
    return _bleu([strip_special(h) for h in hypotheses], refs, smoothing)


def _matches(hyp: Tokens, ref: Tokens) -> int:
    return sum(1 for h, r in zip(hyp, ref) if h == r and h != UNK_TOKEN)


def token_accuracy(hyp: Tokens, ref: Tokens) -> float:
    """Position-wise matches / reference length (0-1); an empty reference scores 1 only for an empty hypothesis."""
    h, r = strip_special(hyp), strip_special(ref)
    if not r:
        return 1.0 if not h else 0.0
    return _matches(h, r) / len(r)


def token_accuracy_micro(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Total position-wise matches / total reference tokens over a corpus (0-1; NaN if no tokens)."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    hits = total = 0
    for hyp, ref in zip(hypotheses, references):
        r = strip_special(ref)
        hits += _matches(strip_special(hyp), r)
        total += len(r)
    return hits / total if total else float("nan")


def exact_match(hyp: Tokens, ref: Tokens) -> bool:
    """The hypothesis reproduces the reference token for token, with no ``<UNK>``."""
    h, r = strip_special(hyp), strip_special(ref)
    return h == r and UNK_TOKEN not in h


def parse_error(tokens: Tokens) -> BaseException | None:
    """The exception ``ast.parse`` raises on the detokenized tokens, or None if it parses."""
    try:
        ast.parse(detokenize(list(tokens)))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        return e
    return None


def is_valid_syntax(tokens: Tokens) -> bool:
    """True if the output is non-empty, has no ``<UNK>`` and parses as Python (never executed).

    ``<UNK>`` is rejected outright because ``a <UNK> b`` would otherwise parse as ``a < UNK > b``.
    """
    toks = strip_special(tokens)
    if not any(t not in LAYOUT_TOKENS for t in toks) or UNK_TOKEN in toks:
        return False
    return parse_error(toks) is None


def unk_rate(hyps: Sequence[Tokens]) -> float:
    """Share (0-1) of hypothesis tokens, specials stripped, that are ``<UNK>``; 0 if there are none."""
    total = unks = 0
    for h in hyps:
        toks = strip_special(h)
        total += len(toks)
        unks += sum(1 for t in toks if t == UNK_TOKEN)
    return unks / total if total else 0.0


def identifier_recall(hyp: Tokens, ref: Tokens, docstring_tokens: Tokens) -> tuple[int, int]:
    """(hits, total): reference identifiers (distinct) the docstring has verbatim; hits are those the hypothesis has."""
    doc = set(docstring_tokens)
    wanted = {t for t in strip_special(ref) if is_identifier(t) and t in doc}
    have = set(strip_special(hyp))
    return sum(1 for t in wanted if t in have), len(wanted)


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood in nats); inf instead of OverflowError."""
    if math.isnan(mean_nll):
        return float("nan")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def _pct(x: float) -> float:
    return 100.0 * x


def _mean_pct(values: Sequence[float]) -> float:
    """Mean of per-example values (bools count 0/1) in percent; NaN for none."""
    return 100.0 * sum(values) / len(values) if values else float("nan")


def evaluate_outputs(
    hypotheses: Sequence[Tokens],
    references: Sequence[Tokens],
    docstrings_tokens: Sequence[Tokens],
    trg_vocab: Container[str] | None = None,
    shared_ngrams: Container[NGram] | None = None,
) -> dict[str, float]:
    """All corpus figures for one model's outputs (percent, except ``n``); see the module docstring.
    ``crystal_bleu`` with ``shared_ngrams`` (the training code's :func:`trivially_shared_ngrams`)."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    _check_parallel("hypotheses", hypotheses, "docstrings_tokens", docstrings_tokens)
    n = len(hypotheses)
    hits = total = 0
    for h, r, d in zip(hypotheses, references, docstrings_tokens):
        a, b = identifier_recall(h, r, d)
        hits, total = hits + a, total + b
    out: dict[str, float] = {
        "n": n,
        "bleu": corpus_bleu_score(hypotheses, references),
        "codebleu": codebleu_score(hypotheses, references),
    }
    parts = corpus_scores(bleu_statistics(hypotheses, references).sum(0))
    out.update({k: float(parts[k]) if n else float("nan") for k in ("brevity_penalty", "ngram_precision")})
    if shared_ngrams is not None:
        out["crystal_bleu"] = crystal_bleu_score(hypotheses, references, shared_ngrams)
    if trg_vocab is not None:
        out["bleu_study"] = study_bleu_score(hypotheses, references, trg_vocab)
    pairs = list(zip(hypotheses, references))
    out.update(
        token_accuracy=_mean_pct([token_accuracy(h, r) for h, r in pairs]),
        exact_match=_mean_pct([exact_match(h, r) for h, r in pairs]),
        syntax_valid=_mean_pct([is_valid_syntax(h) for h in hypotheses]),
        unk_rate=_pct(unk_rate(hypotheses)),
        copied_identifiers=_pct(hits / total) if total else float("nan"),
        distinct_outputs=distinct_outputs(hypotheses),
        output_length=output_length(hypotheses, references),
    )
    return out


def codebleu_score(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Corpus CodeBLEU of the detokenized hypotheses against the detokenized references, 0-100.

    The ``codebleu`` package orders variable names through Python sets in its data-flow match, so the
    same outputs score differently from process to process unless ``PYTHONHASHSEED`` is fixed (by
    up to 1.2 points on 50 functions); ``make`` and ``utils.run_notebooks`` fix it to 0."""
    import logging

    from codebleu import calc_codebleu

    _check_parallel("hypotheses", hypotheses, "references", references)
    if not hypotheses:
        return float("nan")
    hyps = [detokenize(list(strip_special(h))) for h in hypotheses]
    refs = [detokenize(list(strip_special(r))) for r in references]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the package warns through the root logger when no data flow is found
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return 100.0 * calc_codebleu(refs, hyps, lang="python")["codebleu"]
    finally:
        root.setLevel(level)


def output_length(hypotheses: Sequence[Tokens], references: Sequence[Tokens]) -> float:
    """Output tokens per 100 reference tokens over the corpus, specials stripped (NaN without references)."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    ref_tokens = sum(len(strip_special(r)) for r in references)
    return _pct(sum(len(strip_special(h)) for h in hypotheses) / ref_tokens) if ref_tokens else float("nan")


def distinct_outputs(hypotheses: Sequence[Tokens]) -> float:
    """Distinct cleaned hypotheses per 100 hypotheses (NaN for none)."""
    if not hypotheses:
        return float("nan")
    return _pct(len({tuple(_honest_hyp(h)) for h in hypotheses}) / len(hypotheses))


def bucket_label(n_tokens: int) -> str:
    """The :data:`LENGTH_BUCKETS` label for a docstring of ``n_tokens`` real tokens."""
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be non-negative, got {n_tokens}.")
    for low, high, label in LENGTH_BUCKETS:
        if n_tokens >= low and (high is None or n_tokens <= high):
            return label
    raise ValueError(f"No length bucket covers {n_tokens} tokens.")


def length_bucket_table(
    hypotheses: Sequence[Tokens], references: Sequence[Tokens], docstrings_tokens: Sequence[Tokens]
) -> pd.DataFrame:
    """Metrics per docstring-length bucket (real docstring tokens, specials stripped); empty buckets get NaN."""
    _check_parallel("hypotheses", hypotheses, "references", references)
    _check_parallel("hypotheses", hypotheses, "docstrings_tokens", docstrings_tokens)
    members: dict[str, list[int]] = {label: [] for _, _, label in LENGTH_BUCKETS}
    for i, doc in enumerate(docstrings_tokens):
        members[bucket_label(len(strip_special(doc)))].append(i)
    rows = []
    for _, _, label in LENGTH_BUCKETS:
        idx = members[label]
        hyps = [hypotheses[i] for i in idx]
        refs = [references[i] for i in idx]
        m = evaluate_outputs(hyps, refs, [docstrings_tokens[i] for i in idx])
        rows.append(
            {
                "bucket": label,
                "n_examples": len(idx),
                "n_target_tokens": sum(len(strip_special(r)) for r in refs),
                "bleu": m["bleu"],
                "codebleu": m["codebleu"],
                "token_accuracy": m["token_accuracy"],
                "exact_match": m["exact_match"],
                "syntax_valid": m["syntax_valid"],
            }
        )
    return pd.DataFrame(rows)
