"""The encoder-decoder without attention: a vanilla RNN or an LSTM, the decoder started from the
encoder's final state (Sutskever et al., 2014).

Two variants (``Seq2SeqConfig.recurrent_variant``) ask how such a model can be made to read its
docstring when all it learns of it must pass through one state:
- "reverse": the docstring is read last word first (Sutskever et al., 2014), so its first words,
  which tend to say what the function does, are the encoder's last: close to the decoder's start;
- "context": the encoder's final state (its top layer's h) is also fed to every decoder step, beside
  the previous token, and to the output layer (Cho et al., 2014), so the decoder cannot forget it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.data.vocabulary import PAD
from utils.models.base import Hidden, Seq2SeqModel, run_packed, select_hidden


@dataclass
class RecurrentState:
    """The decoder's recurrent state: all the decoder knows of the docstring."""

    hidden: Hidden                 # [L, B, H]; (h, c) for an LSTM
    context: Tensor | None = None  # [B, H] the encoder's summary, read at every step ("context" variant)

    def select(self, rows: Tensor) -> "RecurrentState":
        context = None if self.context is None else self.context.index_select(0, rows)
        return RecurrentState(select_hidden(self.hidden, rows), context)


def reverse_padded(src: Tensor, lengths: Tensor) -> Tensor:
    """Each row's first ``lengths`` tokens in reverse order, padding left where it is: src [B, S] -> [B, S]."""
    positions = torch.arange(src.size(1), device=src.device)                 # [S]
    lengths = lengths.to(src.device).unsqueeze(1)                            # [B, 1]
    index = (lengths - 1 - positions).clamp_min(0)                           # [B, S]
    return torch.where(positions < lengths, src.gather(1, index), src)


class RecurrentSeq2Seq(Seq2SeqModel):
    """Encoder RNN -> final hidden state -> decoder RNN (no attention). ``cell`` is rnn or lstm."""

    cell = "rnn"

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM}[self.cell]
        drop = c.dropout if c.num_layers > 1 else 0.0  # between layers
        self.feeds_context = c.recurrent_variant == "context"
        context = c.hidden_dim if self.feeds_context else 0  # what every step reads besides the token
        self.src_embedding = nn.Embedding(c.source_symbols, c.embed_dim, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, c.embed_dim, padding_idx=PAD)
        self.encoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.decoder = rnn(c.embed_dim + context, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim + context, c.trg_vocab_size)

    def source_order(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        """The order the encoder reads the docstring in: reversed for the "reverse" variant."""
        return reverse_padded(src, src_lengths) if self.config.recurrent_variant == "reverse" else src

    def start_state(self, hidden: Hidden) -> RecurrentState:
        """The decoder's first state from the encoder's final one [L, B, H] (and the context it feeds)."""
        top = (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]  # [B, H]
        return RecurrentState(hidden, top if self.feeds_context else None)

    def encode(self, src: Tensor, src_lengths: Tensor) -> RecurrentState:
        """The encoder's final hidden state (per layer) starts the decoder."""
        src = self.source_order(src, src_lengths)
        emb = self.dropout(self.src_embedding(src))            # [B, S, E]
        _, hidden = run_packed(self.encoder, emb, src_lengths)  # [L, B, H] (h and c for an LSTM)
        return self.start_state(hidden)

    def decode_step(self, y_prev: Tensor, state: RecurrentState) -> tuple[Tensor, RecurrentState, None]:
        """h_t = RNN(embed(y_{t-1}), h_{t-1});  scores = W_out h_t + b. The "context" variant reads the
        encoder's summary c at both: h_t = RNN([embed(y_{t-1}); c], h_{t-1});  scores = W_out [h_t; c] + b."""
        emb = self.dropout(self.trg_embedding(y_prev))               # [B, E]
        if state.context is not None:
            emb = torch.cat([emb, state.context], -1)                # [B, E + H]
        out, hidden = self.decoder(emb.unsqueeze(1), state.hidden)   # [B, 1, H], [L, B, H]
        features = out[:, 0]                                         # [B, H]
        if state.context is not None:
            features = torch.cat([features, state.context], -1)      # [B, 2H]
        return self.out(features), RecurrentState(hidden, state.context), None  # [B, V]


class VanillaRNNSeq2Seq(RecurrentSeq2Seq):
    """``nn.RNN`` encoder and decoder; the decoder starts from the encoder's final hidden state."""

    cell = "rnn"


class LSTMSeq2Seq(RecurrentSeq2Seq):
    """``nn.LSTM`` encoder and decoder; hidden and cell state passed on."""

    cell = "lstm"
