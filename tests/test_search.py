"""Greedy and beam search: agreement with each other and with teacher-forced scoring, independence
from batching and padding, forbidden tokens, length limits, attention maps."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from utils.data.batch import Batch, Example, make_batch
from utils.data.vocabulary import EOS, PAD, SOS, SPECIALS, UNK, Vocabulary
from utils.decoding.search import beam_search, decode_batch, decode_examples, greedy_decode, ids_to_tokens
from utils.models import MODEL_CLASSES, build_model

ALL_MODELS = [*MODEL_CLASSES, "rnn:reverse", "lstm:context"]  # two recurrent variants too (conftest.tiny_config)
MAX_LEN = 12


@pytest.fixture(scope="module")
def sources(toy_examples) -> list[Example]:
    """Held-out copy-task examples of mixed lengths (the trained models were not fitted on them)."""
    return toy_examples(20, seed=21, min_len=1, max_len=9)


def _teacher_forced_score(model, example: Example, tokens: list[int], max_len: int) -> float:
    """Sum of the log-probabilities of ``tokens`` (then <EOS>, unless cut at ``max_len``) under
    ``model.forward`` with the hypothesis as decoder input."""
    V = model.config.trg_vocab_size
    targets = tokens + ([EOS] if len(tokens) < max_len else [])
    trg_in = [SOS] + [t if t < V else UNK for t in tokens]  # copied ids are read back as <UNK>
    batch = make_batch([example])
    with torch.no_grad():
        logits, _ = model(batch.src, batch.src_lengths, torch.tensor([trg_in[: len(targets)]]), 1.0, None,
                          batch.src_ext, batch.n_oov)
    log_probs = torch.log_softmax(logits[0].float(), -1)
    return float(log_probs[torch.arange(len(targets)), torch.tensor(targets)].sum())


def test_trained_models_give_non_trivial_outputs(trained_models, sources) -> None:
    """The fixture's models are neither constant nor perfect: what the tests below need."""
    for name, model in trained_models.items():
        hyp = decode_examples(model, sources, max_len=MAX_LEN)
        assert len({tuple(t) for t in hyp.tokens}) > 3, name
        assert any(len(t) > 1 for t in hyp.tokens), name


@pytest.mark.parametrize("name", ALL_MODELS)
def test_beam_size_one_is_greedy(name, trained_models, sources) -> None:
    model = trained_models[name]
    batch = make_batch(sources)
    greedy = greedy_decode(model, batch, max_len=MAX_LEN)
    beam = beam_search(model, batch, beam_size=1, max_len=MAX_LEN, length_penalty=1.0)
    assert beam.tokens == greedy.tokens
    assert beam.scores == pytest.approx(greedy.scores, abs=1e-5)
    for a, b in zip(beam.attention, greedy.attention):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("beam_size", [1, 3])
def test_outputs_do_not_depend_on_batching(name, beam_size, trained_models, sources) -> None:
    model = trained_models[name]
    runs = [decode_examples(model, sources, batch_size=bs, beam_size=beam_size, max_len=MAX_LEN)
            for bs in (1, 7, 64)]
    for other in runs[1:]:
        assert other.tokens == runs[0].tokens
        assert other.scores == pytest.approx(runs[0].scores, abs=1e-5)
    # one source alone, in the examples' order (decode_examples sorts by length internally)
    for k in (0, 5):
        alone = decode_batch(model, make_batch([sources[k]]), beam_size=beam_size, max_len=MAX_LEN)
        assert alone.tokens[0] == runs[0].tokens[k]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_extra_source_padding_does_not_change_outputs(name, trained_models, sources) -> None:
    model = trained_models[name]
    batch = make_batch(sources[:6])
    padded = Batch(F.pad(batch.src, (0, 5), value=PAD), batch.src_lengths, batch.trg_in, batch.trg_out,
                   batch.indices, F.pad(batch.src_ext, (0, 5), value=PAD), batch.trg_out_ext, batch.n_oov)
    for decode in (lambda b: greedy_decode(model, b, MAX_LEN), lambda b: beam_search(model, b, 3, MAX_LEN)):
        a, b = decode(batch), decode(padded)
        assert a.tokens == b.tokens
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_beam_search_scores_and_greedy(name, trained_models, sources) -> None:
    """With length_penalty=0 beams are ranked by raw log-probability. The scores reported are the
    model's teacher-forced log-probabilities of the outputs, and the beam's best is usually at least
    the greedy one's (beam search prunes, so not always: see the exhaustive test below)."""
    model = trained_models[name]
    greedy = decode_examples(model, sources, beam_size=1, max_len=MAX_LEN)
    beam = decode_examples(model, sources, beam_size=4, max_len=MAX_LEN, length_penalty=0.0)
    not_worse = 0
    for k, ex in enumerate(sources):
        g = _teacher_forced_score(model, ex, greedy.tokens[k], MAX_LEN)
        b = _teacher_forced_score(model, ex, beam.tokens[k], MAX_LEN)
        assert greedy.scores[k] == pytest.approx(g, abs=1e-4)
        assert beam.scores[k] == pytest.approx(b, abs=1e-4)
        not_worse += b >= g - 1e-5
    assert not_worse >= 0.8 * len(sources)
    assert sum(beam.scores) > sum(greedy.scores)
    # the beam's K best finished hypotheses are kept, best first (the combined system's candidates)
    assert all(n_best[0] == tokens and 1 <= len(n_best) <= 4 for n_best, tokens in zip(beam.n_best, beam.tokens))
    assert greedy.n_best == [[t] for t in greedy.tokens]


def _all_outputs(n_tokens: int, max_len: int) -> list[list[int]]:
    """Every output of at most ``max_len`` tokens drawn from ids 3 .. n_tokens-1 (<UNK> and words)."""
    outs, frontier = [[]], [[]]
    for _ in range(max_len):
        frontier = [seq + [t] for seq in frontier for t in range(UNK, n_tokens)]
        outs.extend(frontier)
    return outs


@pytest.mark.parametrize("name", ALL_MODELS)
def test_wide_beam_is_exact_search(name, trained_models, sources) -> None:
    """With a beam wider than the number of prefixes, beam search is exhaustive: it returns the
    highest-scoring output of all (brute force over every output of up to 3 tokens), so it is never
    below greedy."""
    model, max_len = trained_models[name], 3
    candidates = _all_outputs(model.config.trg_vocab_size, max_len)
    for ex in sources[:2]:
        batch = make_batch([ex])
        beam = beam_search(model, batch, beam_size=200, max_len=max_len, length_penalty=0.0)
        greedy = greedy_decode(model, batch, max_len=max_len)
        # brute force: score every candidate at once, teacher-forced
        n = len(candidates)
        trg_in = torch.full((n, max_len), PAD)
        targets = torch.full((n, max_len), PAD)
        for i, seq in enumerate(candidates):
            full = seq + ([EOS] if len(seq) < max_len else [])
            trg_in[i, : len(full)] = torch.tensor([SOS] + seq)[: len(full)]
            targets[i, : len(full)] = torch.tensor(full)
        src = batch.src.expand(n, -1)
        src_ext = None if batch.src_ext is None else batch.src_ext.expand(n, -1)
        with torch.no_grad():
            logits, _ = model(src, batch.src_lengths.expand(n), trg_in, 1.0, None, src_ext, batch.n_oov)
        log_probs = torch.log_softmax(logits, -1).gather(2, targets.unsqueeze(2)).squeeze(2)
        totals = log_probs.masked_fill(targets == PAD, 0.0).sum(1)
        best = int(totals.argmax())
        assert beam.scores[0] == pytest.approx(float(totals[best]), abs=1e-4)
        assert beam.tokens[0] == candidates[best]
        assert beam.scores[0] >= greedy.scores[0] - 1e-5


def _reference_beam(model, example: Example, beam_size: int, max_len: int) -> tuple[float, list[int]]:
    """Beam search written plainly, one hypothesis at a time, with the same rules: keep the K best
    open prefixes among the 2K best candidates, set aside those of the K best that end (or reach
    max_len), stop once K have ended, return the best ended one."""
    V = model.config.trg_vocab_size
    batch = make_batch([example])
    state = model.encode(batch.src, batch.src_lengths)
    state.src_ext, state.n_oov = batch.src_ext, batch.n_oov
    beams, finished = [(0.0, [], state)], []
    with torch.no_grad():
        for t in range(max_len):
            cands = []
            for score, toks, st in beams:
                y = toks[-1] if toks else SOS
                logits, st2, _ = model.decode_step(torch.tensor([y if y < V else UNK]), st)
                log_probs = torch.log_softmax(logits[0], -1)
                for v, lp in enumerate(log_probs.tolist()):
                    if v not in (PAD, SOS):
                        cands.append((score + lp, toks + [v], st2))
            cands.sort(key=lambda c: -c[0])
            top = cands[: 2 * beam_size]
            for score, toks, _ in top[:beam_size]:
                if toks[-1] == EOS:
                    finished.append((score, toks[:-1]))
                elif t == max_len - 1:
                    finished.append((score, toks))
            beams = [c for c in top if c[1][-1] != EOS][:beam_size]
            if len(finished) >= beam_size:
                break
    return max(finished, key=lambda f: f[0])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_batched_beam_search_equals_plain_reference(name, trained_models, sources) -> None:
    model = trained_models[name]
    hyp = decode_examples(model, sources[:8], beam_size=3, max_len=MAX_LEN, length_penalty=0.0)
    for k, ex in enumerate(sources[:8]):
        score, tokens = _reference_beam(model, ex, 3, MAX_LEN)
        assert hyp.tokens[k] == tokens
        assert hyp.scores[k] == pytest.approx(score, abs=1e-4)


def _biased(model, boost: dict[int, float], generate_only: bool = False):
    """A copy of ``model`` whose output layer strongly prefers (or avoids) some tokens."""
    m = build_model(model.config).eval()
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        for token, value in boost.items():
            m.out.bias[token] += value
        if generate_only and m.uses_copy:  # copying could still pick the source's <EOS>
            m.gate.bias += 50.0
    return m


@pytest.mark.parametrize("name", ALL_MODELS)
def test_pad_and_sos_are_never_generated(name, trained_models, sources) -> None:
    model = _biased(trained_models[name], {PAD: 50.0, SOS: 50.0})  # the model now wants them most
    for beam_size in (1, 3):
        hyp = decode_examples(model, sources, beam_size=beam_size, max_len=MAX_LEN)
        assert all(PAD not in t and SOS not in t and EOS not in t for t in hyp.tokens)
        assert any(t for t in hyp.tokens)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_max_len_is_respected(name, trained_models, sources) -> None:
    model = _biased(trained_models[name], {EOS: -50.0}, generate_only=True)  # never wants to stop
    for beam_size in (1, 3):
        for max_len in (1, 3):
            hyp = decode_examples(model, sources, beam_size=beam_size, max_len=max_len)
            assert [len(t) for t in hyp.tokens] == [max_len] * len(sources)
    # and an unbiased model never exceeds it either
    hyp = decode_examples(trained_models[name], sources, beam_size=2, max_len=2)
    assert all(len(t) <= 2 for t in hyp.tokens)


def test_invalid_arguments(trained_models, sources) -> None:
    model, batch = trained_models["rnn"], make_batch(sources[:2])
    with pytest.raises(ValueError, match="beam_size must be at least 1, got 0"):
        beam_search(model, batch, beam_size=0)
    with pytest.raises(ValueError, match="max_len must be at least 1, got 0"):
        beam_search(model, batch, beam_size=2, max_len=0)
    with pytest.raises(ValueError, match="max_len must be at least 1, got 0"):
        greedy_decode(model, batch, max_len=0)
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        decode_examples(model, sources, beam_size=0)
    for alpha in (-0.5, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="length_penalty must be a number >= 0"):
            beam_search(model, batch, beam_size=2, length_penalty=alpha)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_maps(name, beam_size, trained_models, sources) -> None:
    model = trained_models[name]
    hyp = decode_examples(model, sources, batch_size=1, beam_size=beam_size, max_len=MAX_LEN)
    for tokens, attn, ex in zip(hyp.tokens, hyp.attention, sources):
        if not model.has_attention:
            assert attn is None
        elif tokens:
            assert attn.shape == (len(tokens), len(ex.src) + 2)  # <SOS> x <EOS> as the encoder saw it
            assert torch.allclose(attn.sum(1), torch.ones(len(tokens)), atol=1e-5)
            assert (attn >= 0).all()
    if model.has_attention:  # in a padded batch, no weight falls on the padding
        batched = decode_examples(model, sources, batch_size=64, beam_size=beam_size, max_len=MAX_LEN)
        for attn, single, ex in zip(batched.attention, hyp.attention, sources):
            if attn is not None:
                S = len(ex.src) + 2
                assert (attn[:, S:] == 0).all()
                assert torch.allclose(attn[:, :S], single, atol=1e-5)


def test_decode_examples_keeps_the_callers_order(trained_models, sources) -> None:
    model = trained_models["attention"]
    shuffled = [Example(e.src, e.trg, index=0, src_oov=e.src_oov, src_ext=e.src_ext, trg_ext=e.trg_ext)
                for e in reversed(sources)]  # misleading indices: all 0
    hyp = decode_examples(model, shuffled, batch_size=4, max_len=MAX_LEN)
    for e, tokens in zip(shuffled, hyp.tokens):
        assert tokens == greedy_decode(model, make_batch([e]), MAX_LEN).tokens[0]


def test_ids_to_tokens() -> None:
    v = Vocabulary(SPECIALS + ["def", "("])
    V = len(v)
    assert ids_to_tokens([4, 5], v) == ["def", "("]
    assert ids_to_tokens([4, V + 1, V], v, ["alpha", "beta"]) == ["def", "beta", "alpha"]
    assert ids_to_tokens([V + 5], v, ["alpha"]) == ["<UNK>"]  # beyond this source's OOV words
    assert ids_to_tokens([V], v) == ["<UNK>"]
    assert ids_to_tokens([UNK], v) == ["<UNK>"]


def test_top_candidates_break_ties_to_the_lower_index_like_max() -> None:
    """Beam search's candidates: best first, ties to the lower index, as greedy's ``max`` picks them
    (bf16 logits tie often; ``topk`` alone picks among ties arbitrarily)."""
    from utils.decoding.search import top_candidates

    values, idx = top_candidates(torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [5.0, 1.0, 1.0, 1.0, 0.0]]), 2)
    assert idx.tolist() == [[1, 2], [0, 1]] and values.tolist() == [[3.0, 3.0], [5.0, 1.0]]
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        scores = torch.randint(0, 4, (5, 30), generator=gen).float()
        scores[scores == 0] = float("-inf")
        m = int(torch.randint(1, 30, (1,), generator=gen))
        values, idx = top_candidates(scores, m)
        for r in range(5):
            expected = sorted(range(30), key=lambda j: (-scores[r, j].item(), j))[:m]
            assert idx[r].tolist() == expected
            assert values[r].tolist() == scores[r, expected].tolist()
        assert idx[:, 0].tolist() == scores.max(1).indices.tolist()
