"""The benchmark's decoding measures (``utils.bench.decoding``) on a tiny processed folder."""
from __future__ import annotations

import json

import pytest
import torch


def test_benchmark_decoding_reports_rates_and_flops(tmp_path, trained_models, toy_vocab, monkeypatch) -> None:
    """On a tiny processed folder and a saved checkpoint: both rates, their ratio and the batched
    path's approximate compute rate are reported, for the checkpoint that was asked for."""
    from utils.bench.decoding import benchmark_decoding, benchmark_decoding_precision
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
