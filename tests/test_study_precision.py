"""The precision study's command (``utils.studies.precision``): fp32 against bf16 on a tiny corpus."""
from __future__ import annotations

import utils.precision as precision_module


def test_the_precision_study_writes_its_table(tmp_path, tiny_word_corpus, monkeypatch) -> None:
    """The study's command on a tiny corpus: one model, one epoch, both precisions, one table."""
    from utils.studies import precision as precision_study

    data = tiny_word_corpus
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
