"""The five models: they learn, they ignore padding and batch mates, dropout obeys train/eval, and
the copy model emits unseen words (the CPU shortcut to the same loss: test_fast.py)."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from utils.config import MODEL_NAMES, Seq2SeqConfig
from utils.data.batch import Batch, encode_pairs, make_batch
from utils.data.vocabulary import PAD, SPECIALS, UNK, Vocabulary
from utils.decoding.search import decode_examples, ids_to_tokens
from utils.models import MODEL_CLASSES, build_model, teacher_forcing_mask
from utils.models.recurrent import reverse_padded

ALL_MODELS = [*MODEL_CLASSES, "rnn:reverse", "lstm:context"]  # two recurrent variants too (conftest.tiny_config)


def _forward(model, batch: Batch, teacher_forcing: float = 1.0, generator=None):
    return model(batch.src, batch.src_lengths, batch.trg_in, teacher_forcing, generator,
                 src_ext=batch.src_ext, n_oov=batch.n_oov)


def _with_pad_columns(batch: Batch, extra_src: int, extra_trg: int) -> Batch:
    """The same batch with ``extra_*`` all-<PAD> columns appended."""
    pad = lambda t, k: None if t is None else F.pad(t, (0, k), value=PAD)  # noqa: E731
    return Batch(pad(batch.src, extra_src), batch.src_lengths, pad(batch.trg_in, extra_trg),
                 pad(batch.trg_out, extra_trg), batch.indices, pad(batch.src_ext, extra_src),
                 pad(batch.trg_out_ext, extra_trg), batch.n_oov)


def test_model_names_agree() -> None:
    assert tuple(MODEL_CLASSES) == MODEL_NAMES


def test_build_model_rejects_bad_configs(tiny_config) -> None:
    with pytest.raises(ValueError, match="Unknown model 'gru'"):
        Seq2SeqConfig(model="gru")
    with pytest.raises(ValueError, match="Vocabulary sizes must be set"):
        build_model(Seq2SeqConfig(model="rnn"))
    with pytest.raises(ValueError, match=r"hidden_dim \(30\) must be divisible by n_heads \(4\)"):
        build_model(tiny_config("transformer", hidden_dim=30, n_heads=4))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_output_shapes_and_distributions(name, tiny_config, toy_examples) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    batch = make_batch(toy_examples(5, seed=1))
    B, T = batch.trg_in.shape
    S = batch.src.size(1)
    V = model.config.trg_vocab_size + (batch.n_oov if model.uses_copy else 0)
    with torch.no_grad():
        logits, attn = _forward(model, batch)
    assert logits.shape == (B, T, V)
    assert torch.isfinite(logits).all()
    real = batch.trg_out != PAD  # scores at padding positions are unspecified
    if model.uses_copy:  # log-probabilities over the extended vocabulary
        assert torch.allclose(logits.exp().sum(-1)[real], torch.ones(int(real.sum())), atol=1e-4)
    if model.has_attention:
        assert attn.shape == (B, T, S)
        assert torch.allclose(attn.sum(-1)[real], torch.ones(int(real.sum())), atol=1e-5)
        assert (attn.masked_select(~batch.src_mask.unsqueeze(1)) == 0).all()  # no weight on padding
    else:
        assert attn is None


@pytest.mark.parametrize("name", ALL_MODELS)
def test_label_smoothed_loss_equals_smoothed_cross_entropy_of_forward(name, tiny_config, toy_examples) -> None:
    """With label smoothing the training loss equals ``F.cross_entropy(..., label_smoothing=0.1)`` of
    the forward scores (for the copy model: over its extended vocabulary), at partial teacher forcing,
    and differs from the loss without it. (The fast path's loss is held to ``model.loss``: test_fast.py.)"""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    batch = make_batch(toy_examples(6, seed=2))
    targets = batch.trg_out_ext if model.uses_copy else batch.trg_out
    with torch.no_grad():
        loss, n = model.loss(batch, 0.5, torch.Generator().manual_seed(3), smoothing=0.1)
        plain, _ = model.loss(batch, 0.5, torch.Generator().manual_seed(3))
        logits, _ = _forward(model, batch, 0.5, torch.Generator().manual_seed(3))
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum",
                               label_smoothing=0.1)
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-5), (float(loss), float(expected))
    assert not torch.allclose(loss, plain)  # the smoothing term is there


@pytest.mark.parametrize("name", ALL_MODELS)
def test_overfits_a_handful_of_examples(name, tiny_config, toy_examples) -> None:
    examples = toy_examples(4, seed=1, min_len=2, max_len=6)
    batch = make_batch(examples)
    torch.manual_seed(0)
    model = build_model(tiny_config(name))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(250):
        model.train()
        loss, n = model.loss(batch, teacher_forcing=1.0)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        losses.append(loss.item() / n)
    model.eval()
    with torch.no_grad():
        loss, n = model.loss(batch)
    assert losses[0] > 1.0  # starts near log(|V|): not trivially solved
    assert loss.item() / n < 0.1
    hyp = decode_examples(model, examples, max_len=10)
    assert hyp.tokens == [e.trg_ext if model.uses_copy else e.trg for e in examples]


def test_attention_model_learns_the_copy_task(tiny_config, toy_examples, trainer) -> None:
    train, held_out = toy_examples(300, seed=1), toy_examples(100, seed=2)
    torch.manual_seed(0)
    model = build_model(tiny_config("attention"))
    trainer(model, train, epochs=40, lr=1e-2)
    hyp = decode_examples(model, held_out, max_len=12)
    exact = sum(h == e.trg for h, e in zip(hyp.tokens, held_out)) / len(held_out)
    assert exact > 0.8


def _transformer_copy_accuracy(tiny_config, toy_examples, trainer, scaled_init: bool) -> float:
    train, held_out = toy_examples(400, seed=1), toy_examples(100, seed=2)
    torch.manual_seed(0)
    model = build_model(tiny_config("transformer"))
    if scaled_init:  # the usual Transformer embedding init: N(0, d^-1/2), so that x sqrt(d) is O(1)
        for emb in (model.src_embedding, model.trg_embedding):
            torch.nn.init.normal_(emb.weight, 0.0, model.config.hidden_dim ** -0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()
    trainer(model, train, epochs=15, lr=3e-3)
    hyp = decode_examples(model, held_out, max_len=12)
    return sum(h == e.trg for h, e in zip(hyp.tokens, held_out)) / len(held_out)


def test_transformer_learns_the_copy_task(tiny_config, toy_examples, trainer) -> None:
    assert _transformer_copy_accuracy(tiny_config, toy_examples, trainer, scaled_init=False) > 0.8


def test_transformer_learns_the_copy_task_with_scaled_embeddings(tiny_config, toy_examples, trainer) -> None:
    """The architecture itself is sound: with the customary embedding init it learns to copy."""
    assert _transformer_copy_accuracy(tiny_config, toy_examples, trainer, scaled_init=True) > 0.8


def test_copy_model_emits_a_source_word_outside_the_target_vocabulary(tiny_config, trainer) -> None:
    """Target ``def <name> ( )`` where <name> is in neither vocabulary: only copying can produce it."""
    fillers = ["get", "the", "value", "of", "return", "a", "new"]
    src_vocab = Vocabulary(SPECIALS + fillers)
    trg_vocab = Vocabulary(SPECIALS + ["def", "(", ")"])
    rng = random.Random(0)

    def rows(names):
        out = []
        for name in names:
            words = [rng.choice(fillers) for _ in range(rng.randint(1, 4))]
            words.insert(rng.randint(0, len(words)), name)
            out.append({"docstring_tokens": words, "code_tokens": ["def", name, "(", ")"]})
        return out

    train_rows = rows([f"name{i}" for i in range(300)])
    test_names = ["zebra_count", "parse_header", "unseen_word", "load_config", "x2y"]
    test_rows = rows(test_names)
    train = encode_pairs(train_rows, src_vocab, trg_vocab, with_copy=True)
    test = encode_pairs(test_rows, src_vocab, trg_vocab, with_copy=True)
    for name, ex in zip(test_names, test):
        assert name not in trg_vocab and name not in src_vocab and name in ex.src_oov
        assert UNK in ex.trg  # the plain target cannot express it
    torch.manual_seed(0)
    model = build_model(tiny_config("copy", src_vocab_size=len(src_vocab), trg_vocab_size=len(trg_vocab)))
    trainer(model, train, epochs=12, lr=1e-2)
    hyp = decode_examples(model, test, max_len=8)
    outputs = [ids_to_tokens(h, trg_vocab, ex.src_oov) for h, ex in zip(hyp.tokens, test)]
    assert outputs == [["def", name, "(", ")"] for name in test_names]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_padding_columns_do_not_change_logits(name, tiny_config, toy_examples) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    batch = make_batch(toy_examples(6, seed=3))
    B, T = batch.trg_in.shape
    real = batch.trg_out != PAD
    with torch.no_grad():
        ref, ref_attn = _forward(model, batch)
        for extra_src, extra_trg in [(3, 0), (0, 4), (2, 5)]:
            logits, attn = _forward(model, _with_pad_columns(batch, extra_src, extra_trg))
            assert logits.shape == (B, T + extra_trg, ref.size(2))
            assert torch.allclose(logits[:, :T][real], ref[real], atol=1e-5)
            if attn is not None:
                S = batch.src.size(1)
                assert torch.allclose(attn[:, :T, :S][real], ref_attn[real], atol=1e-5)
                assert (attn[:, :T, S:][real] == 0).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_row_does_not_depend_on_its_batch_mates(name, tiny_config, toy_examples) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    short = toy_examples(1, seed=4, min_len=2, max_len=2)
    longer = toy_examples(5, seed=5, min_len=6, max_len=9)
    n = len(short[0].trg) + 1
    with torch.no_grad():
        alone, _ = _forward(model, make_batch(short))
        for position in (0, 3, 5):
            mates = longer[:position] + short + longer[position:]
            together, _ = _forward(model, make_batch(mates))
            width = alone.size(2)  # the copy model's extra OOV columns of other rows are not this row's
            assert torch.allclose(together[position, :n, :width], alone[0, :n], atol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_decode_steps_equal_the_teacher_forced_pass(name, tiny_config, toy_examples) -> None:
    """``decode_step`` fed the reference tokens one by one (as decoding does, the Transformer from its
    key/value cache) gives the teacher-forced pass's scores and attention, also after its state's rows
    are reordered and repeated mid-way (as beam search does)."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    batch = make_batch(toy_examples(5, seed=8, min_len=5, max_len=8))
    order = torch.tensor([4, 0, 0, 2, 1, 3])  # a permutation with a repeated row
    switch = 3                                # the step after which the rows are reordered
    with torch.no_grad():
        ref, ref_attn = _forward(model, batch)
        ref = torch.log_softmax(ref, -1)  # the copy model's scores are log-probabilities already
        state = model.encode(batch.src, batch.src_lengths)
        state.src_ext, state.n_oov = batch.src_ext, batch.n_oov
        rows = torch.arange(5)
        y_in = batch.trg_in.masked_fill(batch.trg_in >= model.config.trg_vocab_size, UNK)
        for t in range(batch.trg_in.size(1)):
            if t == switch:
                rows, state = order, state.select(order)
            logits, state, attn = model.decode_step(y_in[rows, t], state)
            real = batch.trg_out[rows, t] != PAD  # the teacher-forced pass drops rows that have ended
            assert real.any()
            assert torch.allclose(torch.log_softmax(logits, -1)[real], ref[rows, t][real], atol=1e-5)
            if attn is not None:
                assert torch.allclose(attn[real], ref_attn[rows, t][real], atol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_decode_step_branches_from_one_state(name, tiny_config, toy_examples) -> None:
    """Two steps from the same state (as a plain beam search does) leave each branch its own
    history: a step never changes the state it was given (the Transformer's key/value cache included)."""
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2)).eval()
    batch = make_batch(toy_examples(3, seed=9, min_len=4, max_len=6))
    y = batch.trg_in.masked_fill(batch.trg_in >= model.config.trg_vocab_size, UNK)
    with torch.no_grad():
        state = model.encode(batch.src, batch.src_lengths)
        state.src_ext, state.n_oov = batch.src_ext, batch.n_oov
        for t in range(3):
            _, state, _ = model.decode_step(y[:, t], state)
        twin = state.select(torch.arange(3))  # an independent copy of the same state
        _, a, _ = model.decode_step(y[:, 3], state)
        _, b, _ = model.decode_step(y[:, 4], state)  # a second branch from the same state
        _, a_ref, _ = model.decode_step(y[:, 3], twin)
        _, b_ref, _ = model.decode_step(y[:, 4], twin.select(torch.arange(3)))
        for branch, ref in ((a, a_ref), (b, b_ref)):
            logits, _, _ = model.decode_step(y[:, 5], branch)
            logits_ref, _, _ = model.decode_step(y[:, 5], ref)
            assert torch.allclose(logits, logits_ref, atol=1e-6)
        assert not torch.allclose(model.decode_step(y[:, 5], a)[0], model.decode_step(y[:, 5], b)[0])


def test_teacher_forcing_mask() -> None:
    assert teacher_forcing_mask(5, 1.0, None) == [True] * 5
    assert teacher_forcing_mask(5, 0.0, None) == [True] + [False] * 4  # step 0 always reads <SOS>
    draws = teacher_forcing_mask(2000, 0.3, torch.Generator().manual_seed(0))
    assert draws[0] is True
    assert 0.25 < sum(draws[1:]) / 1999 < 0.35
    assert draws == teacher_forcing_mask(2000, 0.3, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_dropout_only_in_train_mode(name, tiny_config, toy_examples) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(name, num_layers=2, dropout=0.5))
    batch = make_batch(toy_examples(4, seed=9))
    with torch.no_grad():
        model.eval()
        a, _ = _forward(model, batch)
        b, _ = _forward(model, batch)
        model.train()
        c, _ = _forward(model, batch)
        d, _ = _forward(model, batch)
    assert torch.equal(a, b)
    assert not torch.allclose(c, d)
    assert not torch.allclose(a, c)


def test_copy_model_needs_extended_ids(tiny_config, toy_examples) -> None:
    model = build_model(tiny_config("copy"))
    batch = make_batch(toy_examples(2, seed=0))
    batch.src_ext = None
    with pytest.raises(ValueError, match=r"with_copy=True"):
        model.loss(batch)
    with torch.no_grad():  # the other models ignore the extended ids
        assert math.isfinite(float(build_model(tiny_config("attention")).loss(batch)[0]))


def test_reverse_padded_reverses_each_rows_tokens_and_leaves_padding() -> None:
    src = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, PAD, PAD], [1, 2, PAD, PAD, PAD]])
    out = reverse_padded(src, torch.tensor([5, 3, 2]))
    assert out.tolist() == [[2, 7, 6, 5, 1], [2, 8, 1, PAD, PAD], [2, 1, PAD, PAD, PAD]]


def test_the_reverse_variant_reads_the_source_backwards(tiny_config, toy_examples) -> None:
    """Same weights: the "reverse" model on a source is the original model on its reversal."""
    batch = make_batch(toy_examples(6, seed=4))
    torch.manual_seed(0)
    original = build_model(tiny_config("lstm")).eval()
    backwards = build_model(tiny_config("lstm:reverse")).eval()
    backwards.load_state_dict(original.state_dict())
    flipped = reverse_padded(batch.src, batch.src_lengths)
    with torch.no_grad():
        a, _ = backwards(batch.src, batch.src_lengths, batch.trg_in)
        b, _ = original(flipped, batch.src_lengths, batch.trg_in)
        c, _ = original(batch.src, batch.src_lengths, batch.trg_in)
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c, atol=1e-3)


def test_the_context_variant_reads_the_encoder_state_at_every_step(tiny_config) -> None:
    model = build_model(tiny_config("rnn:context"))
    E, H, V = model.config.embed_dim, model.config.hidden_dim, model.config.trg_vocab_size
    assert model.decoder.input_size == E + H and model.out.in_features == 2 * H and model.out.out_features == V
    assert build_model(tiny_config("rnn")).out.in_features == H

