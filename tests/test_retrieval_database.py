"""Inference with a retrieval model: the database beside the checkpoint, ``retrieve``, the CLI."""
from __future__ import annotations

import json

import pytest
import torch

from inference import example_inference
from inference.inference import AttentionResult, clear_cache, generate_code, generate_with_attention, retrieve
from utils.checkpoint import save_checkpoint
from utils.config import make_config
from utils.data.batch import SEPARATOR, bucketed_batches, encode_pairs
from utils.data.neighbours import find_neighbours
from utils.data.retrieval_database import DATABASE_FILE, RetrievalDatabase, vocabulary_fingerprint
from utils.data.tokenizer import tokenize_code, tokenize_docstring
from utils.data.vocabulary import Vocabulary
from utils.models import build_model

OPS = {"sum": "+", "difference": "-", "product": "*"}
NAMES = ["a", "b", "x", "y"]
DOC = "Return the sum of a and b."


def _rows() -> list[dict]:
    rows = []
    for op, sym in OPS.items():
        for p in NAMES:
            for q in NAMES:
                if p != q:
                    rows.append({"docstring_tokens": tokenize_docstring(f"Return the {op} of {p} and {q}."),
                                 "code_tokens": tokenize_code(f"def f({p}, {q}):\n    return {p} {sym} {q}\n"),
                                 "repo": "toy", "path": f"{op}_{p}_{q}.py"})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A copy+retrieval checkpoint trained a little on the toy rows, with its database beside it."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("retrieval")
    rows = _rows()
    vocab = Vocabulary.build([r["docstring_tokens"] + r["code_tokens"] for r in rows], min_freq=1)
    for r, (i, c) in zip(rows, find_neighbours(rows, {"train": rows})["train"]):
        r["retrieved"] = {"index": i, "cosine": c, "code_tokens": rows[i]["code_tokens"] if i is not None else []}
    torch.manual_seed(0)
    config = make_config("copy+retrieval", embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0,
                         src_vocab_size=len(vocab), trg_vocab_size=len(vocab))
    model = build_model(config)
    examples = encode_pairs(rows, vocab, vocab, with_copy=True, retrieval_input="top1")
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for step in range(20):
        for batch in bucketed_batches(examples, 16, seed=step):
            loss, n = model.loss(batch)
            opt.zero_grad()
            (loss / n).backward()
            opt.step()
    path = save_checkpoint(root / "copy+retrieval_best.pt", model.eval(), vocab, vocab)
    db = RetrievalDatabase([r["docstring_tokens"] for r in rows], [r["code_tokens"] for r in rows], "abc",
                           vocabulary_fingerprint(vocab))
    db.save(root / DATABASE_FILE)
    clear_cache()
    return {"path": path, "dir": root, "rows": rows, "vocab": vocab}


def test_inference_reads_the_nearest_training_function(trained) -> None:
    found = retrieve(DOC, trained["path"])
    assert found.index is not None and found.cosine > 0
    assert found.docstring_tokens == tokenize_docstring("Return the sum of a and b.")
    result = generate_with_attention(DOC, trained["path"])
    assert isinstance(result, AttentionResult) and result.retrieved == found
    sep = result.source_tokens.index(SEPARATOR)
    assert result.source_tokens[sep + 1:-1] == found.code_tokens
    assert result.attention.shape == (len(result.tokens), len(result.source_tokens))
    assert len(result.source_unknown) == len(result.source_tokens)
    assert isinstance(generate_code(DOC, trained["path"]), str)


def test_a_docstring_sharing_no_word_gets_no_retrieved_code(trained, capsys) -> None:
    doc = "Frobnicate zyzzyva quux."
    assert retrieve(doc, trained["path"]).index is None
    result = generate_with_attention(doc, trained["path"])
    assert result.source_tokens[-2:] == [SEPARATOR, "<EOS>"]  # the separator alone
    code = example_inference.main(["--checkpoint", str(trained["path"]), "--show-retrieved", "-d", doc, "-d", DOC])
    out = capsys.readouterr().out
    assert code == 0 and "# retrieved: none" in out
    assert "# retrieved: training function" in out and "cosine" in out and "#   def f(" in out


def test_a_missing_or_mismatched_database_names_the_file_and_the_command(trained, tmp_path, capsys) -> None:
    lonely = tmp_path / "copy+retrieval_best.pt"
    lonely.write_bytes(trained["path"].read_bytes())
    clear_cache()
    with pytest.raises(FileNotFoundError, match=f"{DATABASE_FILE}.*python -m utils.data.retrieval_database"):
        generate_code(DOC, lonely)
    other = json.loads((trained["dir"] / DATABASE_FILE).read_text()) | {"vocabulary_sha256": "0" * 64}
    (tmp_path / DATABASE_FILE).write_text(json.dumps(other))
    with pytest.raises(ValueError, match="another corpus or vocabulary.*python -m utils.data.retrieval_database"):
        generate_code(DOC, lonely)
    (tmp_path / DATABASE_FILE).write_text("not json")
    code = example_inference.main(["--checkpoint", str(lonely), "-d", DOC])
    err = capsys.readouterr().err
    assert code == 2 and "is not a retrieval database" in err and len(err.strip().splitlines()) == 1


def test_show_retrieved_needs_a_retrieval_model(tmp_path, capsys) -> None:
    vocab = Vocabulary.build([["def", "f"]], min_freq=1)
    model = build_model(make_config("copy", src_vocab_size=len(vocab), trg_vocab_size=len(vocab), embed_dim=8,
                                    hidden_dim=8, num_layers=1))
    path = save_checkpoint(tmp_path / "copy_best.pt", model, vocab, vocab)
    assert retrieve(DOC, path) is None
    assert example_inference.main(["--checkpoint", str(path), "--show-retrieved", "-d", DOC]) == 2
    assert "reads no retrieved code" in capsys.readouterr().err
