"""The encoder-decoder without attention: a vanilla RNN or an LSTM, the decoder started from the
encoder's final state."""
from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from utils.config import Seq2SeqConfig
from utils.layers import (
    Dropout,
    LoopEmbedding,
)
from utils.models.base import DecoderRun, DecoderState, Seq2SeqModel, _rnn_class
from utils.recurrent import StackWeights, first_rows, run_encoder, stack_hidden
from utils.vocabulary import PAD


class RecurrentSeq2Seq(Seq2SeqModel):
    """Encoder RNN -> final hidden state -> decoder RNN (no attention). ``cell`` is rnn or lstm."""

    cell = "rnn"

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        rnn = _rnn_class(self.cell)
        drop = c.dropout if c.num_layers > 1 else 0.0
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.embed_dim, padding_idx=PAD)
        self.trg_embedding = nn.Embedding(c.trg_vocab_size, c.embed_dim, padding_idx=PAD)
        self.encoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.decoder = rnn(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.dropout = Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.trg_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """The encoder's final hidden state (per layer) starts the decoder."""
        emb = self.dropout(self.src_embedding(src))  # [B, S, E]
        _, hidden = run_encoder(self.encoder, emb, src_lengths, self.dropout)  # [L, B, H] (x2 for LSTM)
        return DecoderState(hidden=hidden, src_mask=src != PAD)

    def decode_step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, None]:
        """One step of the decoder stack, then the output layer; no attention."""
        w = self._decoding_weights(lambda: StackWeights.of_module(self.decoder))
        emb = self.dropout(self.trg_embedding(y_prev))  # [B, E]
        out, hidden = w.step(w.input_gates(emb), state.hidden, self.dropout)  # [B, H]
        return self.out(out), replace(state, hidden=stack_hidden(hidden)), None

    def _run_decoder(self, state, trg_in, tf, active, predict):
        T = trg_in.size(1)
        w = StackWeights.of_module(self.decoder)
        emb_all = self.dropout(self.trg_embedding(trg_in))  # [B, T, E]
        # layer 0's input products for every teacher-forced step at once; unbind (not per-step
        # slicing) so that backward stacks the step gradients once
        gate_steps = w.input_gates(emb_all).unbind(1)      # T x [B, G]
        lookup = LoopEmbedding(self.trg_embedding)          # for the predicted tokens
        hidden = state.hidden
        outs = []
        pred: Tensor | None = None
        for t in range(T):
            n = active[t]
            if n == 0:
                break
            hidden = first_rows(hidden, n)
            if tf[t] or pred is None:
                gates0 = gate_steps[t][:n]
            else:
                gates0 = w.input_gates(self.dropout(lookup(pred[:n])))
            out, hidden = w.step(gates0, hidden, self.dropout)  # [n, H]
            outs.append(out)
            if t + 1 < T and not tf[t + 1]:
                pred = predict(out, t, None)
        return DecoderRun(outs)


class VanillaRNNSeq2Seq(RecurrentSeq2Seq):
    """``nn.RNN`` encoder and decoder; the decoder starts from the encoder's final hidden state."""

    cell = "rnn"


class LSTMSeq2Seq(RecurrentSeq2Seq):
    """``nn.LSTM`` encoder and decoder; hidden and cell state passed on."""

    cell = "lstm"
