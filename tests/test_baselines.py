"""The baseline rows: the shuffled-reference floor, the best constant program (exhaustive, equal to
scoring every candidate with corpus BLEU, cached per corpus) and retrieval."""
from __future__ import annotations

import json
import math
import random

import pytest

from utils.data.retrieval import retrieval_outputs
from utils.evaluation.baselines import (
    CONSTANT_FILE,
    baseline_rows,
    best_constant_program,
    constant_bleu,
    constant_program,
    shuffled_reference_baseline,
)
from utils.metrics import corpus_bleu_score, evaluate_outputs

WORDS = ["def", "f", "(", "self", ")", ":", "return", "x", "+", "1", "None", "if", "else", "."]


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"code_tokens": [rng.choice(WORDS) for _ in range(rng.randint(3, 18))], "docstring_tokens": ["d"]}
            for _ in range(n)]


def test_shuffled_reference_baseline(rows):
    refs, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    got = shuffled_reference_baseline(rows)
    assert got == evaluate_outputs(refs[1:] + refs[:1], refs, docs)
    assert got["syntax_valid"] == 100.0 and got["exact_match"] == 0.0
    same = [rows[0], dict(rows[0])]
    assert shuffled_reference_baseline(same)["bleu"] == pytest.approx(100.0)
    assert math.isnan(shuffled_reference_baseline(rows[:1])["bleu"])


def test_constant_bleu_equals_corpus_bleu_of_the_repeated_candidate() -> None:
    candidates, refs = [r["code_tokens"] for r in _rows(40, 1)], [r["code_tokens"] for r in _rows(30, 2)]
    candidates[0] = ["x"]  # one token: no bigram
    candidates[1] = ["<UNK>", "return", "x"]  # never matches its <UNK>
    fast = constant_bleu(candidates, refs)
    slow = [corpus_bleu_score([c] * len(refs), refs) for c in candidates]
    assert fast == pytest.approx(slow, abs=1e-9)


def test_the_best_constant_program_is_the_argmax_on_validation() -> None:
    train, valid = _rows(50, 3), _rows(20, 4)
    best = best_constant_program(train, valid)
    scores = [corpus_bleu_score([r["code_tokens"]] * len(valid), [v["code_tokens"] for v in valid]) for r in train]
    assert best["valid_bleu"] == pytest.approx(max(scores))
    assert best["train_index"] == scores.index(max(scores))
    assert best["code_tokens"] == train[best["train_index"]]["code_tokens"] and best["candidates"] == 50
    with pytest.raises(ValueError, match="training functions and validation rows"):
        best_constant_program([], valid)


def test_the_constant_program_is_cached_per_corpus(tmp_path) -> None:
    for split, rows in (("train", _rows(30, 5)), ("valid", _rows(10, 6))):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "manifest.json").write_text(json.dumps({"corpus_sha256": "aaa"}))
    found = constant_program(tmp_path)
    cached = json.loads((tmp_path / CONSTANT_FILE).read_text())
    assert cached == found and found["corpus_sha256"] == "aaa"
    (tmp_path / CONSTANT_FILE).write_text(json.dumps({**found, "valid_bleu": -1.0}))
    assert constant_program(tmp_path)["valid_bleu"] == -1.0  # read back, not searched again
    (tmp_path / "manifest.json").write_text(json.dumps({"corpus_sha256": "bbb"}))
    assert constant_program(tmp_path)["valid_bleu"] == found["valid_bleu"]  # another corpus: searched again


def test_baseline_rows_name_each_row_and_keep_its_outputs(rows) -> None:
    program = ["return", "None"]
    found = baseline_rows(rows, retrieval_outputs(rows, rows), program)
    assert [r["model"] for r, _ in found] == ["reference-shuffled (floor)", "best constant program (floor)",
                                            "retrieval (TF-IDF)"]
    assert found[1][1] == [program] * len(rows) and found[1][0]["n"] == len(rows)
    assert [r["model"] for r, _ in baseline_rows(rows[:1], None, None)] == []
