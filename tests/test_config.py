"""The configuration: model names from lists or strings, per-model overrides, round trips, devices."""
from __future__ import annotations

import pytest
import torch

from utils.config import (
    LR_REFERENCE_TOKENS,
    MIN_WARMUP,
    MODEL_NAMES,
    MODEL_OVERRIDES,
    REVIEWER,
    Seq2SeqConfig,
    make_config,
    model_names,
    resolve_device,
    resolve_fast_path,
)


@pytest.mark.parametrize("given, expected", [
    (["rnn", "copy"], ["rnn", "copy"]),
    ("attention", ["attention"]),
    ("rnn,lstm", ["rnn", "lstm"]),
    ("rnn lstm", ["rnn", "lstm"]),
    ('["rnn", "transformer"]', ["rnn", "transformer"]),  # what `papermill -p models '[...]'` passes
])
def test_model_names_from_lists_and_strings(given, expected) -> None:
    assert model_names(given) == expected


@pytest.mark.parametrize("bad", ["", "gru", ["rnn", "gru"], []])
def test_model_names_reject_unknown_or_empty(bad) -> None:
    with pytest.raises(ValueError, match="choose from rnn, lstm"):
        model_names(bad)


def test_unknown_model_in_config() -> None:
    with pytest.raises(ValueError, match="Unknown model 'gru'"):
        Seq2SeqConfig(model="gru")


@pytest.mark.parametrize("bad, message", [
    ({"teacher_forcing_schedule": "cosine"}, "Unknown teacher_forcing_schedule 'cosine'; use 'constant' or 'linear'"),
    ({"lr_schedule": "step"}, "Unknown lr_schedule 'step'; use 'constant' or 'plateau' or 'inverse_sqrt'"),
    ({"lr_schedule": "inverse_sqrt"}, "lr_schedule='inverse_sqrt' needs warmup_steps of at least 1"),
    ({"batch_tokens": -5}, "batch_tokens must be 0 .batches of batch_size sequences. or positive, got -5"),
    ({"teacher_forcing": 1.5}, "teacher_forcing must lie in"),
    ({"label_smoothing": 1.0}, "label_smoothing in"),
    ({"fast_path": "yes"}, "Unknown fast_path 'yes'; use 'auto', 'on' or 'off'"),
    ({"recurrent_variant": "bidirectional"}, "Unknown recurrent_variant 'bidirectional'; use 'original' or"),
    ({"model": "attention", "recurrent_variant": "reverse"}, "is for the RNN and the LSTM, not 'attention'"),
])
def test_bad_training_recipe_settings(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        Seq2SeqConfig(**bad)


def test_make_config_applies_shared_parameters_then_overrides() -> None:
    shared = {"hidden_dim": 32, "teacher_forcing": 0.5, "dropout": 0.4, "not_a_field": 1}
    lstm = make_config("lstm", **shared)
    assert (lstm.model, lstm.hidden_dim, lstm.teacher_forcing, lstm.dropout) == ("lstm", 32, 0.5, 0.4)
    tf = make_config("transformer", **shared)
    assert tf.hidden_dim == 32
    for key, value in MODEL_OVERRIDES["transformer"].items():
        assert getattr(tf, key) == value
    assert set(MODEL_NAMES) >= set(MODEL_OVERRIDES)


def test_config_round_trip_ignores_unknown_keys() -> None:
    cfg = make_config("copy", hidden_dim=48, epochs=3)
    d = cfg.to_dict()
    assert Seq2SeqConfig.from_dict(d) == cfg
    assert Seq2SeqConfig.from_dict({**d, "from_a_newer_version": True}) == cfg


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(ValueError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_fast_path() -> None:
    """"auto": the fast path on a CPU only; "on" and "off" whatever the device."""
    assert Seq2SeqConfig().fast_path == "auto"
    assert resolve_fast_path("auto", "cpu") and resolve_fast_path("auto", torch.device("cpu"))
    assert not resolve_fast_path("auto", "cuda")  # a device name: no GPU needed to resolve it
    assert resolve_fast_path("on", "cuda") and resolve_fast_path("on", "cpu")
    assert not resolve_fast_path("off", "cpu") and not resolve_fast_path("off", "cuda")
    with pytest.raises(ValueError, match="Unknown fast_path 'fast'"):
        resolve_fast_path("fast", "cpu")


def test_learning_rate_scales_with_the_square_root_of_the_token_batch() -> None:
    assert Seq2SeqConfig(lr=3e-3).learning_rate == 3e-3  # batches of sequences: the rate as given
    assert Seq2SeqConfig(lr=3e-3, batch_tokens=LR_REFERENCE_TOKENS).learning_rate == pytest.approx(3e-3)
    assert Seq2SeqConfig(lr=3e-3, batch_tokens=4 * LR_REFERENCE_TOKENS).learning_rate == pytest.approx(6e-3)


def test_the_transformer_warms_up_at_least_its_minimum() -> None:
    assert make_config("transformer").warmup_steps == MIN_WARMUP["transformer"]
    assert make_config("transformer", warmup_steps=1000).warmup_steps == 1000  # a longer shared warmup stands
    assert make_config("attention", warmup_steps=50).warmup_steps == 50


def test_a_shared_recurrent_variant_applies_to_the_rnn_and_the_lstm_only() -> None:
    shared = {"recurrent_variant": "context", "hidden_dim": 32}
    assert make_config("rnn", **shared).recurrent_variant == "context"
    assert make_config("lstm", **shared).recurrent_variant == "context"
    assert make_config("attention", **shared).recurrent_variant == "original"
    assert make_config("transformer", **shared).recurrent_variant == "original"


def test_per_model_settings_come_last_and_are_checked() -> None:
    shared = {"lr": 0.01, "dropout": 0.3, "per_model": {"transformer": {"lr": 0.006, "dropout": 0.2},
                                                          "copy+retrieval": {"lr": 0.004}, "copy": {"lr": 0.005}}}
    assert make_config("rnn", **shared).lr == 0.01
    tf = make_config("transformer", **shared)
    assert (tf.lr, tf.dropout) == (0.006, 0.2)  # over the shared value and the model's own override
    assert make_config("copy", **shared).lr == 0.005
    assert make_config("copy+retrieval", **shared).lr == 0.004  # its own name before the model's
    with pytest.raises(ValueError, match="per_model: 'gru' is not a model name"):
        make_config("rnn", per_model={"gru": {"lr": 0.1}})
    with pytest.raises(ValueError, match="per_model: lstm has unknown settings lrate"):
        make_config("rnn", per_model={"lstm": {"lrate": 0.1}})
    with pytest.raises(ValueError, match="Unknown recurrent_variant 'sideways'"):
        make_config("lstm", per_model={"lstm": {"recurrent_variant": "sideways"}})
    with pytest.raises(ValueError, match="per_model must map model names"):
        make_config("rnn", per_model=["rnn"])



def test_the_reviewer_is_the_transformer_the_other_way_round() -> None:
    shared = {"lr": 0.01, "per_model": {"transformer": {"lr": 0.006}}, "max_src_len": 100, "max_trg_len": 160,
              "max_positions": 162, "src_vocab_size": 4000, "trg_vocab_size": 4001}
    c = make_config(REVIEWER, **shared)
    assert c.name == REVIEWER and c.model == "transformer" and c.reviews and c.source_kind == "code"
    assert (c.max_src_len, c.max_trg_len) == (160, 100)  # the code's limit in, the docstring's out
    assert (c.src_vocab_size, c.trg_vocab_size) == (4001, 4000)
    assert c.lr == 0.006 and c.warmup_steps == MIN_WARMUP["transformer"]  # trained like the Transformer
    assert make_config(REVIEWER, **{**shared, "per_model": {"reviewer": {"lr": 0.002}}}).lr == 0.002
    assert Seq2SeqConfig.from_dict(c.to_dict()) == c
    forward = make_config("transformer", **shared)
    assert not forward.reviews and forward.source_kind == "none" and forward.name == "transformer"
    with pytest.raises(ValueError, match="is for the Transformer reading code alone"):
        Seq2SeqConfig(model="lstm", direction="code_to_docstring")
    with pytest.raises(ValueError, match="Unknown direction 'sideways'"):
        Seq2SeqConfig(model="transformer", direction="sideways")
