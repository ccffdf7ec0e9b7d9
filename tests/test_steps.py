"""The benchmark script (``utils.bench.steps``) runs and reports, and stops on bad arguments with one line.
Speed itself is not asserted (it depends on the machine and its load)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils.bench.steps import main
from utils.paths import REPO_ROOT


def test_benchmark_cli_prints_one_json_line_per_model() -> None:
    cmd = [sys.executable, "-m", "utils.bench.steps", "--synthetic", "--model", "rnn", "--model", "transformer",
           "--batches", "2", "--batch-size", "8", "--src-vocab", "50", "--trg-vocab", "60", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert [r["model"] for r in records] == ["rnn", "transformer"]
    for r in records:
        assert r["train_target_tokens_per_s"] > 0 and r["seconds_per_batch"] > 0
        assert r["batches"] == 2 and r["batch_size"] == 8 and r["data"] == "synthetic"
        assert r["parameters"] > 0
    # the recurrent models are also timed against the straightforward reference
    assert records[0]["reference_seconds_per_batch"] > 0 and records[0]["speedup_vs_reference"] > 0
    # speedup = work ratio x rate ratio (up to rounding); the reference pads, so it does more work
    rec = records[0]
    assert rec["work_ratio_vs_reference"] > 1
    assert rec["speedup_vs_reference"] == pytest.approx(
        rec["work_ratio_vs_reference"] * rec["approx_train_gflops"] / rec["reference_approx_train_gflops"], rel=0.05)
    assert "reference_seconds_per_batch" not in records[1]


def test_benchmark_cli_rejects_bad_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "utils.bench.steps", "--batches", "0"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--batches and --batch-size must be at least 1" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--device", "bogus"], "Unknown device 'bogus'"),
    (["--data-dir", "/nonexistent/processed"], "No processed data at /nonexistent/processed"),
    (["--src-vocab", "3"], "must be at least 5"),
    (["--teacher-forcing", "1.5"], "between 0 and 1"),
    (["--threads", "-1"], "--threads must be 0"),
    (["--decode"], "--decode needs --data-dir"),
    (["--synthetic", "--data-dir", "data/processed"], "exclude each other"),
])
def test_benchmark_bad_arguments_stop_with_one_line(args, message, capsys) -> None:
    """Checked before any model is timed: exit status 2 and a message, not a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_benchmark_decode_on_an_empty_test_split_stops_with_one_line(tmp_path, capsys) -> None:
    from utils.data.vocabulary import Vocabulary

    row = {"docstring_tokens": ["add", "one"], "code_tokens": ["def", "f", "(", ")", ":"]}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "test.jsonl").write_text("")
    (tmp_path / "manifest.json").write_text("{}")
    Vocabulary.build([row["docstring_tokens"]], min_freq=1).save(tmp_path / "src_vocab.json")
    Vocabulary.build([row["code_tokens"]], min_freq=1).save(tmp_path / "trg_vocab.json")
    with pytest.raises(SystemExit) as exit_info:
        main(["--data-dir", str(tmp_path), "--decode", "--model", "rnn", "--batches", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--decode: The test split in" in err and "is empty" in err and "Traceback" not in err


def test_benchmark_on_real_data_takes_the_corpus_length_limits(tmp_path, capsys) -> None:
    """A target longer than the default position table (128): the Transformer is built, as in training,
    with room for the corpus's longest target."""
    from utils.data.vocabulary import Vocabulary

    row = {"docstring_tokens": ["add", "one"], "code_tokens": ["x"] * 150}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"max_lengths": {"src": 10, "trg": 160}}))
    Vocabulary.build([row["docstring_tokens"]], min_freq=1).save(tmp_path / "src_vocab.json")
    Vocabulary.build([row["code_tokens"]], min_freq=1).save(tmp_path / "trg_vocab.json")
    assert main(["--data-dir", str(tmp_path), "--model", "transformer", "--batches", "1", "--batch-size", "1",
                 "--no-compare"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["model"] == "transformer" and record["train_target_tokens_per_s"] > 0
