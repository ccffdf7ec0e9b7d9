"""The trained weights that ship with the repository: a run's best checkpoints copied into
``checkpoints/`` with a manifest and recorded outputs, so that inference and the evaluation notebooks
work on a fresh clone and CI can tell when the code stops computing what the weights were trained for.

    python -m utils.evaluation.shipped --run runs/full/checkpoints --params params/full.yaml   # make release

The manifest (``checkpoints/manifest.json``) holds, for each file: its sha256 (checked on every load,
``utils.checkpoint.verify_shipped``), the model, its size, how its training ended, the beam length
penalty chosen for it on validation (``plots/length_penalty.csv``) and its test figures as in the
README (``plots/results.csv``); and for all of them the commit and parameter file that trained them
and the corpus hash. ``recorded_outputs.json`` holds, per model, a few dozen test docstrings with
the model's greedy output, its beam-5 + syntax output (the manifest's length penalty), the greedy
output's teacher-forced log-probability and the encoder's fingerprint, computed in fp32
(``record_outputs``); ``tests/test_shipped.py`` recomputes them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
import yaml

from utils.checkpoint import MANIFEST_FILE, SHIPPED_DIR, LoadedModel, file_sha256, load_checkpoint
from utils.config import REVIEWER
from utils.data.batch import encode_pairs, make_batch
from utils.data.processed import load_manifest, load_split
from utils.decoding.rerank import RERANKER_FILE, log_probs_per_piece
from utils.evaluation.rerank import REVIEWER_FILE
from utils.evaluation.results import decode_split
from utils.files import replace_folder, write_text
from utils.paths import git_commit, project_path
from utils.precision import machine_description

RECORDED_FILE = "recorded_outputs.json"
RECORDED_EXAMPLES = 32  # test docstrings per model
README_DECODINGS = ("greedy", "beam5+syntax")  # the README's table
TEST_FIGURES = ("bleu", "codebleu", "syntax_valid", "exact_match")


@torch.no_grad()
def sequence_log_probs(loaded: LoadedModel, rows: Sequence[dict]) -> list[float]:
    """The teacher-forced log-probability of each row's code given its docstring (nats, dropout off),
    one row at a time, in the model's own arithmetic (fp32 for the recorded outputs)."""
    model = loaded.model.eval()
    examples = encode_pairs(rows, loaded.src_vocab, loaded.trg_vocab, with_copy=True,
                            retrieval_input=model.config.retrieval_input)
    return [-float(model.loss(make_batch([ex]).to(loaded.device), 1.0, None, 0.0)[0]) for ex in examples]


@torch.no_grad()
def encoder_fingerprints(loaded: LoadedModel, rows: Sequence[dict]) -> list[float]:
    """Each row's encoder state (what the first decoder step starts from) as one number: the sum of the
    absolute values of every tensor it holds, in float64. It separates docstrings even for a model
    whose decoder has learnt to ignore them (the RNN: its outputs' log-probabilities differ between
    docstrings by about 0.01 nats), so a change to the encoder shows."""
    model = loaded.model.eval()
    examples = encode_pairs(rows, loaded.src_vocab, loaded.trg_vocab, with_copy=True,
                            retrieval_input=model.config.retrieval_input)
    found = []
    for ex in examples:
        batch = make_batch([ex]).to(loaded.device)
        state = model.encode(batch.src, batch.src_lengths)
        tensors = [t for v in vars(state).values() for t in (v if isinstance(v, tuple) else (v,))
                   if isinstance(t, torch.Tensor) and t.is_floating_point()]
        found.append(sum(float(t.double().abs().sum()) for t in tensors))
    return found


def _beam(loaded: LoadedModel, rows: Sequence[dict], length_penalty: float) -> list[list[str]]:
    """The README's second decoding: beam 5 under the syntax constraint, with ``length_penalty``."""
    return decode_split(loaded, rows, beam_size=5, syntax_aware=True, length_penalty=length_penalty).hypotheses


def record_outputs(loaded: LoadedModel, rows: Sequence[dict], length_penalty: float | None = None) -> list[dict]:
    """Each row's docstring (and retrieved code, for a model that reads it), the model's greedy
    output for it (``code_tokens``), that output's teacher-forced log-probability and the encoder's
    fingerprint; with ``length_penalty``, also its beam-5 + syntax output (``beam_code_tokens``)."""
    hypotheses = decode_split(loaded, rows, beam_size=1).hypotheses
    reads = ["docstring_tokens"] + (["retrieved"] if loaded.model.config.retrieval_input != "none" else [])
    outputs = [{**{k: r[k] for k in reads}, "code_tokens": h} for r, h in zip(rows, hypotheses)]
    if length_penalty is not None:
        outputs = [{**o, "beam_code_tokens": b, "length_penalty": length_penalty}
                   for o, b in zip(outputs, _beam(loaded, rows, length_penalty))]
    return [{**o, "log_prob": lp, "encoder": e} for o, lp, e in
            zip(outputs, sequence_log_probs(loaded, outputs), encoder_fingerprints(loaded, outputs))]


def compare_with_recorded(loaded: LoadedModel, recorded: Sequence[dict]) -> dict[str, float]:
    """How far ``loaded`` now computes from what ``record_outputs`` recorded: the largest difference
    of the outputs' log-probabilities (nats), the largest relative difference of the encoder's
    fingerprints, and the shares of greedy (and beam + syntax) outputs that are still the same."""
    log_probs = sequence_log_probs(loaded, recorded)
    outputs = decode_split(loaded, recorded, beam_size=1).hypotheses
    found = {"max_log_prob_diff": max((abs(a - r["log_prob"]) for a, r in zip(log_probs, recorded)), default=0.0),
             "same_outputs": sum(o == r["code_tokens"] for o, r in zip(outputs, recorded)) / max(len(recorded), 1)}
    if recorded and "encoder" in recorded[0]:
        found["max_encoder_diff"] = max(abs(a - r["encoder"]) / max(abs(r["encoder"]), 1e-12)
                                        for a, r in zip(encoder_fingerprints(loaded, recorded), recorded))
    if recorded and "beam_code_tokens" in recorded[0]:
        beams = _beam(loaded, recorded, recorded[0]["length_penalty"])
        found["same_beam_outputs"] = sum(b == r["beam_code_tokens"] for b, r in zip(beams, recorded)) / len(recorded)
    return found


def record_reviewer(loaded: LoadedModel, rows: Sequence[dict]) -> list[dict]:
    """The reviewer's recorded outputs: each row's code and docstring with the teacher-forced
    log-probability per piece of the docstring given the code (fp32), as the combined system scores it."""
    codes, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    return [{"code_tokens": c, "docstring_tokens": d, "log_prob": float(lp)}
            for c, d, lp in zip(codes, docs, log_probs_per_piece(loaded, codes, docs))]


def compare_reviewer(loaded: LoadedModel, recorded: Sequence[dict]) -> float:
    """The largest difference (nats per piece) between what the reviewer scores now and what it recorded."""
    now = log_probs_per_piece(loaded, [r["code_tokens"] for r in recorded], [r["docstring_tokens"] for r in recorded])
    return max((abs(a - r["log_prob"]) for a, r in zip(now, recorded)), default=0.0)


def _ship_reranker(run: Path, out: Path, files: dict, recorded: dict, rows: Sequence[dict]) -> None:
    """The combined system's parts, where the run has them: the reviewer (with its recorded scores) and
    the fitted ``reranker.json`` (listed with its hash, so that loading it checks it like the weights)."""
    reviewer = run / REVIEWER_FILE
    if reviewer.is_file():
        path = out / REVIEWER_FILE
        shutil.copyfile(reviewer, path)
        ckpt = load_checkpoint(path)
        files[path.name] = {**model_entry(REVIEWER, path, ckpt, pd.DataFrame(columns=["model", "decoding"]),
                                          pd.DataFrame(columns=["model", "chosen"])), "test": {}}
        loaded = LoadedModel.from_checkpoint(ckpt, path, "cpu", precision="fp32")
        recorded[REVIEWER] = record_reviewer(loaded, rows)
    if (run / RERANKER_FILE).is_file():
        shutil.copyfile(run / RERANKER_FILE, out / RERANKER_FILE)
        files[RERANKER_FILE] = {"about": "the combined system's fitted weights, k and generic docstring "
                                         "(notebook 03, on the validation split)",
                                "sha256": file_sha256(out / RERANKER_FILE),
                                "bytes": (out / RERANKER_FILE).stat().st_size}


def added_timings(run: Path, added_run: str | Path) -> dict:
    """What a later run added to the timed one: its stage times (``<added_run>/timings.json``) and the
    reviewer's recorded epoch seconds, when the reviewer was trained after the timed run."""
    found: dict = {"run": str(added_run),
                   "stages": json.loads((project_path(added_run) / "timings.json").read_text())}
    if (run / REVIEWER_FILE).is_file():
        history = load_checkpoint(run / REVIEWER_FILE)["history"]
        found["reviewer_epoch_seconds"] = [round(float(h["epoch_seconds"]), 1) for h in history]
    return found


def model_entry(name: str, path: Path, ckpt: dict, results: pd.DataFrame, penalties: pd.DataFrame) -> dict:
    """One file's manifest entry (``ckpt``: its loaded contents): hash, model, training, chosen length
    penalties, test figures."""
    rows = results[results["model"] == name].set_index("decoding")
    chosen = penalties[(penalties["model"] == name) & penalties["chosen"]] if len(penalties) else penalties
    return {"model": name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
            "parameters": sum(t.numel() for t in ckpt["model_state"].values()),
            "epochs_run": ckpt.get("epochs_run", len(ckpt["history"])), "best_epoch": ckpt.get("best_epoch"),
            "ended_by": ckpt.get("ended_by", ""),
            "length_penalty": {r.decoding: float(r.length_penalty) for r in chosen.itertuples()},
            "test": {d: {k: round(float(rows.loc[d, k]), 4) for k in TEST_FIGURES}
                     for d in README_DECODINGS if d in rows.index}}


def release(run_dir: str | Path, models: Sequence[str], params: str, data_dir: str | Path = "data/processed",
            plots_dir: str | Path = "plots", out_dir: str | Path = SHIPPED_DIR, commit: str | None = None,
            n_recorded: int = RECORDED_EXAMPLES, added_run: str | Path | None = None) -> dict:
    """Copy ``<run_dir>/<model>_best.pt`` for each model into ``out_dir``, with the manifest and the
    recorded outputs (the first ``n_recorded`` test docstrings); the run's stage times, with this
    machine's description, go to ``<plots_dir>/timings.json`` (with ``added_run``: also what a later run
    added, :func:`added_timings`). The new folder is written beside the
    old one and swapped in whole: a release that fails half-way leaves the old weights and manifest."""
    run, out = project_path(run_dir), project_path(out_dir)
    missing = [m for m in models if not (run / f"{m}_best.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"No best checkpoint for {', '.join(missing)} in {run}; run `make main` first.")
    results = pd.read_csv(project_path(plots_dir) / "results.csv")
    tuning = project_path(plots_dir) / "length_penalty.csv"
    penalties = pd.read_csv(tuning) if tuning.is_file() else pd.DataFrame(columns=["model", "chosen"])
    rows = load_split(data_dir, "test", required=True)[:n_recorded]
    final, out = out, out.with_name(out.name + ".new")
    shutil.rmtree(out, ignore_errors=True)  # what an earlier failed release left
    out.mkdir(parents=True)
    files, recorded = {}, {}
    for name in models:
        path = out / f"{name}_best.pt"
        shutil.copyfile(run / path.name, path)
        ckpt = load_checkpoint(path)
        files[path.name] = model_entry(name, path, ckpt, results, penalties)
        loaded = LoadedModel.from_checkpoint(ckpt, path, "cpu", precision="fp32")
        recorded[name] = record_outputs(loaded, rows, files[path.name]["length_penalty"].get("beam5+syntax"))
    _ship_reranker(run, out, files, recorded, rows)
    manifest = {"about": "The trained weights that ship with the repository (make release); loading checks "
                         "each file's sha256.",
                "commit": commit or git_commit(), "params": params,
                "corpus_sha256": load_manifest(data_dir).get("corpus_sha256"), "files": files,
                "recorded_outputs": RECORDED_FILE}
    timings = run.parent / "timings.json"  # the run's stage times (utils.run_notebooks), with this machine's name
    if timings.is_file():
        stages = json.loads(timings.read_text())
        record = {"params": params, "run": str(Path(run_dir).parent), "stages": stages,
                  "machine": machine_description()}
        if added_run is not None:
            record["added"] = added_timings(run, added_run)
        write_text(project_path(plots_dir) / "timings.json", json.dumps(record, indent=1) + "\n")
    write_text(out / RECORDED_FILE, json.dumps(recorded, indent=1) + "\n")
    write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    for kept in final.glob("*") if final.is_dir() else []:  # what else the folder holds (.gitkeep, notes)
        if kept.is_file() and not (out / kept.name).exists() and not kept.name.endswith("_best.pt") \
                and kept.name != RERANKER_FILE:
            shutil.copyfile(kept, out / kept.name)
    replace_folder(out, final)
    return manifest


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/full/checkpoints", help="the run's checkpoint folder")
    p.add_argument("--params", default="params/full.yaml", help="the parameter file that trained them")
    p.add_argument("--models", nargs="+", help="default: the parameter file's models")
    p.add_argument("--commit", help="the commit whose main job trained them (default: the current one)")
    p.add_argument("--added-run", help="a later run that added to the timed one (its timings.json is recorded "
                                       "beside the timed run's): e.g. runs/full-rerank")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        if not project_path(args.params).is_file():
            raise FileNotFoundError(f"Parameter file {args.params} does not exist; see params/.")
        params = yaml.safe_load(project_path(args.params).read_text())
        manifest = release(args.run, args.models or params["models"], args.params, params["data_dir"],
                           params["plots_dir"], commit=args.commit, added_run=args.added_run)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = sum(f["bytes"] for f in manifest["files"].values())
    models = [f for f in manifest["files"] if f.endswith("_best.pt")]
    print(f"shipped {len(models)} models ({sizes / 1e6:.1f} MB) in {SHIPPED_DIR}/ with {MANIFEST_FILE}"
          + (f" and {RERANKER_FILE}" if RERANKER_FILE in manifest["files"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
