"""utils.evaluation.results on tiny untrained models saved as real checkpoints in a temporary folder."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from utils.data.batch import encode_pairs, make_batch
from utils.evaluation.baselines import CONSTANT_MODEL, FLOOR_MODEL
from utils.evaluation.decoded_store import decode_models
from utils.evaluation.length_penalty import chosen_length_penalties
from utils.evaluation.results import (
    RESULT_COLUMNS,
    decode_split,
    decoding_label,
    evaluation_setup,
    length_bucket_results,
    load_trained,
    penalty_for,
    results_table,
    teacher_forced_figures,
    teacher_forced_perplexity,
)
from utils.evaluation.source_reliance import source_reliance
from utils.metrics import evaluate_outputs
from utils.precision import resolve_precision


def test_load_trained_skips_missing_with_a_note(ckpt_dir, saved_history, capsys):
    got = load_trained(ckpt_dir, ["rnn", "lstm", "attention"], "cpu")
    assert list(got) == ["rnn", "attention"]  # in the order asked for, lstm skipped
    assert "no checkpoint for 'lstm'" in capsys.readouterr().out
    lm = got["attention"]
    assert lm.best_epoch == 2 and lm.training_seconds == pytest.approx(4.0)
    assert lm.history == saved_history and lm.path == ckpt_dir / "attention_best.pt"


def test_evaluation_setup_reads_the_test_split_and_the_models(tmp_path, rows, ckpt_dir):
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines: list[str] = []
    got_rows, loaded, dev = evaluation_setup(tmp_path, ckpt_dir, "rnn,attention", "cpu", max_examples=3,
                                            log=lines.append)
    assert got_rows == rows[:3] and list(loaded) == ["rnn", "attention"] and dev.type == "cpu"
    # "auto" decodes in bf16 on a CPU with native bf16, else in fp32
    precision = resolve_precision("auto", "cpu")
    assert lines[-1] == f"3 test examples; models: rnn, attention; device: cpu; precision: {precision}"
    assert evaluation_setup(tmp_path, ckpt_dir, ["rnn"], "cpu", log=lines.append)[0] == rows  # 0: all
    with pytest.raises(FileNotFoundError, match="No processed data"):
        evaluation_setup(tmp_path / "nothing", ckpt_dir, ["rnn"], "cpu")
    (tmp_path / "test.jsonl").write_text("")
    with pytest.raises(ValueError, match="The test split in .* is empty: run notebooks/01_preprocess.ipynb"):
        evaluation_setup(tmp_path, ckpt_dir, ["rnn"], "cpu")


def test_load_trained_without_any_checkpoint_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="02_train"):
        load_trained(tmp_path, ["rnn", "lstm"], "cpu", log=lambda s: None)
    with pytest.raises(ValueError, match="Unknown or missing model name.*gru"):
        load_trained(tmp_path, ["gru"], "cpu")


def test_decoding_label():
    assert decoding_label(1) == "greedy" and decoding_label(5) == "beam5"
    with pytest.raises(ValueError):
        decoding_label(0)


def test_decode_split_aligns_attention_with_tokens(loaded, rows, decoded):
    assert [(d.model, d.decoding) for d in decoded] == [
        ("rnn", "greedy"), ("rnn", "beam2"), ("attention", "greedy"), ("attention", "beam2")]
    for d in decoded:
        assert len(d) == len(rows) and d.seconds >= 0
        for r, src, seen, hyp, a in zip(rows, d.src_tokens, d.src_seen, d.hypotheses, d.attention):
            assert src == ["<SOS>", *r["docstring_tokens"], "<EOS>"]
            assert len(seen) == len(src)
            assert 0 < len(hyp) <= 12 and all(isinstance(t, str) for t in hyp)
            if d.model == "rnn":
                assert a is None
            else:
                assert a.shape == (len(hyp), len(src))  # padding columns dropped
                np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    assert not decoded[0].has_attention and decoded[2].has_attention


@pytest.mark.parametrize("name", ["copy", "transformer"])
def test_decode_split_copy_and_transformer(loaded, rows, vocabs, name):
    lm = loaded[name]
    for k in (1, 2):
        d = decode_split(lm, rows, beam_size=k, max_len=12)
        for r, src, hyp, a in zip(rows, d.src_tokens, d.hypotheses, d.attention):
            # a copied out-of-vocabulary word comes back as the word itself, never as an id
            assert all(t in lm.trg_vocab or t in r["docstring_tokens"] for t in hyp)
            if lm.model.has_attention:
                assert a.shape == (len(hyp), len(src))
    assert lm.model.uses_copy == (name == "copy")


def test_greedy_equals_model_ids(loaded, rows):
    """Tokens are the vocabulary's strings for the ids the decoder chose."""
    lm = loaded["rnn"]
    d = decode_split(lm, rows, beam_size=1, max_len=12)
    ex = encode_pairs(rows, lm.src_vocab, lm.trg_vocab)
    from utils.decoding.search import greedy_decode
    hyp = greedy_decode(lm.model, make_batch(ex), max_len=12)
    assert d.hypotheses == [[lm.trg_vocab.itos[i] for i in ids] for ids in hyp.tokens]


def test_syntax_aware_decoding_runs(loaded, rows):
    """Syntax-aware outputs come back aligned as usual, labelled, and every one parses."""
    from utils.metrics import is_valid_syntax

    d = decode_split(loaded["attention"], rows, beam_size=2, max_len=40, syntax_aware=True)
    assert d.decoding == "beam2+syntax" and d.syntax_aware
    assert all(a.shape == (len(h), len(s)) for a, h, s in zip(d.attention, d.hypotheses, d.src_tokens))
    assert [h for h in d.hypotheses if not is_valid_syntax(h)] == []


def test_decode_models_with_and_without_constraint(loaded, rows):
    out = decode_models({"rnn": loaded["rnn"]}, rows, beam_size=2, max_len=12, syntax_aware=[False, True],
                        log=lambda s: None)
    assert [d.decoding for d in out] == ["greedy", "beam2", "greedy+syntax", "beam2+syntax"]


def test_teacher_forced_perplexity_matches_model_loss(loaded, rows):
    lm = loaded["attention"]
    batch = make_batch(encode_pairs(rows, lm.src_vocab, lm.trg_vocab))
    with torch.no_grad():
        total, n = lm.model.loss(batch, teacher_forcing=1.0)
    assert teacher_forced_perplexity(lm, rows) == pytest.approx(math.exp(float(total) / n), rel=1e-4)
    # an untrained model is close to uniform over the target vocabulary
    assert 1.0 < teacher_forced_perplexity(lm, rows) < 5 * len(lm.trg_vocab)
    assert math.isnan(teacher_forced_perplexity(lm, []))
    for name in ("copy", "transformer"):
        assert 1.0 < teacher_forced_perplexity(loaded[name], rows) < math.inf


def test_teacher_forced_figures_are_perplexity_and_the_source_reliance_gap(loaded, rows):
    lm = loaded["copy"]
    expected = source_reliance(lm.model, rows, lm.src_vocab, lm.trg_vocab).gap
    ppl, gap = teacher_forced_figures(lm, rows)
    assert gap == pytest.approx(expected)
    assert ppl == pytest.approx(teacher_forced_perplexity(lm, rows), rel=1e-6)
    assert expected != 0.0  # the copy model reads its docstring's ids even untrained
    ppl_one, gap_one = teacher_forced_figures(lm, rows[:1])
    assert math.isnan(gap_one) and ppl_one == pytest.approx(teacher_forced_perplexity(lm, rows[:1]))


def test_results_table(loaded, rows, decoded, tmp_path):
    out = tmp_path / "plots" / "results.csv"
    table = results_table(decoded, loaded, rows, out_path=out)
    assert list(table.columns) == RESULT_COLUMNS
    assert list(zip(table["model"], table["decoding"])) == [
        ("rnn", "greedy"), ("rnn", "beam2"), ("attention", "greedy"), ("attention", "beam2"),
        (FLOOR_MODEL, "other reference")]
    models = table[table["model"] != FLOOR_MODEL]
    for col in ("bleu", "bleu_study", "token_accuracy", "exact_match", "syntax_valid", "unk_rate"):
        assert table[col].between(0, 100).all(), col
    assert (models["n"] == len(rows)).all()
    assert (models["train_seconds"] == 4.0).all() and (models["best_epoch"] == 2).all()
    assert (models["epochs"] == 2).all()
    assert models.set_index(["model", "decoding"]).loc[("attention", "greedy"), "parameters"] == \
        loaded["attention"].n_parameters
    assert (models["test_ppl"] > 1).all()
    # perplexity is a property of the model, not of the decoding
    assert models.groupby("model")["test_ppl"].nunique().eq(1).all()
    assert models["source_gap"].notna().all() and models.groupby("model")["source_gap"].nunique().eq(1).all()
    gaps = models.groupby("model")["source_gap"].first()
    for name in ("rnn", "attention"):
        assert gaps[name] == pytest.approx(teacher_forced_figures(loaded[name], rows)[1])
    # each row's metrics are evaluate_outputs on that row's outputs
    refs, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    m = evaluate_outputs(decoded[1].hypotheses, refs, docs, loaded["rnn"].trg_vocab)
    assert table.loc[1, "bleu"] == pytest.approx(m["bleu"])
    assert table.loc[1, "token_accuracy"] == pytest.approx(m["token_accuracy"])
    floor = table.iloc[-1]
    assert math.isnan(floor["test_ppl"]) and math.isnan(floor["source_gap"]) and pd.isna(floor["parameters"])
    saved = pd.read_csv(out)
    assert list(saved.columns) == RESULT_COLUMNS and len(saved) == len(table)
    assert len(results_table(decoded, loaded, rows, include_floor=False)) == 4
    # the beam's length penalty is recorded; greedy decoding has none
    assert list(models["length_penalty"].isna()) == [True, False, True, False]
    assert (models["length_penalty"].dropna() == 1.0).all()
    assert (models["output_length"] >= 0).all()


def test_results_table_has_the_constant_program_row_and_intervals(loaded, rows, decoded):
    program = rows[0]["code_tokens"]
    table = results_table(decoded, loaded, rows, constant=program).set_index(["model", "decoding"])
    constant = table.loc[(CONSTANT_MODEL, "one training function for all")]
    refs, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    assert constant["bleu"] == pytest.approx(evaluate_outputs([program] * len(rows), refs, docs)["bleu"])
    assert constant["distinct_outputs"] == pytest.approx(100 / len(rows))
    for key, row in table.iterrows():
        assert row["bleu_low"] - 1e-9 <= row["bleu"] <= row["bleu_high"] + 1e-9, key
    # attention is compared with the model below it in the ranking only when that model was decoded
    assert table["compared_with"].isna().all()  # lstm is not among the tiny models
    assert table["bleu_vs_retrieval"].isna().all()  # no training rows: no retrieval row


def test_every_row_says_how_often_it_beats_the_nearest_training_function(loaded, rows, decoded):
    """Models that read no retrieved function and added systems get ``better_than_retrieved`` (and
    ``same_as_retrieved``) against the retrieval row's output, given the training rows."""
    from utils.data.retrieval import retrieval_outputs
    from utils.metrics import edit_figures

    train = rows[::-1]
    nearest = retrieval_outputs(train, rows)
    refs = [r["code_tokens"] for r in rows]
    system_rows = [({"model": "system", "decoding": "its nearest"}, nearest)]
    table = results_table(decoded, loaded, rows, train_rows=train, systems=system_rows).set_index(["model", "decoding"])
    expected = edit_figures(decoded[1].hypotheses, nearest, nearest, refs)
    row = table.loc[(decoded[1].model, decoded[1].decoding)]
    assert row["better_than_retrieved"] == pytest.approx(expected["better_than_retrieved"])
    assert row["same_as_retrieved"] == pytest.approx(expected["same_as_retrieved"])
    system = table.loc[("system", "its nearest")]
    assert system["same_as_retrieved"] == 100.0 and system["better_than_retrieved"] == 0.0
    assert table.loc[(decoded[0].model, decoded[0].decoding), "better_than_retrieved"] >= 0
    without = results_table(decoded, loaded, rows)
    assert without["better_than_retrieved"].isna().all()  # no training rows: nothing to compare with


def test_results_table_rejects_outputs_of_another_split(loaded, rows, decoded):
    with pytest.raises(ValueError, match="outputs for"):
        results_table(decoded, loaded, rows[:3])


def test_length_bucket_results(rows, decoded):
    t = length_bucket_results(decoded, rows)
    assert list(t.columns[:3]) == ["model", "decoding", "bucket"]
    assert len(t) == 4 * len(decoded)
    per = t[(t["model"] == "rnn") & (t["decoding"] == "greedy")]
    assert per["n_examples"].sum() == len(rows)
    assert per.set_index("bucket").loc["21-30", "n_examples"] == 1
    assert per["n_target_tokens"].sum() == sum(len(r["code_tokens"]) for r in rows)
    assert length_bucket_results([], rows).empty


# -- the beam's length penalty ---------------------------------------------------------------------


def test_penalty_for_names_what_is_missing():
    assert penalty_for(2.0, "rnn", "beam5") == 2.0
    assert penalty_for({("rnn", "beam5"): 3.0}, "rnn", "beam5") == 3.0
    with pytest.raises(KeyError, match="attention beam5.*chosen for: rnn beam5.*set length_penalty to a number"):
        penalty_for({("rnn", "beam5"): 3.0}, "attention", "beam5")
    with pytest.raises(ValueError, match="no column chosen"):
        chosen_length_penalties(pd.DataFrame({"model": [], "decoding": [], "length_penalty": []}))
