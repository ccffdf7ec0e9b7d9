"""The combined system from the API and the command line (inference/combined.py, --rerank)."""
from __future__ import annotations

import json
import shutil

import pytest

from inference import example_inference
from inference.combined import combined_generate
from utils.decoding.rerank import RERANKER_FILE, Reranker

DOC = "Return the larger of x and y."


@pytest.fixture()
def system(tmp_path, ckpt_dir, rows):
    """A checkpoint folder with the tiny models, the reviewer and a reranker; a processed training split."""
    folder, data = tmp_path / "shipped", tmp_path / "data"
    shutil.copytree(ckpt_dir, folder)
    Reranker(weights={"cosine": 1.0, "reviewer": 0.1, "generated": -5.0}, k=3, generic_docstring=["Return", "it"],
             beam_models=["attention"], beam_size=2, syntax_aware=False,
             length_penalty={"attention": 1.0}).save(folder / RERANKER_FILE)
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({**r, "path": f"pkg/m{i}.py"}) + "\n"
                                              for i, r in enumerate(rows)))
    (data / "manifest.json").write_text(json.dumps({"corpus_sha256": "c0ffee"}))
    return folder, data


def test_the_api_picks_by_the_fitted_weights_and_says_where_each_candidate_came_from(system, rows) -> None:
    folder, data = system
    result = combined_generate([DOC, "Scale values by factor ."], folder, data)
    assert len(result) == 2
    first = result[0]
    # the cosine outweighs everything and beams are penalised: the nearest training function wins
    assert first.chosen.source == "training function" and "pkg/m1.py: larger" in first.chosen.where
    assert first.chosen.code.startswith("def larger(x, y):")
    assert first.candidates[0] is first.chosen and len(first.candidates) <= 3 + 2
    assert [c.score for c in first.candidates] == sorted((c.score for c in first.candidates), reverse=True)
    assert {c.source for c in first.candidates} == {"training function", "attention beam"}
    assert set(first.chosen.features) == {"cosine", "forward", "pmi", "reviewer", "length", "generated", "consensus",
                                          "overlap"}
    with pytest.raises(ValueError, match="docstring is empty"):
        combined_generate(["  "], folder, data)


def test_the_cli_answers_with_rerank_and_shows_the_candidates(system, monkeypatch, capsys) -> None:
    folder, data = system
    monkeypatch.setattr(example_inference, "SHIPPED_DIR", folder)
    assert example_inference.main(["--rerank", "--show-candidates", "2", "--data-dir", str(data), "-d", DOC]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"# {DOC}\n# candidates (")
    assert "# 1. " in out.out and "# 2. " in out.out and "# 3. " not in out.out and "<- chosen" in out.out
    assert "# from training function: pkg/m1.py: larger" in out.out and "def larger(x, y):" in out.out
    assert "combined system" in out.err


def test_the_cli_without_the_processed_split_names_the_command(system, tmp_path, monkeypatch, capsys) -> None:
    folder, _ = system
    monkeypatch.setattr(example_inference, "SHIPPED_DIR", folder)
    code = example_inference.main(["--rerank", "--data-dir", str(tmp_path / "nothing"), "-d", DOC])
    err = capsys.readouterr().err
    assert code == 2 and "make evaluate" in err and len(err.strip().splitlines()) == 1
    for args, message in ((["--rerank", "--model", "lstm"], "drop --model"),
                          (["--show-candidates"], "add --rerank")):
        code = example_inference.main([*args, "-d", DOC])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
    (folder / RERANKER_FILE).unlink()
    code = example_inference.main(["--rerank", "-d", DOC])
    assert code == 2 and "No reranker.json" in capsys.readouterr().err
