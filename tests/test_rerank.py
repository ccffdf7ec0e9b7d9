"""The combined system's parts (utils/decoding/rerank.py): candidates, their features and the choice."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.checkpoint import LoadedModel, load_checkpoint
from utils.data.batch import encode_pairs, make_batch
from utils.data.retrieval import TfidfRetriever, retrieval_outputs
from utils.decoding.rerank import (
    FEATURES,
    RETRIEVED,
    Candidate,
    Reranker,
    agreement_matrix,
    beam_candidates,
    candidate_features,
    choose,
    consensus,
    gather_candidates,
    generic_docstring,
    log_probs_per_piece,
    nearest_candidates,
)
from utils.decoding.search import decode_examples

TRAIN = [
    {"docstring_tokens": ["Return", "the", "sum", "of", "two", "numbers", "."], "code_tokens": ["def", "add"]},
    {"docstring_tokens": ["Open", "the", "file", "and", "read", "it", "."], "code_tokens": ["def", "read"]},
    {"docstring_tokens": ["Return", "the", "sum", "of", "two", "numbers", "."], "code_tokens": ["def", "plus"]},
    {"docstring_tokens": ["Close", "the", "socket", "."], "code_tokens": ["def", "close"]},
    {"docstring_tokens": ["Read", "the", "socket", "."], "code_tokens": ["def", "recv"]},
]
QUERIES = [["read", "a", "FILE"], ["sum", "numbers"], ["close", "the", "socket", "now"], ["zzz"], ["the", "socket"]]


def _loaded(path) -> LoadedModel:
    return LoadedModel.from_checkpoint(load_checkpoint(path), path, "cpu", precision="fp32")


def test_top_k_is_best_first_with_the_same_tie_breaks() -> None:
    r = TfidfRetriever([row["docstring_tokens"] for row in TRAIN])
    top = r.top_k(QUERIES, 3)
    assert [t[0] for t in top] == r.best(QUERIES)  # the first of k is the retrieval baseline's pick
    assert [i for i, _ in top[1]][:2] == [0, 2]  # the duplicate docstrings tie: the first row first
    assert all(a[1] >= b[1] for row in top for a, b in zip(row, row[1:]))  # most similar first
    assert len(r.top_k(QUERIES[:1], 99)[0]) == len(TRAIN)
    with pytest.raises(ValueError, match="k must be at least 1"):
        r.top_k(QUERIES, 0)


def test_retrieved_candidates_and_cosine_weights_alone_give_the_retrieval_rows_outputs() -> None:
    """No generated candidates, the model features' weights at zero: the retrieval baseline, ties
    included, whatever k."""
    r = TfidfRetriever([row["docstring_tokens"] for row in TRAIN])
    weights = np.array([1.0 if f == "cosine" else 0.0 for f in FEATURES])
    rows = [{"docstring_tokens": q} for q in QUERIES]
    for k in (1, 2, 5):
        candidates = nearest_candidates(r, TRAIN, QUERIES, k)
        features = [np.array([[c.cosine] + [0.0] * (len(FEATURES) - 1) for c in cands]) for cands in candidates]
        picks = choose(features, weights)
        assert [cands[i].tokens for cands, i in zip(candidates, picks)] == retrieval_outputs(TRAIN, rows)
        assert all(c.source == RETRIEVED and c.rank == n for cands in candidates for n, c in enumerate(cands))


def test_choose_takes_the_highest_weighted_sum_and_the_first_on_ties() -> None:
    features = [np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), np.array([[2.0, 2.0]])]
    assert choose(features, np.array([0.0, 1.0])) == [0, 0]
    assert choose(features, np.array([1.0, 0.0])) == [1, 0]
    assert choose([features[0]], np.array([1.0, 1.0])) == [0]  # every candidate ties


def test_generic_docstring_is_the_training_docstring_nearest_the_centroid() -> None:
    docs = [["sort", "the", "list"], ["sort", "the", "items"], ["sort", "the", "list", "in", "place"], ["open", "it"]]
    r = TfidfRetriever(docs)
    assert generic_docstring(r, docs) in docs[:3]
    assert generic_docstring(r, docs) != docs[3]  # the odd one out is never the centroid's


def test_log_probs_per_piece_are_the_models_teacher_forced_loss(ckpt_dir, rows) -> None:
    loaded = _loaded(ckpt_dir / "transformer_best.pt")
    found = log_probs_per_piece(loaded, [r["docstring_tokens"] for r in rows], [r["code_tokens"] for r in rows],
                                batch_pieces=40)  # several batches
    for row, value in zip(rows, found):
        ex = encode_pairs([row], loaded.src_vocab, loaded.trg_vocab)[0]
        with torch.no_grad():
            total, n = loaded.model.loss(make_batch([ex]), 1.0)
        assert value == pytest.approx(-float(total) / n, abs=1e-5)
    reviewer = _loaded(ckpt_dir / "reviewer_best.pt")  # the other way round: code in, docstring scored
    assert reviewer.model.config.reviews and reviewer.name == "reviewer"
    back = log_probs_per_piece(reviewer, [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows])
    assert back.shape == (len(rows),) and (back < 0).all()
    with pytest.raises(ValueError, match="copies from its source"):
        log_probs_per_piece(_loaded(ckpt_dir / "copy_best.pt"), [["a"]], [["b"]])


def test_beam_candidates_are_the_beams_finished_hypotheses_best_first(ckpt_dir, rows) -> None:
    loaded = _loaded(ckpt_dir / "attention_best.pt")
    docs = [r["docstring_tokens"] for r in rows]
    found = beam_candidates(loaded, docs, beam_size=3, length_penalty=1.0, syntax_aware=False)
    examples = encode_pairs(rows, loaded.src_vocab, loaded.trg_vocab)
    best = decode_examples(loaded.model, examples, beam_size=3, max_len=loaded.model.config.max_trg_len)
    assert len(found) == len(rows)
    for cands, ids in zip(found, best.tokens):
        assert cands and cands[0].tokens == [loaded.trg_vocab.itos[i] for i in ids]  # the beam's own pick first
        assert len({tuple(c.tokens) for c in cands}) == len(cands) <= 3
        assert all(c.source == "attention" and c.train_index is None for c in cands)


def test_guided_beams_are_steered_by_the_guide_k_nearest_and_the_rest_unchanged(ckpt_dir, rows) -> None:
    """A model of ``guide`` searches with the bonus over the GUIDE_K nearest functions' code, whatever k
    is; the retrieved candidates are still the k nearest; a bonus of 0 is the plain beam."""
    import utils.decoding.rerank as rerank

    loaded = _loaded(ckpt_dir / "attention_best.pt")
    train = rows * 2
    retriever = TfidfRetriever([r["docstring_tokens"] for r in train])
    docs = [r["docstring_tokens"] for r in rows[:3]]
    beams = {"attention": (loaded, 1.0)}
    plain = gather_candidates(retriever, train, docs, 1, beams, 2, False)
    assert gather_candidates(retriever, train, docs, 1, beams, 2, False, {"attention": 0.0}) == plain
    seen = {}

    def spy(*args, guide=None, guide_weight=0.0, **kwargs):
        seen.update(guide=guide, weight=guide_weight)
        return beam_candidates(*args, guide=guide, guide_weight=guide_weight, **kwargs)

    original = rerank.beam_candidates
    rerank.beam_candidates = spy
    try:
        guided = gather_candidates(retriever, train, docs, 1, beams, 2, False, {"attention": 50.0})
    finally:
        rerank.beam_candidates = original
    nearest = nearest_candidates(retriever, train, docs, rerank.GUIDE_K)
    assert seen["weight"] == 50.0 and seen["guide"] == [[c.tokens for c in found] for found in nearest]
    assert [c[0] for c in guided] == [c[0] for c in plain]  # the one nearest function, then the beams
    assert all(c.source == "attention" for cands in guided for c in cands[1:])


def test_agreement_is_each_codes_mean_sentence_bleu_against_the_others() -> None:
    codes = [["a", "b", "c"], ["a", "b", "c"], ["x"]]
    m = agreement_matrix(codes)
    assert m.shape == (3, 3) and (np.diag(m) == 0).all()
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] < m[0, 1] and m[2, 0] < m[0, 1]
    assert consensus(codes) == [pytest.approx((m[i].sum()) / 2) for i in range(3)]
    assert consensus([["a"]]) == [0.0]


def test_candidate_features(ckpt_dir, rows) -> None:
    forward, reviewer = _loaded(ckpt_dir / "transformer_best.pt"), _loaded(ckpt_dir / "reviewer_best.pt")
    docs = [r["docstring_tokens"] for r in rows[:2]]
    candidates = [[Candidate(rows[0]["code_tokens"], RETRIEVED, 0, 0.5, 0), Candidate(["def", "f"], "copy")],
                  [Candidate(rows[1]["code_tokens"], RETRIEVED, 1, 0.25, 0)]]
    features = candidate_features(candidates, docs, forward, reviewer, ["Return", "it", "."])
    assert [f.shape for f in features] == [(2, len(FEATURES)), (1, len(FEATURES))]
    column = {name: [f[:, j].tolist() for f in features] for j, name in enumerate(FEATURES)}
    assert column["cosine"] == [[0.5, 0.0], [0.25]] and column["generated"] == [[0.0, 1.0], [0.0]]
    assert column["length"][0][1] == pytest.approx(math.log1p(2))
    fwd = log_probs_per_piece(forward, docs[:1], [rows[0]["code_tokens"]])[0]
    generic = log_probs_per_piece(forward, [["Return", "it", "."]], [rows[0]["code_tokens"]])[0]
    assert column["forward"][0][0] == pytest.approx(fwd) and column["pmi"][0][0] == pytest.approx(fwd - generic)


def test_the_reranker_file_round_trips_and_a_damaged_one_says_so(tmp_path) -> None:
    r = Reranker(weights={"cosine": 1.0, "reviewer": 0.5}, k=10, generic_docstring=["Return", "it", "."],
                 beam_models=["transformer"], length_penalty={"transformer": 3.0}, guide={"transformer": 1.0})
    again = Reranker.load(r.save(tmp_path / "reranker.json"))
    assert again == r and again.weight_vector()[FEATURES.index("reviewer")] == 0.5
    (tmp_path / "older.json").write_text('{"weights": {"cosine": 1.0}, "k": 1, "generic_docstring": []}')
    assert Reranker.load(tmp_path / "older.json").guide == {}  # a file without guided beams: plain beams
    (tmp_path / "bad.json").write_text('{"weights": {"telepathy": 1.0}, "k": 1, "generic_docstring": []}')
    with pytest.raises(ValueError, match="not a reranker file.*notebooks/03_bleu.ipynb"):
        Reranker.load(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"weights": ')
    with pytest.raises(ValueError, match="not a reranker file"):
        Reranker.load(tmp_path / "cut.json")
