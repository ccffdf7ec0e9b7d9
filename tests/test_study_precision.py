"""The precision study's command (``utils.studies.precision``): fp32 against bf16 on a tiny corpus."""
from __future__ import annotations

import utils.precision as precision_module


def test_the_precision_study_writes_its_table(tmp_path, monkeypatch) -> None:
    """The study's command on a tiny corpus: one model, one epoch, both precisions, one table."""
    import json

    from utils.data.vocabulary import Vocabulary
    from utils.studies import precision as precision_study

    data = tmp_path / "data"
    data.mkdir()
    words = [f"w{i}" for i in range(8)]
    rows = [{"docstring_tokens": [words[(k + j) % 8] for j in range(3 + k % 4)]} for k in range(40)]
    for r in rows:
        r["code_tokens"] = ["def", "f", "("] + r["docstring_tokens"][:2] + [")", ":"]
    for name, part in (("train", rows[:24]), ("valid", rows[24:32]), ("test", rows[32:])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    Vocabulary.build([r["docstring_tokens"] for r in rows], min_freq=1).save(data / "src_vocab.json")
    Vocabulary.build([r["code_tokens"] for r in rows], min_freq=1).save(data / "trg_vocab.json")
    params = tmp_path / "tiny.yaml"
    params.write_text(f"data_dir: {data}\nembed_dim: 8\nhidden_dim: 16\nnum_layers: 1\nbatch_size: 8\n"
                      "dropout: 0.0\nepochs: 1\nmax_trg_len: 12\n")
    monkeypatch.delenv(precision_module.EMULATE_ENV, raising=False)
    csv = tmp_path / "precision.csv"
    assert precision_study.main(["--models", "lstm", "--params", str(params), "--out", str(tmp_path / "ckpt"),
                                 "--csv", str(csv), "--device", "cpu"]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert list(table.columns) == precision_study.COLUMNS
    assert table[["model", "precision", "epoch"]].values.tolist() == [["lstm", "fp32", 1], ["lstm", "bf16", 1]]
    assert table["kept"].all() and table["test_bleu"].between(0, 100).all()
    assert len(precision_study.verdict(table)) == 1
