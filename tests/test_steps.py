"""The benchmark script runs and reports; synthetic data obeys its advertised length ranges.
Speed itself is not asserted (it depends on the machine and its load)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from utils.bench.steps import examples_macs, main, reference_macs, synthetic_examples, train_macs
from utils.config import Seq2SeqConfig
from utils.data.batch import make_batch
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


def test_synthetic_examples_lengths_and_ids() -> None:
    examples = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=0)
    src_lens = [len(e.src) + 2 for e in examples]  # + <SOS>/<EOS>
    trg_lens = [len(e.trg) + 2 for e in examples]
    assert min(src_lens) == 5 and max(src_lens) == 52
    assert min(trg_lens) == 10 and max(trg_lens) == 82
    assert all(4 <= t < 50 for e in examples for t in e.src)  # no specials, inside the vocabulary
    assert all(4 <= t < 60 for e in examples for t in e.trg)
    assert [e.index for e in examples] == list(range(3000))
    again = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=0)
    assert [(e.src, e.trg) for e in again] == [(e.src, e.trg) for e in examples]
    other = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=1)
    assert [(e.src, e.trg) for e in other] != [(e.src, e.trg) for e in examples]


@pytest.mark.parametrize("model", ["rnn", "lstm", "attention", "copy", "transformer"])
def test_train_macs_grow_with_tokens(model) -> None:
    cfg = Seq2SeqConfig(model=model, src_vocab_size=100, trg_vocab_size=200)
    small, big = train_macs(cfg, 100, 100, 10.0), train_macs(cfg, 200, 200, 10.0)
    assert 0 < small < big
    assert big == pytest.approx(2 * small, rel=0.05)


def test_time_interleaved_takes_turns_and_sums() -> None:
    """Steppers run batch by batch in turn (a shorter list just stops), and each gets its own totals."""
    from utils.bench.steps import time_interleaved

    calls = []

    def stepper(name: str, seconds: float):
        def step(batch):
            calls.append((name, batch))
            return seconds, batch
        return step

    totals = time_interleaved([stepper("a", 0.5), stepper("b", 2.0)], [[1, 2, 3], [10, 20]])
    assert calls == [("a", 1), ("b", 10), ("a", 2), ("b", 20), ("a", 3)]
    assert totals == [{"seconds": 1.5, "tokens": 6}, {"seconds": 4.0, "tokens": 30}]


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


@pytest.mark.parametrize("model", ["rnn", "attention"])
def test_reference_macs_count_padded_targets(model) -> None:
    """On unpadded batches the reference (the plain loss) does the fast path's work; padded target
    positions add work, padded source positions none (its encoder reads a packed batch)."""
    cfg = Seq2SeqConfig(model=model, src_vocab_size=100, trg_vocab_size=200)
    same = synthetic_examples(40, 100, 200, seed=0)
    for e in same:  # one source and one target length: no padding
        e.src, e.trg = e.src[:3] + [5] * (3 - len(e.src[:3])), e.trg[:8]
    batch = make_batch(same)
    fast = examples_macs(cfg, same, batch.n_tokens)
    ref = reference_macs(cfg, [batch])
    assert ref == pytest.approx(fast)
    padded = make_batch(same[:20] + [e for e in synthetic_examples(20, 100, 200, seed=1)])
    assert reference_macs(cfg, [padded]) > ref
    same[0].src = same[0].src[:1]  # padded sources: the encoder's work is the fast path's
    ragged = make_batch(same)
    if model == "rnn":
        assert reference_macs(cfg, [ragged]) == pytest.approx(examples_macs(cfg, same, ragged.n_tokens))
    else:  # but attention reads every source position
        assert reference_macs(cfg, [ragged]) > examples_macs(cfg, same, ragged.n_tokens)


def test_benchmark_decoding_reports_rates_and_flops(tmp_path, trained_models, toy_vocab, monkeypatch) -> None:
    """On a tiny processed folder and a saved checkpoint: both rates, their ratio and the batched
    path's approximate compute rate are reported, for the checkpoint that was asked for."""
    from utils.bench.steps import benchmark_decoding, benchmark_decoding_precision
    from utils.checkpoint import save_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    toy_vocab.save(data / "src_vocab.json")
    toy_vocab.save(data / "trg_vocab.json")
    words = [f"t{i}" for i in range(12)]
    with open(data / "test.jsonl", "w", encoding="utf-8") as f:
        for k in range(30):
            src = [words[(k + j) % 12] for j in range(3 + k % 5)]
            f.write(json.dumps({"docstring_tokens": src, "code_tokens": src}) + "\n")
    model = trained_models["attention"]
    save_checkpoint(tmp_path / "ckpt" / "attention_best.pt", model, toy_vocab, toy_vocab)
    res = benchmark_decoding(model.config, str(data), torch.device("cpu"), n=20, batch_size=8,
                             checkpoint_dir=str(tmp_path / "ckpt"))
    assert res["decode_model"].endswith("attention_best.pt") and res["decode_sequences"] == 20
    assert res["decode_batched_seq_per_s"] > 0 and res["decode_single_seq_per_s"] > 0
    ratio = res["decode_batched_seq_per_s"] / res["decode_single_seq_per_s"]
    assert res["decode_speedup"] == pytest.approx(ratio, abs=0.06)
    assert res["decode_batched_approx_gflops"] > 0
    same = benchmark_decoding(model.config, str(data), torch.device("cpu"), n=20, batch_size=8,
                              checkpoint_dir=str(tmp_path / "ckpt"), precision="fp32")
    assert same["decode_precision"] == "fp32"
    # bf16 is emulated where the CPU has no native support: slower, but it runs
    monkeypatch.setenv("SEQ2SEQ_EMULATED_BF16", "1")
    both = benchmark_decoding_precision(model.config, str(data), torch.device("cpu"), n=20, batch_size=8,
                                        checkpoint_dir=str(tmp_path / "ckpt"))
    assert both["fp32_decode_seq_per_s"] > 0 and both["bf16_decode_seq_per_s"] > 0
    assert both["bf16_decode_speedup"] == pytest.approx(
        both["bf16_decode_seq_per_s"] / both["fp32_decode_seq_per_s"], rel=0.05)
    assert 0.0 <= both["bf16_decode_same_output_share"] <= 1.0 and both["decode_sequences"] == 20


def test_transformer_macs_follow_its_width_hidden_dim() -> None:
    """The Transformer is hidden_dim wide (embed_dim is the recurrent models' embedding size)."""
    def macs(**kw):
        return train_macs(Seq2SeqConfig(model="transformer", trg_vocab_size=100, ff_dim=64, num_layers=1, **kw),
                          src_tokens=10, trg_tokens=10, mean_src_len=5)

    assert macs(embed_dim=16, hidden_dim=32) == macs(embed_dim=64, hidden_dim=32)
    d, ff, V = 32, 64, 100
    assert macs(embed_dim=16, hidden_dim=d) == 10 * (4 * d * d + 2 * d * ff) + 10 * (8 * d * d + 2 * d * ff + d * V)
