"""The encoder-decoder without attention: a vanilla RNN or an LSTM, the decoder started from the
encoder's final state (Sutskever et al., 2014)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.data.vocabulary import PAD
from utils.models.base import Hidden, Seq2SeqModel, run_packed, select_hidden


@dataclass
class RecurrentState:
    """The decoder's recurrent state: all the decoder knows of the docstring."""

    hidden: Hidden  # [L, B, H]; (h, c) for an LSTM

    def select(self, rows: Tensor) -> "RecurrentState":
        return RecurrentState(select_hidden(self.hidden, rows))


class RecurrentSeq2Seq(Seq2SeqModel):
    """Encoder RNN -> final hidden state -> decoder RNN (no attention). ``cell`` is rnn or lstm."""

    cell = "rnn"

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM}[self.cell]
        drop = c.dropout if c.num_layers > 1 else 0.0  # between layers
        self.src_embedding = nn.Embedding(c.source_symbols, c.embed_dim, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, c.embed_dim, padding_idx=PAD)
        self.encoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.decoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.trg_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> RecurrentState:
        """The encoder's final hidden state (per layer) starts the decoder."""
        emb = self.dropout(self.src_embedding(src))            # [B, S, E]
        _, hidden = run_packed(self.encoder, emb, src_lengths)  # [L, B, H] (h and c for an LSTM)
        return RecurrentState(hidden)

    def decode_step(self, y_prev: Tensor, state: RecurrentState) -> tuple[Tensor, RecurrentState, None]:
        """h_t = RNN(embed(y_{t-1}), h_{t-1});  scores = W_out h_t + b."""
        emb = self.dropout(self.trg_embedding(y_prev)).unsqueeze(1)  # [B, 1, E]
        out, hidden = self.decoder(emb, state.hidden)                # [B, 1, H], [L, B, H]
        return self.out(out[:, 0]), RecurrentState(hidden), None     # [B, V]


class VanillaRNNSeq2Seq(RecurrentSeq2Seq):
    """``nn.RNN`` encoder and decoder; the decoder starts from the encoder's final hidden state."""

    cell = "rnn"


class LSTMSeq2Seq(RecurrentSeq2Seq):
    """``nn.LSTM`` encoder and decoder; hidden and cell state passed on."""

    cell = "lstm"
