"""The marked blocks of the README and the docs: rendered from committed files, and a test that fails
when a shown figure no longer matches its file (or the block was edited by hand)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

import utils.report.__main__  # noqa: F401  (``python -m utils.report`` imports without running)
from utils.paths import project_path
from utils.report.blocks import BLOCKS, DOCUMENTS, Files, render, stale_documents, write_documents
from utils.report.cli import main


def _copy_of_the_repository(tmp_path):
    """The documents and the committed files they are rendered from, in a scratch folder."""
    for name in (*DOCUMENTS, "plots", "checkpoints/manifest.json"):
        src, dst = project_path(name), tmp_path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png"))
        else:
            shutil.copyfile(src, dst)
    return tmp_path


def test_every_document_matches_what_its_committed_files_render(capsys) -> None:
    assert stale_documents() == [], "run `python -m utils.report --write` and commit the documents"
    assert main(["--check"]) == 0 and "out of date: nothing" in capsys.readouterr().out


def test_every_document_has_blocks_and_every_block_renders() -> None:
    files = Files(project_path("."))
    used = set()
    for doc in DOCUMENTS:
        text = project_path(doc).read_text()
        used |= {name for name in BLOCKS if f"<!-- report:{name} -->" in text}
    assert used == set(BLOCKS), f"blocks no document uses: {sorted(set(BLOCKS) - used)}"
    assert all(BLOCKS[name](files).strip() for name in BLOCKS)


def test_a_changed_figure_or_a_hand_edit_makes_the_documents_stale(tmp_path) -> None:
    root = _copy_of_the_repository(tmp_path)
    results = pd.read_csv(root / "plots" / "results.csv")
    results.loc[results["model"] == "retrieval (TF-IDF)", "bleu"] += 0.1  # shown to one decimal
    results.to_csv(root / "plots" / "results.csv", index=False)
    assert "README.md" in stale_documents(root) and "docs/results.md" in stale_documents(root)
    assert "README.md" in write_documents(root) and stale_documents(root) == []
    readme = (root / "README.md").read_text()
    start = readme.index("<!-- report:results-short -->")
    (root / "README.md").write_text(readme[:start] + readme[start:].replace("| greedy |", "| greedy  |", 1))
    assert stale_documents(root) == ["README.md"]


def test_render_fills_each_block_and_refuses_an_unknown_one() -> None:
    files = Files(project_path("."))
    text = "before\n<!-- report:main-job-minutes -->\nold\n<!-- /report:main-job-minutes -->\nafter\n"
    rendered = render(text, files)
    assert rendered.startswith("before\n<!-- report:main-job-minutes -->\n") and "old" not in rendered
    assert rendered.endswith("minutes\n<!-- /report:main-job-minutes -->\nafter\n")
    assert render(rendered, files) == rendered
    with pytest.raises(ValueError, match="unknown block <!-- report:nothing -->"):
        render("<!-- report:nothing -->\n<!-- /report:nothing -->", files, "README.md")


def test_a_studys_rows_say_where_they_ran() -> None:
    from utils.report.blocks import study_source

    rows = pd.DataFrame({"commit": ["abcdef123", "abcdef123", None], "params": ["params/full.yaml"] * 2 + [None]})
    assert study_source(rows) == ("Rows of this table: 2 at `abcdef1` with `params/full.yaml`; 1 before the study "
                                  "recorded its commit and parameter file.")
    older = study_source(pd.DataFrame({"seed": [1]}))
    assert older.endswith("1 before the study recorded its commit and parameter file.")


def test_the_headline_names_the_combined_system_against_retrieval_where_it_has_a_row(tmp_path) -> None:
    from utils.evaluation.rerank import RERANK_MODEL
    from utils.report.blocks import combined_sentence, headline

    root = _copy_of_the_repository(tmp_path)
    results = pd.read_csv(root / "plots" / "results.csv")
    results = results[results["model"] != RERANK_MODEL]
    results.to_csv(root / "plots" / "results.csv", index=False)
    assert combined_sentence(Files(root)) == ""  # a table without the combined row: nothing said
    row = {"model": RERANK_MODEL, "decoding": "5 nearest + copy beam5", "bleu": 20.5, "crystal_bleu": 8.25,
           "bleu_vs_retrieval": 1.56, "bleu_vs_retrieval_low": 0.8, "bleu_vs_retrieval_high": 2.3,
           "crystal_bleu_vs_retrieval": 1.2, "crystal_bleu_vs_retrieval_low": -0.1,
           "crystal_bleu_vs_retrieval_high": 2.5}
    pd.concat([results, pd.DataFrame([row])]).to_csv(root / "plots" / "results.csv", index=False)
    text = headline(Files(root))
    assert ("The combined system (5 nearest + copy beam5, one chooser fitted on the validation split) scores "
            "20.5 BLEU and 8.25 CrystalBLEU: +1.56 (0.80 to 2.30) BLEU against retrieval and +1.20 (-0.10 to "
            "2.50, a tie) CrystalBLEU.") in text


def test_the_projection_adds_half_the_reviewer_and_what_the_later_notebooks_took_longer() -> None:
    from utils.report.blocks import projected_seconds

    timings = {"stages": {"01_preprocess.ipynb": 90.0, "02_train.ipynb": 3000.0, "03_bleu.ipynb": 400.0,
                          "total": 3490.0},
               "added": {"stages": {"01_preprocess.ipynb": 100.0, "02_train.ipynb": 20.0, "03_bleu.ipynb": 700.0,
                                    "total": 820.0}, "reviewer_epoch_seconds": [300.0, 300.0]}}
    assert projected_seconds(timings) == 3490.0 + 300.0 + 10.0 + 300.0
