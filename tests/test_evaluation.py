"""utils.evaluation on tiny untrained models saved as real checkpoints in a temporary folder."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import utils.evaluation as ev
from utils.batch import encode_pairs, make_batch
from utils.checkpoint import save_checkpoint
from utils.config import Seq2SeqConfig
from utils.evaluation import (
    FLOOR_MODEL,
    RESULT_COLUMNS,
    TUNING_CSV,
    DecodedSplit,
    attention_statistics,
    choose_length_penalty,
    chosen_length_penalties,
    code_block,
    decode_models,
    decode_split,
    decoding_label,
    evaluation_setup,
    length_bucket_results,
    load_trained,
    penalty_for,
    pick_heatmap_examples,
    render_example,
    results_table,
    shuffled_reference_baseline,
    study_comparison,
    study_table,
    teacher_forced_perplexity,
    tune_length_penalty,
)
from utils.metrics import corpus_bleu_score, evaluate_outputs
from utils.models import build_model
from utils.tokenizer import tokenize_code
from utils.vocabulary import Vocabulary

SOURCES = [
    ("Return the sum of a and b .", "def add(a, b):\n    return a + b\n"),
    ("Return the larger of x and y .", "def larger(x, y):\n    if x > y:\n        return x\n    return y\n"),
    ("Scale values by factor .", "def scale(values, factor):\n    return [v * factor for v in values]\n"),
    ("Return the first item .", "def first(items):\n    return items[0]\n"),
    ("Count the words in text , a long docstring that goes on for quite a number of tokens so that it "
     "falls into the longer bucket of the table .", "def count(text):\n    return len(text.split())\n"),
]
HISTORY = [
    {"epoch": 1, "train_loss": 5.0, "val_loss": 4.5, "val_ppl": math.exp(4.5), "val_token_acc_greedy": 3.0,
     "train_seconds": 1.0, "epoch_seconds": 1.5, "train_tokens_per_s": 100.0},
    {"epoch": 2, "train_loss": 4.0, "val_loss": 4.0, "val_ppl": math.exp(4.0), "val_token_acc_greedy": 6.0,
     "train_seconds": 2.0, "epoch_seconds": 2.5, "train_tokens_per_s": 110.0},
]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [{"docstring_tokens": doc.split(), "code_tokens": tokenize_code(code), "code": code,
             "func_name": code.split("(")[0][4:], "summary": doc} for doc, code in SOURCES]


@pytest.fixture(scope="module")
def vocabs(rows):
    # "b" and "factor" stay out of the target vocabulary, so outputs can hold <UNK>
    src = Vocabulary.build((r["docstring_tokens"] for r in rows), min_freq=1)
    trg = Vocabulary.build(([t for t in r["code_tokens"] if t not in ("b", "factor")] for r in rows), min_freq=1)
    return src, trg


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, vocabs):
    src, trg = vocabs
    folder = tmp_path_factory.mktemp("ckpt")
    for name in ("rnn", "attention", "copy", "transformer"):
        torch.manual_seed(0)
        config = Seq2SeqConfig(model=name, src_vocab_size=len(src), trg_vocab_size=len(trg), embed_dim=16,
                               hidden_dim=32, num_layers=1, dropout=0.0, n_heads=2, ff_dim=32)
        save_checkpoint(folder / f"{name}_best.pt", build_model(config), src, trg, history=HISTORY, best_epoch=2)
    return folder


@pytest.fixture(scope="module")
def loaded(ckpt_dir):
    return load_trained(ckpt_dir, ["rnn", "lstm", "attention", "copy", "transformer"], "cpu", log=lambda s: None)


@pytest.fixture(scope="module")
def decoded(loaded, rows):
    two = {name: loaded[name] for name in ("rnn", "attention")}
    return decode_models(two, rows, beam_size=2, max_len=12, log=lambda s: None)


def test_load_trained_skips_missing_with_a_note(ckpt_dir, capsys):
    got = load_trained(ckpt_dir, ["rnn", "lstm", "attention"], "cpu")
    assert list(got) == ["rnn", "attention"]  # in the order asked for, lstm skipped
    assert "no checkpoint for 'lstm'" in capsys.readouterr().out
    lm = got["attention"]
    assert lm.best_epoch == 2 and lm.training_seconds == pytest.approx(4.0)
    assert lm.history == HISTORY and lm.path == ckpt_dir / "attention_best.pt"


def test_evaluation_setup_reads_the_test_split_and_the_models(tmp_path, rows, ckpt_dir):
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines: list[str] = []
    got_rows, loaded, dev = evaluation_setup(tmp_path, ckpt_dir, "rnn,attention", "cpu", max_examples=3,
                                            log=lines.append)
    assert got_rows == rows[:3] and list(loaded) == ["rnn", "attention"] and dev.type == "cpu"
    assert lines[-1] == "3 test examples; models: rnn, attention; device: cpu; precision: fp32"
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
    from utils.decoding import greedy_decode
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
    # each row's metrics are evaluate_outputs on that row's outputs
    refs, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    m = evaluate_outputs(decoded[1].hypotheses, refs, docs, loaded["rnn"].trg_vocab)
    assert table.loc[1, "bleu"] == pytest.approx(m["bleu"])
    assert table.loc[1, "token_accuracy"] == pytest.approx(m["token_accuracy"])
    floor = table.iloc[-1]
    assert math.isnan(floor["test_ppl"]) and pd.isna(floor["parameters"])
    saved = pd.read_csv(out)
    assert list(saved.columns) == RESULT_COLUMNS and len(saved) == len(table)
    assert len(results_table(decoded, loaded, rows, include_floor=False)) == 4
    # the beam's length penalty is recorded; greedy decoding has none
    assert list(models["length_penalty"].isna()) == [True, False, True, False]
    assert (models["length_penalty"].dropna() == 1.0).all()
    assert (models["output_length"] >= 0).all()


def test_results_table_rejects_outputs_of_another_split(loaded, rows, decoded):
    with pytest.raises(ValueError, match="outputs for"):
        results_table(decoded, loaded, rows[:3])


def test_shuffled_reference_baseline(rows):
    refs, docs = [r["code_tokens"] for r in rows], [r["docstring_tokens"] for r in rows]
    got = shuffled_reference_baseline(rows)
    assert got == evaluate_outputs(refs[1:] + refs[:1], refs, docs)
    assert got["syntax_valid"] == 100.0 and got["exact_match"] == 0.0
    same = [rows[0], dict(rows[0])]
    assert shuffled_reference_baseline(same)["bleu"] == pytest.approx(100.0)
    assert math.isnan(shuffled_reference_baseline(rows[:1])["bleu"])


def test_study_table_is_labelled_as_quoted():
    t = study_table()
    assert list(t["model"]) == ["rnn", "lstm", "attention"]
    assert list(t["bleu"]) == [11.16, 19.64, 21.26]
    assert list(t["token_accuracy"]) == [19.13, 18.67, 21.06]
    assert (t["exact_match"] == 0).all()
    assert t["source"].str.contains("quoted from the original study").all()


def test_study_comparison(loaded, rows, decoded):
    table = results_table(decoded, loaded, rows)
    cmp = study_comparison(table)
    assert list(cmp.index) == ["RNN", "LSTM", "LSTM + attention"]
    assert cmp.loc["RNN", "BLEU (ours)"] == pytest.approx(table.loc[0, "bleu"])
    assert math.isnan(cmp.loc["LSTM", "BLEU (ours)"])  # no LSTM checkpoint
    assert cmp.loc["LSTM", "BLEU (study, quoted)"] == 19.64


def test_length_bucket_results(rows, decoded):
    t = length_bucket_results(decoded, rows)
    assert list(t.columns[:3]) == ["model", "decoding", "bucket"]
    assert len(t) == 4 * len(decoded)
    per = t[(t["model"] == "rnn") & (t["decoding"] == "greedy")]
    assert per["n_examples"].sum() == len(rows)
    assert per.set_index("bucket").loc["21-30", "n_examples"] == 1
    assert per["n_target_tokens"].sum() == sum(len(r["code_tokens"]) for r in rows)
    assert length_bucket_results([], rows).empty


def _split(attention, src, hyps) -> DecodedSplit:
    return DecodedSplit("m", "greedy", 1, hyps, attention, src, src, [0.0] * len(hyps), 0.0)


def test_attention_statistics_hand_checked():
    src = [["<SOS>", "scale", "values", "by", "factor", "<EOS>"]]
    hyp = [["def", "scale", "(", "values", ")"]]
    a = np.full((5, 6), 0.02)
    a[:, 0] = 0.9  # mostly on <SOS> ...
    a[1] = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # ... but "scale" looks at "scale"
    stats = attention_statistics(_split([a], src, hyp))
    assert stats["copy_total"] == 2 and stats["copy_hits"] == 1 and stats["copy_alignment"] == 50.0
    assert stats["chance_alignment"] == pytest.approx(100 / 6)
    assert stats["n_outputs"] == 1 and stats["n_tokens"] == 5
    u = np.full((5, 6), 1 / 6)
    stats = attention_statistics(_split([u], src, hyp))
    assert stats["mean_entropy"] == pytest.approx(math.log(6)) == pytest.approx(stats["uniform_entropy"])


def test_attention_statistics_on_decoded(rows, decoded):
    stats = attention_statistics(decoded[2], rows)
    assert stats["n_outputs"] == len(rows)
    assert 0 <= stats["mean_entropy"] <= stats["uniform_entropy"] + 1e-9
    with pytest.raises(ValueError, match="no attention"):
        attention_statistics(decoded[0], rows)
    with pytest.raises(ValueError):
        attention_statistics(decoded[2], rows[::-1])


def test_pick_heatmap_examples(decoded):
    d = decoded[2]
    idx = pick_heatmap_examples(d, n=3)
    assert len(idx) == 3 and len(set(idx)) == 3
    assert all(d.attention[i] is not None and d.hypotheses[i] for i in idx)
    assert pick_heatmap_examples(decoded[0], n=3) == []  # no attention


def test_code_block_and_render_example(rows):
    assert code_block("x = 1\n") == "```python\nx = 1\n```"
    block = code_block('s = """```"""')
    assert block.startswith("````python\n") and block.endswith("\n````")
    md = render_example(rows[0], rows[0]["code_tokens"], title="ok")
    assert md.count("def add(a, b):") == 2 and "**ok**" in md
    assert "*(empty output)*" in render_example(rows[0], [])


def test_save_csv_creates_folders(tmp_path):
    path = ev.save_csv(pd.DataFrame({"a": [1, 2]}), tmp_path / "new" / "deeper" / "t.csv")
    assert path.is_file() and pd.read_csv(path)["a"].tolist() == [1, 2]



# -- the beam's length penalty ---------------------------------------------------------------------

def test_tune_length_penalty_keeps_the_best_bleu_of_each_decoding(loaded, rows):
    two = {name: loaded[name] for name in ("rnn", "attention")}
    table = tune_length_penalty(two, rows, [2.0, 0.0, 1.0, 1.0], beam_size=2, max_len=12,
                                syntax_aware=[False, True], log=lambda s: None)
    assert len(table) == 2 * 2 * 3 and sorted(set(table["length_penalty"])) == [0.0, 1.0, 2.0]
    assert set(table["decoding"]) == {"beam2", "beam2+syntax"}
    for _, group in table.groupby(["model", "decoding"]):
        chosen = group[group["chosen"]]
        assert len(chosen) == 1
        best = group["bleu"].max()
        assert chosen["bleu"].iloc[0] == best
        assert chosen["length_penalty"].iloc[0] == group.loc[group["bleu"] == best, "length_penalty"].min()
    # each row is the BLEU of that decoding on those rows
    row = table[(table["model"] == "attention") & (table["decoding"] == "beam2")
                & (table["length_penalty"] == 2.0)].iloc[0]
    d = decode_split(loaded["attention"], rows, beam_size=2, max_len=12, length_penalty=2.0)
    assert row["bleu"] == pytest.approx(corpus_bleu_score(d.hypotheses, [r["code_tokens"] for r in rows]))
    assert chosen_length_penalties(table).keys() == {(m, d) for m in two for d in ("beam2", "beam2+syntax")}
    with pytest.raises(ValueError, match="only matters for beam search"):
        tune_length_penalty(two, rows, [1.0], beam_size=1)
    with pytest.raises(ValueError, match="length_penalty must be a number"):
        tune_length_penalty(two, rows, [-1.0], beam_size=2)


def test_tune_length_penalty_breaks_ties_towards_the_smaller_penalty(loaded, rows, monkeypatch):
    monkeypatch.setattr(ev, "corpus_bleu_score", lambda hyps, refs: 5.0)  # every candidate scores the same
    table = tune_length_penalty({"rnn": loaded["rnn"]}, rows[:2], [3.0, 0.5], beam_size=2, max_len=5,
                                log=lambda s: None)
    assert chosen_length_penalties(table) == {("rnn", "beam2"): 0.5}


def test_choose_length_penalty_number_candidates_and_tuned(loaded, rows, tmp_path):
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    (data / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    two = {name: loaded[name] for name in ("rnn", "attention")}
    quiet = {"max_len": 12, "log": lambda s: None}
    assert choose_length_penalty(1.5, two, data, plots, beam_size=2, **quiet) == (1.5, None)
    with pytest.raises(FileNotFoundError, match="03_bleu"):
        choose_length_penalty("tuned", two, data, plots, beam_size=2)
    penalties, table = choose_length_penalty([0.0, 2.0], two, data, plots, beam_size=2, tune_examples=3, **quiet)
    assert (table["n"] == 3).all() and (plots / TUNING_CSV).is_file()
    assert penalties == chosen_length_penalties(table) and set(penalties.values()) <= {0.0, 2.0}
    read, _ = choose_length_penalty("tuned", two, data, plots, beam_size=2)
    assert read == penalties  # what 04 and 05 use is what 03 chose
    d = decode_split(two["rnn"], rows, beam_size=2, max_len=12, length_penalty=read)
    assert d.length_penalty == read[("rnn", "beam2")]
    # greedy decoding has no length penalty to choose
    assert choose_length_penalty("tuned", two, tmp_path / "none", tmp_path / "none", beam_size=1) == (1.0, None)
    assert decode_split(two["rnn"], rows, beam_size=1, max_len=12, length_penalty=read).length_penalty is None
    with pytest.raises(ValueError, match='a list of candidates or "tuned"'):
        choose_length_penalty("best", two, data, plots, beam_size=2)
    with pytest.raises(ValueError, match="length_penalty must be a number"):
        choose_length_penalty(-2, two, data, plots, beam_size=2)


def test_penalty_for_names_what_is_missing():
    assert penalty_for(2.0, "rnn", "beam5") == 2.0
    assert penalty_for({("rnn", "beam5"): 3.0}, "rnn", "beam5") == 3.0
    with pytest.raises(KeyError, match="attention beam5.*chosen for: rnn beam5.*set length_penalty to a number"):
        penalty_for({("rnn", "beam5"): 3.0}, "attention", "beam5")
    with pytest.raises(ValueError, match="no column chosen"):
        chosen_length_penalties(pd.DataFrame({"model": [], "decoding": [], "length_penalty": []}))
