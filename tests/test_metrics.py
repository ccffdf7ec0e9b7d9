"""Hand-checked cases for utils.metrics: every expected number can be worked out on paper."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.data.tokenizer import INDENT, tokenize_code
from utils.metrics import (
    LENGTH_BUCKETS,
    bucket_label,
    corpus_bleu_score,
    crystal_bleu_score,
    distinct_outputs,
    evaluate_outputs,
    exact_match,
    identifier_recall,
    is_valid_syntax,
    length_bucket_table,
    output_length,
    perplexity,
    strip_special,
    study_bleu_score,
    token_accuracy,
    token_accuracy_micro,
    trivially_shared_ngrams,
    unk_rate,
)

SNIPPET = "def add_one(x):\n    return x + 1\n"
# Eight tokens: a hypothesis that only gets the last one wrong has n-gram precisions
# 7/8, 6/7, 5/6, 4/5 and no brevity penalty, so BLEU-4 = (4/8) ** (1/4).
REF8 = ["def", "f", "(", "a", ")", ":", "return", "foo_bar"]
ONE_WRONG_BLEU = 100 * 0.5**0.25


def test_strip_special_keeps_unk():
    assert strip_special(["<SOS>", "a", "<UNK>", "<PAD>", "<EOS>"]) == ["a", "<UNK>"]
    assert strip_special(["a", "<EOS>", "b", "<EOS>"]) == ["a"]  # nothing after <EOS> was output


def test_bleu_identical_corpus_is_100():
    refs = [tokenize_code(SNIPPET), REF8]
    assert corpus_bleu_score(refs, refs) == pytest.approx(100.0)


def test_bleu_ignores_special_tokens():
    hyps = [["<SOS>"] + REF8 + ["<EOS>", "<PAD>"]]
    assert corpus_bleu_score(hyps, [REF8]) == pytest.approx(100.0)


def test_bleu_one_wrong_token_worked_example():
    hyp = REF8[:-1] + ["baz"]
    assert corpus_bleu_score([hyp], [REF8]) == pytest.approx(ONE_WRONG_BLEU)


def test_bleu_no_overlap_and_empty_hypotheses_score_zero():
    assert corpus_bleu_score([["x", "y", "z", "w"]], [REF8]) == 0.0
    assert corpus_bleu_score([[], []], [REF8, REF8]) == 0.0
    # One empty hypothesis among good ones must not crash and must cost something.
    assert 0.0 < corpus_bleu_score([REF8, []], [REF8, REF8]) < 100.0


def test_bleu_empty_corpus_is_nan_and_mismatch_raises():
    assert math.isnan(corpus_bleu_score([], []))
    with pytest.raises(ValueError, match="parallel"):
        corpus_bleu_score([REF8], [REF8, REF8])


def test_unk_never_matches_but_study_bleu_rewards_it():
    vocab = set(REF8) - {"foo_bar"}  # foo_bar is out of vocabulary
    hyp = REF8[:-1] + ["<UNK>"]
    assert study_bleu_score([hyp], [REF8], vocab) == pytest.approx(100.0)
    assert corpus_bleu_score([hyp], [REF8]) == pytest.approx(ONE_WRONG_BLEU)
    # Even a reference that literally holds "<UNK>" gives the hypothesis no credit for it.
    assert corpus_bleu_score([hyp], [REF8[:-1] + ["<UNK>"]]) == pytest.approx(ONE_WRONG_BLEU)


def test_bleu_smoothing_rescues_zero_higher_order_matches():
    hyp, ref = ["a", "b", "x", "c", "y", "d"], ["a", "b", "c", "d", "e", "f"]
    # no 4-gram matches: BLEU is 0 up to NLTK's float floor for an empty precision
    assert corpus_bleu_score([hyp], [ref]) == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < corpus_bleu_score([hyp], [ref], smoothing=True) < 100.0


def test_token_accuracy_worked_example():
    # matches at positions 0, 1, 3 out of a 4-token reference; the 5th hypothesis token is ignored
    assert token_accuracy(["a", "b", "X", "d", "e"], ["a", "b", "c", "d"]) == pytest.approx(0.75)
    assert token_accuracy(["<SOS>", "a", "<EOS>"], ["a", "<EOS>"]) == 1.0
    assert token_accuracy(["<UNK>", "b"], ["<UNK>", "b"]) == 0.5
    assert token_accuracy([], ["a"]) == 0.0
    assert token_accuracy([], []) == 1.0


def test_token_accuracy_micro_pools_tokens():
    hyps, refs = [["a", "x", "c", "y"], ["z"]], [["a", "b", "c", "d"], ["z"]]
    # per example 2/4 and 1/1 -> mean 0.75; pooled 3/5
    assert token_accuracy_micro(hyps, refs) == pytest.approx(0.6)
    assert np.mean([token_accuracy(h, r) for h, r in zip(hyps, refs)]) == pytest.approx(0.75)


def test_exact_match():
    assert exact_match(["<SOS>", "a", "b", "<EOS>"], ["a", "b"])
    assert not exact_match(["a", "b", "c"], ["a", "b"])
    assert not exact_match(["a", "<UNK>"], ["a", "<UNK>"])


def test_syntax_validity_on_real_snippets():
    good = tokenize_code(SNIPPET)
    assert is_valid_syntax(good)
    assert is_valid_syntax(["<SOS>", *good, "<EOS>"])
    missing_paren = list(good)
    missing_paren.remove(")")
    assert not is_valid_syntax(missing_paren)
    no_indent = [t for t in good if t != INDENT]
    assert not is_valid_syntax(no_indent)


def test_syntax_validity_rejects_empty_and_unk():
    assert not is_valid_syntax([])
    assert not is_valid_syntax(["<SOS>", "<EOS>"])
    # "x = a <UNK> b" would parse as the chained comparison "a < UNK > b"
    assert not is_valid_syntax(tokenize_code("x = a < b\n")[:-2] + ["<UNK>", "b"])
    assert not is_valid_syntax(["def", "(", "(", "("])


def test_unk_rate():
    assert unk_rate([["a", "<UNK>"], ["<UNK>", "b", "<EOS>"]]) == pytest.approx(0.5)
    assert unk_rate([[], ["<EOS>"]]) == 0.0


def test_identifier_recall_counts_docstring_mentioned_reference_names():
    ref = tokenize_code("def get_name(user):\n    return user.name\n")
    doc = ["return", "the", "name", "of", "user"]
    # reference names also in the docstring: {name, user}; "return" is a keyword, get_name is not mentioned
    assert identifier_recall(["return", "user", ".", "title"], ref, doc) == (1, 2)
    assert identifier_recall(ref, ref, doc) == (2, 2)
    assert identifier_recall(ref, ref, ["nothing", "relevant"]) == (0, 0)


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)
    assert perplexity(1e6) == math.inf
    assert math.isnan(perplexity(float("nan")))


def test_evaluate_outputs_worked_example():
    ref = tokenize_code(SNIPPET)
    refs = [ref, ref]
    docs = [["add", "one", "to", "x"], ["add", "one", "to", "x"]]
    hyps = [list(ref), ["<UNK>"] + ref[1:]]
    m = evaluate_outputs(hyps, refs, docs)
    assert m["n"] == 2
    assert "bleu_study" not in m
    assert m["exact_match"] == pytest.approx(50.0)
    assert m["syntax_valid"] == pytest.approx(50.0)
    assert m["token_accuracy"] == pytest.approx(100 * (1 + (len(ref) - 1) / len(ref)) / 2)
    assert m["unk_rate"] == pytest.approx(100 * 1 / (2 * len(ref)))
    assert m["copied_identifiers"] == pytest.approx(100.0)  # "x" is mentioned and present in both outputs
    assert m["distinct_outputs"] == pytest.approx(100.0)
    assert m["output_length"] == pytest.approx(100.0)  # the <UNK> output is as long as its reference
    assert 0 < m["bleu"] < 100
    m2 = evaluate_outputs(hyps, refs, docs, trg_vocab=set(ref))
    assert m2["bleu_study"] >= m2["bleu"]


def test_output_length_is_pooled_and_ignores_specials():
    refs = [["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f"]]
    hyps = [["<SOS>", "a", "<EOS>", "x", "y"], ["a", "b", "c", "d", "<PAD>"]]  # 1 + 4 real tokens
    assert output_length(hyps, refs) == pytest.approx(50.0)
    assert output_length([refs[1], refs[0]], refs) == pytest.approx(100.0)
    assert math.isnan(output_length([["a"]], [["<EOS>"]]))


def test_evaluate_outputs_empty_corpus_gives_nan():
    m = evaluate_outputs([], [], [])
    assert m["n"] == 0
    ratios = ("bleu", "token_accuracy", "exact_match", "syntax_valid", "copied_identifiers", "distinct_outputs",
              "output_length")
    assert all(math.isnan(m[k]) for k in ratios)


@pytest.mark.parametrize(
    "n, label", [(0, "0-10"), (10, "0-10"), (11, "11-20"), (20, "11-20"), (21, "21-30"), (30, "21-30"), (31, ">30")]
)
def test_bucket_boundaries(n, label):
    assert bucket_label(n) == label


def test_length_bucket_table_counts():
    lengths = [10, 11, 20, 21, 30, 31, 3]
    # specials around the docstring must not move it to a longer bucket
    docs = [["<SOS>"] + ["w"] * n + ["<EOS>"] for n in lengths]
    refs = [["t"] * (i + 1) for i in range(len(lengths))]  # 1..7 target tokens
    table = length_bucket_table(refs, refs, docs)
    assert list(table.columns) == [
        "bucket", "n_examples", "n_target_tokens", "bleu", "codebleu", "token_accuracy", "exact_match", "syntax_valid"
    ]
    assert list(table["bucket"]) == [label for _, _, label in LENGTH_BUCKETS]
    assert list(table["n_examples"]) == [2, 2, 2, 1]
    # 0-10 holds examples 0 and 6 (1 + 7 tokens), 11-20 examples 1, 2 (2 + 3), 21-30 examples 3, 4 (4 + 5)
    assert list(table["n_target_tokens"]) == [8, 5, 9, 6]
    assert list(table["exact_match"]) == [100.0, 100.0, 100.0, 100.0]


def test_length_bucket_table_empty_bucket_is_nan():
    table = length_bucket_table([["a"]], [["a"]], [["w"] * 5]).set_index("bucket")
    assert table.loc[">30", "n_examples"] == 0
    assert table.loc[">30", "n_target_tokens"] == 0
    assert table.loc[">30", ["bleu", "token_accuracy", "exact_match", "syntax_valid"]].isna().all()


def test_distinct_outputs_counts_programs_not_inputs():
    a, b = ["def", "f", "(", ")", ":"], ["return", "x"]
    assert distinct_outputs([a, a, a, a]) == pytest.approx(25.0)   # one program for every input
    assert distinct_outputs([a, b, a, b]) == pytest.approx(50.0)
    assert distinct_outputs([a, a + ["<EOS>", "junk"]]) == pytest.approx(50.0)  # cut at <EOS>: the same
    assert distinct_outputs([a, b]) == pytest.approx(100.0)


def test_edit_figures_say_how_much_a_retrieval_model_edits() -> None:
    from utils.metrics import edit_figures, sentence_bleu_scores

    ref = "def add ( a , b ) : return a + b".split()
    retrieved = "def add ( x , y ) : return x - y".split()
    assert sentence_bleu_scores([ref], [ref]) == [100.0]
    assert 0 < sentence_bleu_scores([retrieved], [ref])[0] < 100
    # a model that only copies its neighbour: 100% same, 0% better
    assert edit_figures([retrieved, retrieved], [retrieved, retrieved], [retrieved, retrieved], [ref, ref]) == {
        "same_as_retrieved": 100.0, "better_than_retrieved": 0.0}
    # one output fixed, one broken: 0% same, 50% better (ties and worse are not better)
    figures = edit_figures([ref, ["pass"]], [retrieved, retrieved], [retrieved, retrieved], [ref, ref])
    assert figures == {"same_as_retrieved": 0.0, "better_than_retrieved": 50.0}


def _getter(name: str) -> list[str]:
    return tokenize_code(f"def get_{name}(self):\n    return self._{name}\n")


def test_trivially_shared_ngrams_are_the_most_frequent_one_to_four_grams():
    code = [["a", "b", "a"], ["<SOS>", "a", "c", "<EOS>", "junk"]]  # specials stripped, cut at <EOS>
    assert trivially_shared_ngrams(code, k=1) == {("a",)}  # 3 times
    # the rest once each, ties in order of first appearance: b, (a, b), (b, a), (a, b, a), then c ...
    assert trivially_shared_ngrams(code, k=3) == {("a",), ("b",), ("a", "b")}
    assert ("a", "b", "a") in trivially_shared_ngrams(code, k=10)
    assert len(trivially_shared_ngrams([["t"] * 20], k=500)) == 4  # t, t t, t t t, t t t t


def test_crystal_bleu_scores_a_constant_generic_program_about_zero_where_bleu_does_not():
    # training code whose only shared n-grams are the boilerplate of a getter
    shared = trivially_shared_ngrams([_getter(w) for w in ("alpha", "beta", "gamma", "delta", "eps", "zeta")], k=40)
    refs = [_getter(w) for w in ("red", "green", "blue", "cyan")]
    constant = [_getter("value")] * len(refs)  # one program for every input
    assert corpus_bleu_score(constant, refs) > 50  # BLEU counts def ( self ) : ... return self .
    assert crystal_bleu_score(constant, refs, shared) == pytest.approx(0.0, abs=0.5)
    assert crystal_bleu_score(refs, refs, shared) == pytest.approx(100.0)  # identical outputs
    # with nothing ignored it is BLEU
    assert crystal_bleu_score(constant, refs, frozenset()) == pytest.approx(corpus_bleu_score(constant, refs))
    # a hypothesis <UNK> never matches, here either
    unk = [["<UNK>" if t.startswith("get_") else t for t in r] for r in refs]
    assert crystal_bleu_score(unk, refs, frozenset()) < 100
    assert math.isnan(crystal_bleu_score([], [], shared))
    with pytest.raises(ValueError, match="parallel"):
        crystal_bleu_score(refs[:1], refs, shared)


def test_evaluate_outputs_gives_crystal_bleu_with_the_shared_ngrams():
    refs = [_getter(w) for w in ("red", "green")]
    docs = [["get", "red"], ["get", "green"]]
    assert "crystal_bleu" not in evaluate_outputs(refs, refs, docs)
    m = evaluate_outputs(refs, refs, docs, shared_ngrams=trivially_shared_ngrams([_getter("blue")], k=5))
    assert m["crystal_bleu"] == pytest.approx(100.0)

