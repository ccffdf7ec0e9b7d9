"""The benchmark's training measures (``utils.bench.training``): synthetic data obeys its advertised
length ranges, the multiply-accumulate counts follow the models' shapes, steppers take turns."""
from __future__ import annotations

import pytest

from utils.bench.training import examples_macs, reference_macs, synthetic_examples, train_macs
from utils.config import Seq2SeqConfig
from utils.data.batch import make_batch


def test_synthetic_examples_lengths_and_ids() -> None:
    examples = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=0)
    src_lens = [len(e.src) + 2 for e in examples]  # + <SOS>/<EOS>
    trg_lens = [len(e.trg) + 2 for e in examples]
    assert min(src_lens) == 5 and max(src_lens) == 52
    assert min(trg_lens) == 10 and max(trg_lens) == 82
    assert all(4 <= t < 50 for e in examples for t in e.src)  # no specials, inside the vocabulary
    assert all(4 <= t < 60 for e in examples for t in e.trg)
    assert [e.index for e in examples] == list(range(3000))
    again = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=0)
    assert [(e.src, e.trg) for e in again] == [(e.src, e.trg) for e in examples]
    other = synthetic_examples(3000, src_vocab=50, trg_vocab=60, seed=1)
    assert [(e.src, e.trg) for e in other] != [(e.src, e.trg) for e in examples]


@pytest.mark.parametrize("model", ["rnn", "lstm", "attention", "copy", "transformer"])
def test_train_macs_grow_with_tokens(model) -> None:
    cfg = Seq2SeqConfig(model=model, src_vocab_size=100, trg_vocab_size=200)
    small, big = train_macs(cfg, 100, 100, 10.0), train_macs(cfg, 200, 200, 10.0)
    assert 0 < small < big
    assert big == pytest.approx(2 * small, rel=0.05)


def test_time_interleaved_takes_turns_and_sums() -> None:
    """Steppers run batch by batch in turn (a shorter list just stops), and each gets its own totals."""
    from utils.bench.training import time_interleaved

    calls = []

    def stepper(name: str, seconds: float):
        def step(batch):
            calls.append((name, batch))
            return seconds, batch
        return step

    totals = time_interleaved([stepper("a", 0.5), stepper("b", 2.0)], [[1, 2, 3], [10, 20]])
    assert calls == [("a", 1), ("b", 10), ("a", 2), ("b", 20), ("a", 3)]
    assert totals == [{"seconds": 1.5, "tokens": 6}, {"seconds": 4.0, "tokens": 30}]


@pytest.mark.parametrize("model", ["rnn", "attention"])
def test_reference_macs_count_padded_targets(model) -> None:
    """On unpadded batches the reference (the plain loss) does the fast path's work; padded target
    positions add work, padded source positions none (its encoder reads a packed batch)."""
    cfg = Seq2SeqConfig(model=model, src_vocab_size=100, trg_vocab_size=200)
    same = synthetic_examples(40, 100, 200, seed=0)
    for e in same:  # one source and one target length: no padding
        e.src, e.trg = e.src[:3] + [5] * (3 - len(e.src[:3])), e.trg[:8]
    batch = make_batch(same)
    fast = examples_macs(cfg, same, batch.n_tokens)
    ref = reference_macs(cfg, [batch])
    assert ref == pytest.approx(fast)
    padded = make_batch(same[:20] + [e for e in synthetic_examples(20, 100, 200, seed=1)])
    assert reference_macs(cfg, [padded]) > ref
    same[0].src = same[0].src[:1]  # padded sources: the encoder's work is the fast path's
    ragged = make_batch(same)
    if model == "rnn":
        assert reference_macs(cfg, [ragged]) == pytest.approx(examples_macs(cfg, same, ragged.n_tokens))
    else:  # but attention reads every source position
        assert reference_macs(cfg, [ragged]) > examples_macs(cfg, same, ragged.n_tokens)


def test_transformer_macs_follow_its_width_hidden_dim() -> None:
    """The Transformer is hidden_dim wide (embed_dim is the recurrent models' embedding size)."""
    def macs(**kw):
        return train_macs(Seq2SeqConfig(model="transformer", trg_vocab_size=100, ff_dim=64, num_layers=1, **kw),
                          src_tokens=10, trg_tokens=10, mean_src_len=5)

    assert macs(embed_dim=16, hidden_dim=32) == macs(embed_dim=64, hidden_dim=32)
    d, ff, V = 32, 64, 100
    assert macs(embed_dim=16, hidden_dim=d) == 10 * (4 * d * d + 2 * d * ff) + 10 * (8 * d * d + 2 * d * ff + d * V)
