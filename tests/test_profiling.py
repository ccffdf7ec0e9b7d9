"""The training profile: operations sorted into products, loss and the rest, and one model's row
on a tiny corpus whose shares add up to the whole batch."""
from __future__ import annotations

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from utils.bench import profiling as profile_training
from utils.bench.profiling import COLUMNS, op_seconds


def test_operations_are_sorted_into_products_loss_and_the_rest() -> None:
    a = torch.randn(64, 64, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        logits = (a @ a).tanh()
        torch.nn.functional.cross_entropy(logits, torch.zeros(64, dtype=torch.long)).backward()
    kinds = op_seconds(prof)
    assert set(kinds) == {"products", "loss", "other tensor ops"}
    assert all(v > 0 for v in kinds.values())


def test_one_models_profile_on_a_tiny_corpus(tmp_path, tiny_corpus, capsys) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"models": ["rnn"], "embed_dim": 8, "hidden_dim": 16, "num_layers": 1,
                                  "batch_size": 8, "precision": "fp32"}))
    assert profile_training.main(["--params", str(params), "--data-dir", str(tiny_corpus), "--batches", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"2 batches per model, {params}")
    header, _, row = out[1:4]
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "rnn" and float(cells[1]) > 0
    shares = [int(c.rstrip("%")) for c in cells[3:]]
    assert sum(shares) == pytest.approx(100, abs=len(shares))  # each share rounded to a whole per cent


def test_a_missing_corpus_stops_with_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        profile_training.main(["--params", "params/studies/small.yaml", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err
