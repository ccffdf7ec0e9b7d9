"""The shipped weights (checkpoints/) and the release step that writes them.

Every model of ``checkpoints/manifest.json`` loads (its hash checked) and still computes, in fp32,
what it computed when it was shipped (``recorded_outputs.json``): the teacher-forced log-probability
of each recorded output within a small tolerance, and the same greedy outputs (all but the rare
near-tie that another CPU's rounding may flip). A change to a model's code that changes its
function fails here instead of silently breaking the shipped weights.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import utils.checkpoint as checkpoint
from utils.checkpoint import LoadedModel, file_sha256, load_checkpoint, shipped_manifest
from utils.config import REVIEWER
from utils.decoding.rerank import RERANKER_FILE, Reranker
from utils.evaluation.shipped import (
    RECORDED_FILE,
    compare_reviewer,
    compare_with_recorded,
    release,
    sequence_log_probs,
)
from utils.paths import project_path

SHIPPED = shipped_manifest() or {"files": {}}
WEIGHTS = sorted(f for f in SHIPPED["files"] if f.endswith("_best.pt"))
MODELS = [f for f in WEIGHTS if SHIPPED["files"][f]["model"] != REVIEWER]
LOG_PROB_TOLERANCE = 1e-2  # nats per sequence: fp32 rounding differs between CPUs by far less
SAME_OUTPUTS = 0.9
ENCODER_TOLERANCE = 1e-4  # relative; fp32 rounding differs between CPUs by far less


def _load(path) -> LoadedModel:
    return LoadedModel.from_checkpoint(load_checkpoint(path), path, "cpu", precision="fp32")


def test_weights_ship_with_the_repository() -> None:
    assert SHIPPED["files"], "checkpoints/manifest.json lists no shipped weights; run `make release`"
    total = sum(f["bytes"] for f in SHIPPED["files"].values())
    assert total <= 60e6, f"the shipped weights take {total / 1e6:.1f} MB, more than 60 MB"


@pytest.mark.parametrize("file", WEIGHTS)
def test_each_shipped_model_ended_its_training_by_its_schedule_or_early_stopping(file) -> None:
    """Never by an epoch cap in the middle of a schedule: the README's table is of finished runs."""
    assert SHIPPED["files"][file]["ended_by"] in ("schedule", "patience")


@pytest.mark.parametrize("file", MODELS)
def test_each_shipped_model_computes_what_it_computed_when_shipped(file) -> None:
    path = project_path(checkpoint.SHIPPED_DIR) / file
    loaded = _load(path)
    assert loaded.name == SHIPPED["files"][file]["model"]
    recorded = json.loads((path.parent / RECORDED_FILE).read_text())[loaded.name]
    assert len(recorded) >= 24
    found = compare_with_recorded(loaded, recorded)
    assert found["max_log_prob_diff"] <= LOG_PROB_TOLERANCE, found
    assert found["same_outputs"] >= SAME_OUTPUTS, found
    # the README's second row: beam 5 + syntax with the manifest's length penalty
    assert recorded[0]["length_penalty"] == SHIPPED["files"][file]["length_penalty"]["beam5+syntax"]
    assert found["same_beam_outputs"] >= SAME_OUTPUTS, found
    # the encoder, which the log-probabilities may not see (the RNN ignores its docstring)
    assert found["max_encoder_diff"] <= ENCODER_TOLERANCE, found
    assert len({round(r["encoder"], 3) for r in recorded}) > len(recorded) // 2  # docstrings are told apart


def test_the_shipped_reviewer_scores_what_it_scored_when_shipped() -> None:
    """The combined system's reviewer (code -> docstring): its recorded log-probabilities per piece."""
    if "reviewer_best.pt" not in SHIPPED["files"]:
        pytest.skip("no reviewer shipped yet (make main, then make release)")
    path = project_path(checkpoint.SHIPPED_DIR) / "reviewer_best.pt"
    loaded = _load(path)
    assert loaded.name == REVIEWER and loaded.model.config.reviews
    recorded = json.loads((path.parent / RECORDED_FILE).read_text())[REVIEWER]
    assert len(recorded) >= 24 and len({round(r["log_prob"], 3) for r in recorded}) > len(recorded) // 2
    assert compare_reviewer(loaded, recorded) <= LOG_PROB_TOLERANCE
    assert "reranker.json" in SHIPPED["files"]  # shipped together with what it was fitted with


def test_release_ships_a_runs_checkpoints_with_their_manifest_and_recorded_outputs(tmp_path, ckpt_dir, rows,
                                                                                   monkeypatch) -> None:
    data, plots, out = tmp_path / "data", tmp_path / "plots", tmp_path / "shipped"
    data.mkdir()
    plots.mkdir()
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "manifest.json").write_text(json.dumps({"corpus_sha256": "c0ffee"}))
    figures = {"bleu": 12.5, "codebleu": 20.0, "syntax_valid": 90.0, "exact_match": 0.0}
    pd.DataFrame([{"model": m, "decoding": d, **figures} for m in ("rnn", "attention")
                  for d in ("greedy", "beam5", "beam5+syntax")]).to_csv(plots / "results.csv", index=False)
    pd.DataFrame([{"model": "attention", "decoding": d, "length_penalty": a, "chosen": a == 2.0}
                  for d in ("beam5", "beam5+syntax") for a in (2.0, 3.0)]).to_csv(plots / "length_penalty.csv",
                                                                                 index=False)
    monkeypatch.setattr(checkpoint, "SHIPPED_DIR", str(out))
    (out / "rnn_best.pt").parent.mkdir()
    (out / "old_best.pt").write_bytes(b"an earlier release")
    (out / ".gitkeep").write_text("")  # kept: only the weights, the manifest and the recorded outputs are replaced
    (out.with_name("shipped.new")).mkdir()  # left by an earlier release that failed
    (out / RERANKER_FILE).write_text("{}")  # an earlier release's: replaced, not kept
    run = tmp_path / "run" / "checkpoints"  # the run: the models, the reviewer and the fitted combined system
    shutil.copytree(ckpt_dir, run)
    Reranker(weights={"cosine": 1.0, "reviewer": 0.5}, k=3, generic_docstring=["Return", "it", "."]).save(
        run / RERANKER_FILE)

    (run.parent / "timings.json").write_text(json.dumps({"02_train.ipynb": 10.0, "total": 12.5}))
    (run.parent / "later").mkdir()  # a later run that added to the timed one
    (run.parent / "later" / "timings.json").write_text(json.dumps({"03_bleu.ipynb": 20.0, "total": 21.0}))
    manifest = release(run, ["attention", "rnn"], "params/full.yaml", data, plots, out_dir=out, commit="abc",
                       n_recorded=4, added_run=run.parent / "later")
    timings = json.loads((plots / "timings.json").read_text())
    assert timings["stages"] == {"02_train.ipynb": 10.0, "total": 12.5} and timings["params"] == "params/full.yaml"
    assert {"cpu", "cores", "avx512_bf16", "amx", "torch"} <= set(timings["machine"])
    assert timings["added"]["stages"]["total"] == 21.0 and len(timings["added"]["reviewer_epoch_seconds"]) == 2
    assert sorted(p.name for p in out.glob("*_best.pt")) == ["attention_best.pt", "reviewer_best.pt", "rnn_best.pt"]
    assert (out / ".gitkeep").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "plots", "run", "shipped"]  # swapped in whole
    # the combined system's parts: the reviewer with its recorded scores, the fitted weights with their hash
    assert manifest["files"]["reviewer_best.pt"]["model"] == REVIEWER
    assert manifest["files"][RERANKER_FILE]["sha256"] == file_sha256(out / RERANKER_FILE)
    assert Reranker.load(out / RERANKER_FILE).k == 3
    assert json.loads((out / "manifest.json").read_text()) == manifest
    entry = manifest["files"]["attention_best.pt"]
    assert entry["sha256"] == file_sha256(out / "attention_best.pt") and entry["model"] == "attention"
    assert entry["length_penalty"] == {"beam5": 2.0, "beam5+syntax": 2.0}
    assert manifest["files"]["rnn_best.pt"]["length_penalty"] == {}
    assert entry["test"] == {"greedy": figures, "beam5+syntax": figures}
    assert manifest["commit"] == "abc" and manifest["corpus_sha256"] == "c0ffee"
    recorded = json.loads((out / RECORDED_FILE).read_text())
    assert [r["docstring_tokens"] for r in recorded["rnn"]] == [r["docstring_tokens"] for r in rows[:4]]
    assert all(r["log_prob"] < 0 for r in recorded["rnn"])
    assert len(recorded[REVIEWER]) == 4 and compare_reviewer(_load(out / "reviewer_best.pt"), recorded[REVIEWER]) == 0
    assert compare_reviewer(_load(ckpt_dir / "transformer_best.pt"), [
        {**r, "code_tokens": r["docstring_tokens"], "docstring_tokens": r["code_tokens"]}
        for r in recorded[REVIEWER]]) > LOG_PROB_TOLERANCE  # other weights score otherwise
    loaded = _load(out / "attention_best.pt")
    assert compare_with_recorded(loaded, recorded["attention"]) == {
        "max_log_prob_diff": 0.0, "same_outputs": 1.0, "max_encoder_diff": 0.0, "same_beam_outputs": 1.0}
    assert recorded["attention"][0]["beam_code_tokens"] and recorded["rnn"][0].get("length_penalty") is None
    # another model's weights under the same name compute something else: the comparison sees it
    other = _load(ckpt_dir / "rnn_best.pt")
    diffs = [abs(a - r["log_prob"]) for a, r in zip(sequence_log_probs(other, recorded["attention"]),
                                                    recorded["attention"])]
    assert max(diffs) > LOG_PROB_TOLERANCE


def test_a_release_that_fails_half_way_leaves_the_old_weights_and_manifest(tmp_path, ckpt_dir, rows,
                                                                           monkeypatch) -> None:
    import utils.evaluation.shipped as shipped

    data, plots, out = tmp_path / "data", tmp_path / "plots", tmp_path / "shipped"
    for folder in (data, plots, out):
        folder.mkdir()
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame([{"model": m, "decoding": "greedy", "bleu": 1.0, "codebleu": 1.0, "syntax_valid": 1.0,
                   "exact_match": 0.0} for m in ("rnn", "attention")]).to_csv(plots / "results.csv", index=False)
    (out / "rnn_best.pt").write_bytes(b"the old weights")
    (out / "manifest.json").write_text('{"files": {}}')

    def fail(*_):
        raise OSError("the disk is full")

    monkeypatch.setattr(shipped, "record_outputs", fail)
    with pytest.raises(OSError):
        release(ckpt_dir, ["attention", "rnn"], "params/full.yaml", data, plots, out_dir=out, commit="abc")
    assert (out / "rnn_best.pt").read_bytes() == b"the old weights"
    assert (out / "manifest.json").read_text() == '{"files": {}}' and not (out / "attention_best.pt").exists()


def test_a_damaged_manifest_names_the_file_and_the_restore_command(tmp_path) -> None:
    from utils.checkpoint import CheckpointError

    (tmp_path / "manifest.json").write_text('{"files": {"rnn_best.pt": ')
    with pytest.raises(CheckpointError, match=r"manifest.json is damaged .*git checkout -- checkpoints"):
        shipped_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('["not", "a", "manifest"]')
    with pytest.raises(CheckpointError, match="is damaged"):
        shipped_manifest(tmp_path)


# Docstrings the project never trained or tested on, written for this test (HumanEval-like tasks).
UNSEEN = [
    "Return the sum of two numbers.", "Check if a string is a palindrome.", "Return the factorial of n.",
    "Remove duplicate items from a list, keeping their order.", "Read a JSON file and return its content.",
    "Return the largest element of a list.", "Count the vowels in a string.", "Reverse the words of a sentence.",
    "Return True if n is a prime number.", "Flatten a list of lists into one list.",
    "Return the n-th Fibonacci number.", "Convert a temperature from Celsius to Fahrenheit.",
    "Merge two dictionaries into a new one.", "Return the common elements of two lists.",
    "Write a string to a text file.", "Return the number of lines in a file.",
    "Sort a list of tuples by their second item.", "Return the mean of a list of numbers.",
    "Split a list into chunks of size n.", "Capitalize the first letter of each word.",
    "Return the keys of a dictionary sorted by value.", "Check whether a path points to an existing directory.",
    "Return the greatest common divisor of a and b.", "Parse a date string in ISO format.",
    "Return a copy of the list without None values.", "Compute the dot product of two vectors.",
    "Return the index of the first occurrence of x in a list, or -1.", "Join a list of strings with commas.",
    "Create a directory if it does not exist.", "Return the current time as a string.",
]
ODD = ["", "   \n\t ", ("Return the sum of a and b " * 5000)[:100_000], "ctrl \x00\x07\x1b[31m chars\x7f",
       "Retourne la somme de deux nombres", "返回两个数字的和", "Сложить два числа и вернуть результат"]


@pytest.mark.parametrize("file", MODELS)
def test_shipped_models_write_code_that_parses_for_docstrings_never_seen(file) -> None:
    """Beam 5 with syntax-aware decoding (the README's second row per model, its length penalty from the
    manifest): at least 90% of the outputs parse."""
    import ast

    from inference.inference import batch_generate

    path = project_path(checkpoint.SHIPPED_DIR) / file
    alpha = SHIPPED["files"][file]["length_penalty"].get("beam5+syntax", 3.0)
    codes = batch_generate(UNSEEN, path, beam_size=5, syntax_aware=True, length_penalty=alpha, precision="fp32")
    parsed = 0
    for code in codes:
        try:
            ast.parse(code)
            parsed += 1
        except SyntaxError:
            pass
    assert parsed >= 0.9 * len(UNSEEN), f"{parsed} of {len(UNSEEN)} parse"


def test_the_shipped_attention_model_answers_odd_docstrings_clearly() -> None:
    """Empty and whitespace-only docstrings are refused with a clear message; long, control-character
    and non-English ones give code (the long one cut to the source limit, with a warning)."""
    import warnings

    from inference.inference import generate_code

    path = project_path(checkpoint.SHIPPED_DIR) / "attention_best.pt"
    if not path.is_file():
        pytest.skip("no shipped attention model")
    for doc in ODD[:2]:
        with pytest.raises(ValueError, match="docstring is empty"):
            generate_code(doc, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(isinstance(generate_code(doc, path, precision="fp32"), str) for doc in ODD[2:])
