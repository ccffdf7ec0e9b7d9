"""Decoding: turning a trained model and a docstring into code, one token (or piece) at a time.

``search`` holds batched greedy decoding and beam search (with its length penalty) for every model,
``decode_batch`` choosing between them and ``decode_examples`` running them over a split, and
``ids_to_tokens`` turns the ids back into tokens. Syntax-aware decoding masks, at every step, the
tokens that cannot lead to valid Python: ``syntax_constraints`` is the state machine over the token
stream, ``syntax_rules`` the token classes and the masks they give, and ``piece_syntax`` the same
rules over BPE pieces. ``rerank`` is the combined system: candidates from the nearest training
functions and the beams' finished hypotheses, scored by teacher forcing (the forward model, the
reviewer) and chosen by fitted weights. Decoding reads the data and the models; it imports neither
training nor evaluation.
"""
from __future__ import annotations

from utils.decoding.search import check_length_penalty, decode_batch, ids_to_tokens

__all__ = ["check_length_penalty", "decode_batch", "ids_to_tokens"]
