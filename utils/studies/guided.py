"""Retrieval-guided decoding (Hayati et al. 2018, ReCode) as a candidate source for the combined
system, on the validation split (``plots/guided_study.csv``).

    python -m utils.studies guided                       # the shipped weights, weights 1 and 2
    python -m utils.studies guided --bonus 0.5 1 2 --k 5

Each model's beam 5 + syntax (its length penalty from ``checkpoints/manifest.json``) is run plainly
and with a bonus of ``--bonus`` nats on every piece that continues a bigram of the docstring's ``k``
nearest training functions (``utils.decoding.search.NgramBonus``). For each, the table gives the BLEU
of the beam's own pick, and the 5-fold cross-validated BLEU of the combined system with the ``k``
nearest training functions and those beams as candidates (``utils.evaluation.rerank``, the rule of
notebook 03). The rule, stated before the run: a guided beam enters the main job only if its
combined system's cross-validated BLEU is above the same system with that model's plain beam.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import numpy as np
import pandas as pd

from utils.bleu import corpus_scores
from utils.checkpoint import SHIPPED_DIR
from utils.data.processed import load_split
from utils.data.retrieval import TfidfRetriever
from utils.decoding.rerank import beam_candidates, candidate_features, generic_docstring, nearest_candidates
from utils.evaluation.baselines import shared_ngrams
from utils.evaluation.rerank import CandidatePool, cross_validated, load_reviewer, scored_pool
from utils.evaluation.results import load_trained
from utils.files import save_csv
from utils.paths import git_commit, project_path

STUDY_CSV = "guided_study.csv"


def guided_pool(valid: Sequence[dict], train: Sequence[dict], folder: str, models: Sequence[str], k: int,
                bonuses: Sequence[float]) -> CandidatePool:
    """The ``k`` nearest training functions and each model's beams, plain (source ``<model>``) and
    guided by those functions (``<model>+guided<bonus>``), with features and BLEU counts."""
    docs = [r["docstring_tokens"] for r in valid]
    retriever = TfidfRetriever([r["docstring_tokens"] for r in train])
    loaded = load_trained(folder, [*models, "transformer"], "cpu", precision="fp32")
    penalties = json.loads((project_path(folder) / "manifest.json").read_text())["files"]
    candidates = nearest_candidates(retriever, train, docs, k)
    guide = [[c.tokens for c in cands] for cands in candidates]
    for model in models:
        alpha = penalties[f"{model}_best.pt"]["length_penalty"].get("beam5+syntax", 3.0)
        for bonus in (0.0, *bonuses):
            found = beam_candidates(loaded[model], docs, 5, alpha, True, guide=guide if bonus else None,
                                    guide_weight=bonus, source=f"{model}+guided{bonus:g}" if bonus else model)
            candidates = [c + f for c, f in zip(candidates, found)]
    features = candidate_features(candidates, docs, loaded["transformer"], load_reviewer(folder),
                                  generic_docstring(retriever, [r["docstring_tokens"] for r in train]))
    return scored_pool(valid, candidates, features, shared_ngrams(train))


def study_table(pool: CandidatePool, models: Sequence[str], k: int, bonuses: Sequence[float]) -> pd.DataFrame:
    """Per model and bonus (0: plain beam search): the beam's own pick's BLEU and the combined system's
    cross-validated BLEU with the ``k`` nearest and that beam."""
    records = []
    for model in models:
        for bonus in (0.0, *bonuses):
            source = f"{model}+guided{bonus:g}" if bonus else model
            firsts = [next(i for i, c in enumerate(cands) if c.source == source) for cands in pool.candidates]
            own = np.stack([s[i] for s, i in zip(pool.stats, firsts)]).sum(0)
            records.append({"model": model, "bonus": bonus, "k": k, "beam_bleu": float(corpus_scores(own)["bleu"]),
                            "valid_cv_bleu": cross_validated(pool, k, [source]), "commit": git_commit()})
    return pd.DataFrame(records)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", default=str(SHIPPED_DIR), help="the shipped weights, reviewer and manifest")
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--models", nargs="+", default=["transformer", "copy"])
    p.add_argument("--bonus", nargs="+", type=float, default=[1.0, 2.0])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--rows", type=int, default=0, help="the first validation rows only (0: all)")
    p.add_argument("--csv", default=f"plots/{STUDY_CSV}")
    args = p.parse_args(argv)
    valid = load_split(args.data_dir, "valid", with_retrieved=False)
    valid = valid[: args.rows] if args.rows else valid
    pool = guided_pool(valid, load_split(args.data_dir, "train", with_retrieved=False), args.checkpoints,
                       args.models, args.k, args.bonus)
    table = study_table(pool, args.models, args.k, args.bonus)
    save_csv(table, project_path(args.csv))
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
