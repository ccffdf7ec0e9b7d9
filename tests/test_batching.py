"""The batching benchmark: settings parsed or refused, and a side-by-side run on a tiny corpus."""
from __future__ import annotations

import json

import pytest

from utils.bench import batching as benchmark_batching
from utils.bench.batching import parse_setting


def test_settings_are_sequences_or_target_pieces_with_a_precision() -> None:
    assert parse_setting("64:fp32") == (64, 0, "fp32")
    assert parse_setting("12000t:bf16") == (0, 12000, "bf16")
    for bad in ("64", "0:fp32", "t:fp32", "64:fp16", "12k:bf16"):
        with pytest.raises(ValueError, match=f"Bad setting '{bad}'"):
            parse_setting(bad)


def test_two_settings_side_by_side_on_a_tiny_corpus(tmp_path, tiny_corpus, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"embed_dim": 8, "hidden_dim": 16, "num_layers": 1}))
    argv = ["--data-dir", str(tiny_corpus), "--params", str(params), "--model", "lstm", "--setting", "16:fp32",
            "--setting", "400t:fp32", "--pairs", "40"]
    assert benchmark_batching.main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "lstm" and record["pairs"] == 40
    assert record["16:fp32"]["batches"] == 3 and record["16:fp32"]["ratio_to_first"] == 1.0
    assert record["400t:fp32"]["target_pieces_per_s"] > 0


def test_a_bad_setting_stops_with_one_line(capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit):
        benchmark_batching.main(["--setting", "64:fp64"])
    assert "Bad setting '64:fp64'" in capsys.readouterr().err
    monkeypatch.setattr("utils.precision.cpu_has_bf16", lambda: False)
    monkeypatch.delenv("SEQ2SEQ_EMULATED_BF16", raising=False)
    with pytest.raises(SystemExit):
        benchmark_batching.main(["--setting", "64:bf16"])
    assert "no native bf16 arithmetic" in capsys.readouterr().err
