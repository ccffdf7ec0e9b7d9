"""The source-reliance gap: zero for a model that cannot see its docstring, large for one that copies it."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from utils.evaluation.source_reliance import main, source_reliance, swap_docstrings
from utils.models import build_model


def test_swap_moves_every_docstring_and_keeps_the_code(toy_rows) -> None:
    rows = toy_rows(30, seed=3)
    swapped = swap_docstrings(rows, seed=1)
    assert [r["code_tokens"] for r in swapped] == [r["code_tokens"] for r in rows]
    assert sorted(map(tuple, (r["docstring_tokens"] for r in swapped))) == \
        sorted(map(tuple, (r["docstring_tokens"] for r in rows)))
    assert all(s["docstring_tokens"] is not r["docstring_tokens"] for s, r in zip(swapped, rows))
    assert rows == toy_rows(30, seed=3)  # the input is not changed


@pytest.mark.parametrize("name", ["lstm", "attention", "copy", "transformer"])
def test_gap_is_large_for_a_model_that_copies(name, trained_models, toy_rows, toy_vocab) -> None:
    """The fixture's models learned (a little) to copy their source: the wrong docstring costs them
    (0.65-9.4 nats; not the fixture's RNN, whose loss is still near the uniform one's)."""
    result = source_reliance(trained_models[name], toy_rows(200, seed=21), toy_vocab, toy_vocab)
    assert result.loss < result.swapped_loss
    assert result.gap > 0.5, (name, result)


@pytest.mark.parametrize("name", ["rnn", "lstm", "attention"])
def test_gap_is_zero_when_the_encoder_sees_nothing(name, tiny_config, toy_rows, toy_vocab) -> None:
    """Zero source embeddings and encoder biases: every encoder state is 0 whatever the docstring
    (docstrings of one length, so attention spreads over the same number of states). Not the copy
    model: it copies the source's ids without the encoder."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name)).eval()
    with torch.no_grad():
        model.src_embedding.weight.zero_()
        for pname, p in model.encoder.named_parameters():
            if pname.startswith("bias"):
                p.zero_()
    rows = [r for r in toy_rows(100, seed=5) if len(r["docstring_tokens"]) == 5]
    result = source_reliance(model, rows, toy_vocab, toy_vocab)
    assert result.gap == pytest.approx(0.0, abs=1e-6)
    assert result.loss > 1.0  # an untrained model: the check above is not trivially 0 = 0


def test_needs_two_rows(trained_models, toy_rows, toy_vocab) -> None:
    with pytest.raises(ValueError, match="at least two"):
        source_reliance(trained_models["rnn"], toy_rows(1, seed=0), toy_vocab, toy_vocab)


def test_command_writes_one_row_per_checkpoint(ckpt_dir, rows, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "reliance.csv"
    assert main(["--data-dir", str(data), "--checkpoint-dir", str(ckpt_dir), "--csv", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["model"]) == ["rnn", "attention", "copy", "transformer"]  # lstm has no checkpoint
    assert (table["rows"] == len(rows)).all()
    assert table["gap"].to_numpy() == pytest.approx((table["swapped_loss"] - table["loss"]).to_numpy())
    assert "transformer" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--data-dir", str(data), "--checkpoint-dir", str(tmp_path / "none")])
    assert "No <model>_best.pt" in capsys.readouterr().err
