"""Does the comparison hold across seeds? The main table's models trained with other seeds and scored
on the test split as notebook 03 scores them.

    python -m utils.studies seeds --seeds 1 --threads 1 &    # two seeds side by side, one core each
    python -m utils.studies seeds --seeds 2 --threads 1 &
    python -m utils.studies seeds --seeds 42                 # the shipped weights: scored, not trained
    python -m utils.studies seeds --collect                  # the table of the finished runs, and the claims

Every model trains with ``--params``' recipe (default ``params/full.yaml``) on its processed corpus;
only the seed changes (initial weights, dropout, batch order), so the spread is the training's own.
The parameter file's own seed (42) is the shipped weights: read from ``--shipped`` (default
``checkpoints/``, which ``make release`` fills from the main job), checked to be at this recipe and
never written. Other seeds train into ``<out>/seed-<s>/`` (default ``runs/seeds/<params name>/``;
resumed when interrupted, reused when finished). Each model is decoded on the test split as notebook
03 decodes it, in fp32: greedy, and beam 5 with the syntax constraint, whose length penalty (2 or 3)
is chosen for each seed on the same first ``tune_examples`` validation rows. A seed's rows for a model
go to ``<out>/seed-<s>/<model>.json``; ``--csv`` (``plots/seed_study.csv``) is every finished run's
rows, each with the commit and the parameter file it ran at.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from utils.checkpoint import load_checkpoint
from utils.config import Seq2SeqConfig, make_config, model_names
from utils.data.processed import load_split, model_lengths
from utils.data.vocabulary import known_tokens
from utils.evaluation.baselines import references
from utils.evaluation.intervals import RANKING
from utils.evaluation.length_penalty import chosen_length_penalties, tune_length_penalty
from utils.evaluation.markdown import cell, markdown_table
from utils.evaluation.results import decode_split, load_trained
from utils.files import save_csv
from utils.metrics import evaluate_outputs
from utils.paths import git_commit
from utils.studies.screening import ScreeningData, found_seeds, load_study_data
from utils.training.trainer import train_model

MODELS = ("rnn", "lstm", "attention", "copy", "transformer")
SEEDS = (42, 1, 2)
BEAM = "beam5+syntax"
DECODINGS = ("greedy", BEAM)
LENGTH_PENALTIES = (2.0, 3.0)  # notebook 03's candidates (tests/test_seeds.py holds them equal)
METRICS = ("bleu", "crystal_bleu", "brevity_penalty", "ngram_precision", "codebleu", "exact_match",
           "distinct_outputs", "syntax_valid", "output_length")
# What the shipped weights must share with the recipe to stand in for its seed.
RECIPE_FIELDS = ("model", "embed_dim", "hidden_dim", "num_layers", "recurrent_variant", "dropout", "lr",
                 "lr_schedule", "epochs", "batch_tokens", "teacher_forcing", "seed")


def check_shipped(path: Path, config: Seq2SeqConfig) -> None:
    """A ValueError naming the differences unless the checkpoint at ``path`` was trained with ``config``'s recipe."""
    if not path.is_file():
        raise FileNotFoundError(f"No shipped checkpoint {path}: the recipe's own seed is read from the shipped "
                                f"weights. Run `make main` and `make release` first.")
    saved = load_checkpoint(path, "cpu")["config"]
    differ = [f"{f}={saved.get(f)!r} (recipe {getattr(config, f)!r})" for f in RECIPE_FIELDS
              if saved.get(f) != getattr(config, f)]
    if differ:
        raise ValueError(f"{path} was not trained at this recipe: {', '.join(differ)}. Run `make main` and "
                         f"`make release` with this parameter file first.")


def score_model(folder: Path, name: str, data: ScreeningData, test_rows: list[dict],
                tune_rows: list[dict]) -> list[dict]:
    """``<folder>/<name>_best.pt`` decoded on ``test_rows`` greedily and with beam 5 + syntax (its
    length penalty chosen on ``tune_rows``), fp32; one row of figures per decoding."""
    loaded = load_trained(folder, [name], "cpu", log=lambda _: None, precision="fp32")
    tuning = tune_length_penalty(loaded, tune_rows, LENGTH_PENALTIES, beam_size=5, syntax_aware=True,
                                 log=lambda _: None)
    alpha = chosen_length_penalties(tuning)[(name, BEAM)]
    refs, docs = references(test_rows)
    rows = []
    for beam, syntax in ((1, False), (5, True)):
        decoded = decode_split(loaded[name], test_rows, beam_size=beam, syntax_aware=syntax, length_penalty=alpha)
        m = evaluate_outputs(decoded.hypotheses, refs, docs, known_tokens(data.trg), data.shared)
        rows.append({"decoding": decoded.decoding, "length_penalty": alpha if beam > 1 else float("nan"),
                     **{k: m[k] for k in METRICS}})
    return rows


def run_seed(seed: int, models: Sequence[str], params: dict, data: ScreeningData, test_rows: list[dict],
             out: Path, shipped: Path, recipe: str, commit: str = "unknown", done: frozenset = frozenset()) -> None:
    """Train (or, for the recipe's own seed, check the shipped weights of) each model of ``models``
    and write its rows, with ``commit`` (the one the process started at), to
    ``<out>/seed-<seed>/<model>.json``; a model whose file exists, or whose (seed, model) is in ``done``
    (the CSV's rows from an earlier session), is skipped."""
    main_seed = params.get("seed", Seq2SeqConfig.seed)
    tune_rows = data.valid_rows[: params.get("tune_examples", 200)]
    for name in models:
        record = out / f"seed-{seed}" / f"{name}.json"
        if record.is_file() or (seed, name) in done:
            continue
        config = make_config(name, **{**params, "seed": seed}, src_vocab_size=len(data.src),
                             trg_vocab_size=len(data.trg), **model_lengths(params["data_dir"]))
        folder = shipped if seed == main_seed else out / f"seed-{seed}"
        if seed == main_seed:
            check_shipped(shipped / f"{name}_best.pt", config)
        else:
            train_model(config, data.train, data.valid, data.src, data.trg, checkpoint_dir=folder,
                        device=params.get("device", "auto"), progress=False)
        best = load_checkpoint(folder / f"{name}_best.pt", "cpu")
        trained = {"val_loss": best["history"][best["best_epoch"] - 1]["val_loss"], "best_epoch": best["best_epoch"],
                   "epochs_run": len(best["history"]), "ended_by": best.get("ended_by", "")}
        rows = [{"params": recipe, "commit": commit, "seed": seed, "model": name, **r, **trained,
                 "weights": "shipped" if seed == main_seed else "trained"}
                for r in score_model(folder, name, data, test_rows, tune_rows)]
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows), flush=True)


def collect(out: Path, models: Sequence[str] = MODELS, kept: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every finished run's rows under ``out``, by seed (in order) and model (in ``models`` order), and
    the rows of ``kept`` (the CSV so far: runs whose folders an earlier machine had) for the (seed,
    model) pairs that have no run here."""
    found = pd.DataFrame([row for s in found_seeds(out) for m in models
                          if (p := out / f"seed-{s}" / f"{m}.json").is_file() for row in json.loads(p.read_text())])
    if kept is None or kept.empty:
        return found
    here = set() if found.empty else set(zip(found["seed"], found["model"]))
    older = kept[[(s, m) not in here and m in models for s, m in zip(kept["seed"], kept["model"])]]
    return pd.concat([found, older], ignore_index=True).sort_values(
        ["seed", "model"], key=lambda c: c.map(list(models).index) if c.name == "model" else c, kind="stable",
        ignore_index=True)


def summary(table: pd.DataFrame, metric: str = "bleu") -> pd.DataFrame:
    """Per model and decoding (in the table's order): seeds, mean, standard deviation, min and max of ``metric``."""
    g = table.groupby(["model", "decoding"], sort=False)[metric]
    return pd.DataFrame({"seeds": g.count(), "mean": g.mean(), "std": g.std(ddof=1), "min": g.min(), "max": g.max()})


def claims(table: pd.DataFrame, metric: str = "bleu", decoding: str = "greedy") -> pd.DataFrame:
    """Each step of the README's ranking (``utils.evaluation.intervals.RANKING``): in how many seeds the
    higher model scores above the lower one on ``metric`` with ``decoding``; ``settled`` only when it
    holds in every seed and the study has all of its seeds (``SEEDS``) for both models."""
    wide = table[table["decoding"] == decoding].pivot(index="seed", columns="model", values=metric)
    rows = []
    for low, high in RANKING:
        if {low, high} <= set(wide.columns):
            both = wide[[low, high]].dropna()
            holds = int((both[high] > both[low]).sum())
            rows.append({"claim": f"{low} < {high}", "metric": metric, "decoding": decoding, "seeds": len(both),
                         "holds": holds, "settled": holds == len(both) >= len(SEEDS)})
    return pd.DataFrame(rows)


def _spread(row: pd.Series) -> str:
    return f"{row['mean']:.2f} ± {row['std']:.2f} ({row['min']:.2f}-{row['max']:.2f})"


def summary_markdown(table: pd.DataFrame) -> str:
    """The seed study as a table: mean ± standard deviation (min-max) of BLEU and CrystalBLEU per model
    and decoding."""
    bleu, crystal = summary(table, "bleu"), summary(table, "crystal_bleu")
    rows = [[m, d, cell(bleu.loc[(m, d), "seeds"], 0), _spread(bleu.loc[(m, d)]), _spread(crystal.loc[(m, d)])]
            for m, d in bleu.index]
    return markdown_table(rows, ["model", "decoding", "seeds", "BLEU mean ± sd (min-max)",
                                 "CrystalBLEU mean ± sd (min-max)"])


def claims_markdown(table: pd.DataFrame) -> str:
    """One line per step of the README's ranking: in how many seeds it holds by BLEU and CrystalBLEU,
    greedy and beam 5 + syntax; a step that fails in any seed is not settled."""
    found = pd.concat([claims(table, m, d) for d in DECODINGS for m in ("bleu", "crystal_bleu")])
    if found.empty:
        return "No step of the ranking has both its models in the table."
    lines = []
    for claim, rows in found.groupby("claim", sort=False):
        parts = [f"{'BLEU' if r.metric == 'bleu' else 'CrystalBLEU'} {r.decoding} {r.holds} of {r.seeds}"
                 for r in rows.itertuples()]
        seeds = int(rows["seeds"].min())
        verdict = ("holds in every seed" if rows["settled"].all() else "not settled"
                   + (f" (only {seeds} of the {len(SEEDS)} seeds so far)" if seeds < len(SEEDS) else ""))
        lines.append(f"- {claim}: {verdict} ({', '.join(parts)}).")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--params", default="params/full.yaml")
    p.add_argument("--shipped", type=Path, default=Path("checkpoints"),
                   help="the recipe's own seed: the shipped weights, read only (default: checkpoints)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="the other seeds' runs (default: runs/seeds/<params name>)")
    p.add_argument("--csv", default="plots/seed_study.csv")
    p.add_argument("--collect", action="store_true", help="train nothing: the table of the finished runs")
    args = p.parse_args(list(argv) if argv is not None else None)
    recipe, commit = Path(args.params).stem, git_commit()  # the code this process runs
    kept = pd.read_csv(args.csv) if Path(args.csv).is_file() else None
    if kept is not None and "params" in kept:
        kept = kept[kept["params"] == recipe]
    done = frozenset() if kept is None else frozenset(zip(kept["seed"], kept["model"]))
    out = Path(args.out or f"runs/seeds/{recipe}")
    try:
        models = model_names(" ".join(args.models))
    except ValueError as e:
        p.error(str(e))
    if not args.collect:
        params, data = load_study_data(p, args.params, args.threads)
        test_rows = load_split(params["data_dir"], "test")
        for seed in args.seeds:
            try:
                run_seed(seed, models, params, data, test_rows, out, args.shipped, recipe, commit, done)
            except (FileNotFoundError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    table = collect(out, models, kept)
    if table.empty:
        print(f"No finished run under {out}.")
        return 0
    save_csv(table, args.csv)
    print(summary_markdown(table) + "\n\n" + claims_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
