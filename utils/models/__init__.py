"""The sequence-to-sequence models, one interface for all (``base.Seq2SeqModel``), one file per
family: ``recurrent`` (RNN, LSTM), ``attention`` (Bahdanau attention, the attention and copy models),
``transformer``. Each family keeps its decoder state in a dataclass of its own. The CPU training
shortcut to the same loss lives apart, in ``utils.fast``."""
from __future__ import annotations

from utils.config import Seq2SeqConfig
from utils.models.attention import AttentionSeq2Seq, AttentionState, BahdanauAttention, CopyAttentionSeq2Seq
from utils.models.base import Seq2SeqModel, State, teacher_forcing_mask
from utils.models.recurrent import LSTMSeq2Seq, RecurrentSeq2Seq, RecurrentState, VanillaRNNSeq2Seq
from utils.models.transformer import (
    LayerCache,
    TransformerDecoderLayer,
    TransformerSeq2Seq,
    TransformerState,
    sinusoidal_positions,
)

__all__ = ["MODEL_CLASSES", "AttentionSeq2Seq", "AttentionState", "BahdanauAttention", "CopyAttentionSeq2Seq",
           "LSTMSeq2Seq", "LayerCache", "RecurrentSeq2Seq", "RecurrentState", "Seq2SeqModel", "State",
           "TransformerDecoderLayer", "TransformerSeq2Seq", "TransformerState", "VanillaRNNSeq2Seq", "build_model",
           "sinusoidal_positions", "teacher_forcing_mask"]

MODEL_CLASSES: dict[str, type[Seq2SeqModel]] = {
    "rnn": VanillaRNNSeq2Seq,
    "lstm": LSTMSeq2Seq,
    "attention": AttentionSeq2Seq,
    "copy": CopyAttentionSeq2Seq,
    "transformer": TransformerSeq2Seq,
}


def build_model(config: Seq2SeqConfig) -> Seq2SeqModel:
    """Instantiate the model named by ``config.model``."""
    if config.src_vocab_size <= 4 or config.trg_vocab_size <= 4:
        raise ValueError("Vocabulary sizes must be set in the config (src_vocab_size, trg_vocab_size).")
    try:
        cls = MODEL_CLASSES[config.model]
    except KeyError:
        raise ValueError(f"Unknown model {config.model!r}; choose one of {', '.join(MODEL_CLASSES)}.") from None
    return cls(config)
