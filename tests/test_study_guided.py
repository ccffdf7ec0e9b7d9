"""Retrieval-guided decoding as candidates of the combined system (utils/studies/guided.py)."""
from __future__ import annotations

import json
import shutil

import torch

from utils.decoding.search import NgramBonus
from utils.studies.guided import guided_pool, study_table


def test_the_bonus_goes_to_the_pieces_that_continue_a_bigram_of_the_rows_retrieved_code() -> None:
    bonus = NgramBonus.from_codes([[[5, 6, 7]], [[8, 5]]], weight=2.0)  # two sources, one function each
    assert bonus.follows[0] == {1: {5}, 5: {6}, 6: {7}} and bonus.follows[1] == {1: {8}, 8: {5}}
    log_probs = torch.zeros(4, 10)  # 2 open sources x K = 2 beams
    out = bonus.add(log_probs, srcs=[1, 0], y=torch.tensor([8, 1, 5, 9]), K=2)
    assert out[0, 5] == 2.0 and out[1, 8] == 2.0 and out[2, 6] == 2.0  # source 1's beams, then source 0's
    assert out[3].sum() == 0 and out.sum() == 6.0  # 9 starts no bigram of source 0's code


def test_a_large_bonus_makes_beam_search_follow_the_retrieved_code(ckpt_dir, rows) -> None:
    from utils.checkpoint import LoadedModel, load_checkpoint
    from utils.decoding.rerank import beam_candidates

    path = ckpt_dir / "attention_best.pt"
    loaded = LoadedModel.from_checkpoint(load_checkpoint(path), path, "cpu", precision="fp32")
    docs = [r["docstring_tokens"] for r in rows[:2]]
    guide = [[rows[1]["code_tokens"]], [rows[0]["code_tokens"]]]  # each docstring guided to another function
    found = beam_candidates(loaded, docs, 2, 1.0, False, guide=guide, guide_weight=50.0, source="attention+guided")
    known = [t for t in rows[1]["code_tokens"] if t in loaded.trg_vocab.stoi]
    assert found[0][0].tokens[:3] == known[:3] and found[0][0].source == "attention+guided"


def test_the_study_scores_plain_and_guided_beams_as_candidates(tmp_path, ckpt_dir, rows) -> None:
    folder = tmp_path / "shipped"
    shutil.copytree(ckpt_dir, folder)
    (folder / "manifest.json").write_text(json.dumps({"files": {"attention_best.pt": {"length_penalty": {}}}}))
    pool = guided_pool(rows[:4], rows * 2, str(folder), ["attention"], k=2, bonuses=[1.0])
    assert {c.source for cands in pool.candidates for c in cands} == {"retrieved", "attention", "attention+guided1"}
    table = study_table(pool, ["attention"], 2, [1.0])
    assert table["bonus"].tolist() == [0.0, 1.0] and table["valid_cv_bleu"].between(0, 100).all()
    assert {"beam_bleu", "commit", "k", "model"} <= set(table.columns)
