"""Generate Python functions from docstrings with a trained checkpoint.

Works for every model of ``utils.models`` through its generic interface (``encode``/``decode_step``
via ``utils.decoding.decode_batch``), so new models need no change here. The checkpoint carries the
configuration and both vocabularies; a vocabulary file may be passed to check that it is the one the
model was trained with. Loaded models are cached (keyed by resolved path, modification time, size
and device), so repeated calls do not read the checkpoint again. Generated code is only ever
returned as text: nothing here executes it.

The docstring goes through the same preparation as the training data: its first paragraph (the
summary, ``utils.data.tokenizer.docstring_summary``) is tokenized with ``utils.data.tokenizer.tokenize_docstring``
and cut to the model's source limit (``config.max_src_len`` tokens, with a warning). Words outside
the source vocabulary become ``<UNK>`` (the copy model can still copy them into the code).

A "+retrieval" model also reads the training function whose docstring is most similar, from the
``retrieval_db.json`` saved beside its checkpoint (``utils.data.retrieval_database``); ``retrieve`` says
which one it started from. A docstring that shares no word with any training docstring gets none.
"""
from __future__ import annotations

import functools
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

import utils.checkpoint as _checkpoint
from utils.checkpoint import CheckpointError, LoadedModel
from utils.config import resolve_device
from utils.data import (
    DATABASE_FILE,
    SEPARATOR,
    SPECIALS,
    UNK,
    Example,
    RetrievalDatabase,
    Retrieved,
    Vocabulary,
    detokenize,
    docstring_summary,
    encode_source,
    join_pieces,
    make_batch,
    merge_attention,
    tokenize_docstring,
)
from utils.decoding import check_length_penalty, decode_batch, ids_to_tokens
from utils.paths import project_path, user_path
from utils.precision import autocast, check_precision, resolve_precision

__all__ = [
    "AttentionResult", "CheckpointError", "LoadedModel", "Retrieved", "batch_generate", "clear_cache",
    "generate_code", "generate_with_attention", "load_generator", "plot_attention", "resolve_model_path",
    "retrieve",
]

EMPTY_DOCSTRING = "docstring is empty: describe the function to generate"


# ----------------------------------------------------------------------------------------------- results

@dataclass
class AttentionResult:
    """One generation with its attention: rows are generated tokens, columns the source tokens.

    ``source_tokens`` are exactly the encoder's input: ``<SOS>``, the docstring tokens the model saw
    (unknown words shown as themselves; ``source_unknown`` flags them), for a retrieval model
    ``<SEP>`` and the retrieved function's tokens, then ``<EOS>``. ``attention`` is
    ``[len(tokens), len(source_tokens)]``, or None for models without attention.
    """

    code: str
    tokens: list[str]
    source_tokens: list[str]
    attention: np.ndarray | None
    model: str = ""
    source_unknown: list[bool] = field(default_factory=list)
    retrieved: Retrieved | None = None  # the training function a retrieval model started from


@dataclass
class _Prepared:
    tokens: list[str]      # docstring tokens as the model sees them (after the cut)
    symbols: list[str]     # the same as the encoder reads them: tokens, or BPE pieces
    example: Example
    retrieved: Retrieved | None = None
    retrieved_symbols: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- checks

def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def _check_docstring(docstring: object, where: str = "docstring") -> str:
    if docstring is None or (isinstance(docstring, str) and not docstring.strip()):
        raise ValueError(EMPTY_DOCSTRING.replace("docstring", where, 1))
    if not isinstance(docstring, str):
        raise TypeError(f"{where} must be a str, got {type(docstring).__name__}.")
    return docstring


def _check_path(name: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise TypeError(f"{name} must be a file path (str or Path), got {value!r}.")
    return user_path(value)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """Where ``path`` points: as given when it exists from the working directory (or is absolute),
    else relative to the repository root (so ``checkpoints/attention_best.pt`` works from anywhere)."""
    return _check_path("model_path", path)


# Beam search's default length penalty: the value notebook 03 chose on validation rows for 7 of the 10
# model/decoding pairs of the full run, within 0.1 BLEU of the chosen 2 for the other three
# (plots/length_penalty.csv). With 1.0, beam outputs came out 34-54% as long as the references and
# lost BLEU to the brevity penalty.
LENGTH_PENALTY = 3.0
# The arithmetic the README's table was scored in (notebook 03's decode_precision): a user gets what it
# measured unless told otherwise ("auto" is bf16 on a CPU with native bf16, a little faster).
DECODE_PRECISION = "fp32"


def _decode_options(beam_size: int, max_length: int, syntax_aware: bool, length_penalty: float = LENGTH_PENALTY,
                    precision: str = DECODE_PRECISION) -> dict:
    if max_length is not None:
        _check_int("max_length", max_length)
    _check_int("beam_size", beam_size)
    check_precision(precision)
    return {"beam_size": int(beam_size), "max_len": None if max_length is None else int(max_length),
            "syntax_aware": bool(syntax_aware),
            "length_penalty": check_length_penalty(length_penalty),  # checked before any model is loaded
            "precision": precision}


# ----------------------------------------------------------------------------------------------- loading

@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int, device: str) -> LoadedModel:
    try:
        ckpt = _checkpoint.load_checkpoint(path, device)
    except CheckpointError:
        raise
    except Exception as e:  # torch.load can fail in other ways on arbitrary bytes (e.g. KeyError)
        raise CheckpointError(f"Checkpoint {path} cannot be read (truncated, or not a checkpoint of this "
                              f"project): {type(e).__name__}.") from None
    return LoadedModel.from_checkpoint(ckpt, path, device)


@functools.lru_cache(maxsize=16)
def _read_vocab(path: str, mtime_ns: int, size: int) -> Vocabulary:
    return Vocabulary.load(path)


@functools.lru_cache(maxsize=4)
def _read_database(path: str, mtime_ns: int, size: int) -> RetrievalDatabase:
    return RetrievalDatabase.load(path)


def _database(loaded: LoadedModel) -> RetrievalDatabase | None:
    """The retrieval database beside a "+retrieval" model's checkpoint (None for other models)."""
    if loaded.model.config.retrieval_input == "none":
        return None
    path = loaded.path.parent / DATABASE_FILE
    if not path.is_file():
        RetrievalDatabase.load(path, loaded.src_vocab)  # raises, naming the file and the command
    st = path.stat()
    db = _read_database(str(path), st.st_mtime_ns, st.st_size)
    db.check(loaded.src_vocab, path)
    return db


def clear_cache() -> None:
    """Forget every loaded checkpoint (frees their memory; the next call reads the file again)."""
    _load_cached.cache_clear()
    _read_vocab.cache_clear()
    _read_database.cache_clear()


def load_generator(model_path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> LoadedModel:
    """Load (or take from the cache) the model of ``model_path``; check ``vocab_path`` against it.

    ``vocab_path`` may be the source (``src_vocab.json``) or the target (``trg_vocab.json``)
    vocabulary written by ``Vocabulary.save``; it must equal the checkpoint's corresponding one.
    Raises ``CheckpointError`` (a ValueError) for a missing, unreadable or mismatching checkpoint.
    """
    path = _check_path("model_path", model_path)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if not path.is_file():  # let the checkpoint module word it (with the training hint)
        _checkpoint.load_checkpoint(path, dev)
    st = path.stat()
    loaded = _load_cached(str(path), st.st_mtime_ns, st.st_size, str(dev))
    if vocab_path is not None:
        vpath = _check_path("vocab_path", vocab_path)
        if not vpath.is_file():
            raise FileNotFoundError(f"No vocabulary file at {vpath}; leave vocab_path out to use the "
                                    "vocabularies saved in the checkpoint.")
        vst = vpath.stat()
        given = _read_vocab(str(vpath), vst.st_mtime_ns, vst.st_size)
        if given != loaded.trg_vocab and given != loaded.src_vocab:
            raise CheckpointError(
                f"Vocabulary {vpath} ({len(given)} tokens) matches neither the source ({len(loaded.src_vocab)} "
                f"tokens) nor the target ({len(loaded.trg_vocab)} tokens) vocabulary of checkpoint {path}; "
                "use the vocabulary saved with the checkpoint, or leave vocab_path out.")
    return loaded


# ----------------------------------------------------------------------------------------------- preparing

def _docstring_tokens(docstring: str) -> list[str]:
    tokens = tokenize_docstring(docstring_summary(docstring))
    if not tokens:  # only whitespace of some exotic kind: nothing for the encoder to read
        tokens = tokenize_docstring(docstring)
    return tokens


def _known(vocab: Vocabulary, token: str) -> bool:
    """Whether the encoder reads ``token`` as itself (a subword vocabulary: spelled without <UNK>)."""
    return vocab.splitter().spells(token) if vocab.is_subword else token in vocab


def _source_length(loaded: LoadedModel, tokens: list[str]) -> int:
    """How many source symbols (tokens, or BPE pieces) the docstring's tokens make."""
    return len(loaded.src_vocab.symbols(tokens))


def _prepare(loaded: LoadedModel, tokens: list[str], index: int) -> _Prepared:
    symbols = loaded.src_vocab.symbols(tokens)[: loaded.max_src_len]
    tokens = join_pieces(symbols) if loaded.src_vocab.is_subword else symbols
    db = _database(loaded)
    found = db.nearest(tokens) if db is not None else None
    retrieved = loaded.src_vocab.symbols(found.code_tokens) if found is not None else None
    ex = encode_source(symbols, retrieved, loaded.src_vocab, loaded.trg_vocab,
                       with_copy=getattr(loaded.model, "uses_copy", False))
    ex.index = index
    return _Prepared(tokens, symbols, ex, found, retrieved or [])


def _warn_long(n_tokens: int, limit: int, where: str = "the docstring") -> None:
    warnings.warn(f"{where} has {n_tokens} tokens, more than the model's source limit of {limit}; "
                  f"only the first {limit} are used.", UserWarning, stacklevel=3)


def _output_tokens(ids: Sequence[int], trg_vocab: Vocabulary, src_oov: list[str] | None) -> list[str]:
    """One token per generated id (copied words for the copy model's extended ids)."""
    out = []
    for i in ids:
        t = ids_to_tokens([int(i)], trg_vocab, src_oov)
        out.append(t[0] if t else (trg_vocab.itos[i] if 0 <= i < len(trg_vocab) else SPECIALS[UNK]))
    return out


def _decode(loaded: LoadedModel, prepared: Sequence[_Prepared], options: dict):
    options = dict(options)
    precision = resolve_precision(options.pop("precision"), loaded.device)  # whatever it was trained in
    batch = make_batch([p.example for p in prepared]).to(loaded.device)
    with autocast(precision, loaded.device):
        return decode_batch(loaded.model, batch, trg_vocab=loaded.trg_vocab, **options)


def _fit_max_length(loaded: LoadedModel, options: dict) -> dict:
    """``max_length`` None: the model's own target limit (``config.max_trg_len`` symbols). The
    Transformer cannot decode past its position table: cap ``max_length`` there, with a warning."""
    if options["max_len"] is None:
        options = {**options, "max_len": int(loaded.model.config.max_trg_len)}
    limit = loaded.max_trg_len
    if limit is not None and options["max_len"] > limit:
        warnings.warn(f"max_length {options['max_len']} is more than the '{loaded.name}' model can generate "
                      f"(max_positions={limit}); using {limit}.", UserWarning, stacklevel=3)
        options = {**options, "max_len": limit}
    return options


# ----------------------------------------------------------------------------------------------- API

def generate_code(docstring: str, model_path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
                  max_length: int | None = None, device: str | torch.device = "cpu", beam_size: int = 1,
                  syntax_aware: bool = False, length_penalty: float = LENGTH_PENALTY,
                  precision: str = DECODE_PRECISION) -> str:
    """Generate the Python source (indented, newline-terminated) of a function described by ``docstring``.

    ``max_length`` caps the generated symbols (None: the model's own limit, 80 tokens or 160 BPE
    pieces for the full run's models); ``beam_size`` 1 is greedy decoding; beam search ranks
    finished hypotheses by log-probability / ((5 + length) / 6) ** ``length_penalty``; ``precision``
    is the arithmetic ("fp32", the table's and the default, "bf16" or "auto", see ``utils.precision``),
    whatever the model was trained in.
    """
    return generate_with_attention(docstring, model_path, vocab_path, max_length, device, beam_size,
                                   syntax_aware=syntax_aware, length_penalty=length_penalty, precision=precision).code


def generate_with_attention(docstring: str, model_path: str | os.PathLike,
                            vocab_path: str | os.PathLike | None = None, max_length: int | None = None,
                            device: str | torch.device = "cpu", beam_size: int = 1,
                            syntax_aware: bool = False, length_penalty: float = LENGTH_PENALTY,
                            precision: str = DECODE_PRECISION) -> AttentionResult:
    """Like ``generate_code``, also returning the tokens and the attention matrix (see ``AttentionResult``)."""
    docstring = _check_docstring(docstring)
    options = _decode_options(beam_size, max_length, syntax_aware, length_penalty, precision)
    loaded = load_generator(model_path, vocab_path, device)
    options = _fit_max_length(loaded, options)
    tokens = _docstring_tokens(docstring)
    if not tokens:
        raise ValueError(EMPTY_DOCSTRING)
    if _source_length(loaded, tokens) > loaded.max_src_len:
        _warn_long(_source_length(loaded, tokens), loaded.max_src_len)
    prep = _prepare(loaded, tokens, 0)
    hyp = _decode(loaded, [prep], options)
    pieces = _output_tokens(hyp.tokens[0], loaded.trg_vocab, prep.example.src_oov)
    out = join_pieces(pieces)
    found = prep.retrieved
    after = [SEPARATOR, *found.code_tokens] if found is not None else []
    source = ["<SOS>", *prep.tokens, *after, "<EOS>"]
    attention = None
    if getattr(loaded.model, "has_attention", False):
        a = hyp.attention[0] if hyp.attention else None
        if a is None:  # nothing generated
            attention = np.zeros((len(out), len(source)), dtype=np.float32)
        else:
            src_symbols = ["<SOS>", *prep.symbols, *([SEPARATOR, *prep.retrieved_symbols] if found else []),
                           "<EOS>"]
            attention = a.detach().float().cpu().numpy()[:, : len(src_symbols)]
            if loaded.trg_vocab.is_subword:  # rows and columns merged to tokens (pieces' weights summed)
                attention = merge_attention(attention, pieces, src_symbols)
    return AttentionResult(code=detokenize(out), tokens=out, source_tokens=source, attention=attention,
                           model=loaded.name, retrieved=found,
                           source_unknown=[False, *(not _known(loaded.src_vocab, t) for t in prep.tokens),
                                           *(False for _ in after), False])


def retrieve(docstring: str, model_path: str | os.PathLike, device: str | torch.device = "cpu") -> Retrieved | None:
    """The training function a "+retrieval" model starts from for ``docstring`` (index None and no
    code when no training docstring shares a word with it); None for a model that reads no retrieved code."""
    docstring = _check_docstring(docstring)
    loaded = load_generator(model_path, None, device)
    tokens = _docstring_tokens(docstring)
    if not tokens:
        raise ValueError(EMPTY_DOCSTRING)
    return _prepare(loaded, tokens, 0).retrieved


def batch_generate(docstrings: Iterable[str], model_path: str | os.PathLike,
                   vocab_path: str | os.PathLike | None = None, max_length: int | None = None,
                   device: str | torch.device = "cpu", beam_size: int = 1, batch_size: int = 64,
                   syntax_aware: bool = False, length_penalty: float = LENGTH_PENALTY,
                   precision: str = DECODE_PRECISION) -> list[str]:
    """``generate_code`` for many docstrings, decoded in length-sorted batches; results keep the input order.

    Every docstring is checked before any decoding: a bad one raises naming its index.
    """
    if isinstance(docstrings, (str, bytes)) or not isinstance(docstrings, Iterable):
        raise TypeError("docstrings must be a list of str; for a single docstring use generate_code.")
    texts = [_check_docstring(d, f"docstring {i}") for i, d in enumerate(list(docstrings))]
    options = _decode_options(beam_size, max_length, syntax_aware, length_penalty, precision)
    _check_int("batch_size", batch_size)
    loaded = load_generator(model_path, vocab_path, device)
    options = _fit_max_length(loaded, options)
    if not texts:
        return []
    all_tokens = [_docstring_tokens(t) for t in texts]
    long = [i for i, t in enumerate(all_tokens) if _source_length(loaded, t) > loaded.max_src_len]
    if long:
        shown = ", ".join(map(str, long[:10])) + (", ..." if len(long) > 10 else "")
        warnings.warn(f"{len(long)} docstring(s) (index {shown}) have more tokens than the model's source "
                      f"limit of {loaded.max_src_len}; only the first {loaded.max_src_len} tokens are used.",
                      UserWarning, stacklevel=2)
    prepared = [_prepare(loaded, t, i) for i, t in enumerate(all_tokens)]
    order = sorted(range(len(prepared)), key=lambda i: len(prepared[i].tokens))
    codes: list[str] = [""] * len(prepared)
    for start in range(0, len(order), batch_size):
        chunk = [prepared[i] for i in order[start : start + batch_size]]
        hyp = _decode(loaded, chunk, options)
        for k, p in enumerate(chunk):  # decode_batch returns rows in batch order
            pieces = _output_tokens(hyp.tokens[k], loaded.trg_vocab, p.example.src_oov)
            codes[p.example.index] = detokenize(join_pieces(pieces))
    return codes


# ----------------------------------------------------------------------------------------------- plot

def _label(token: str) -> str:
    """Control characters escaped so that a tick label shows them instead of breaking the text layout."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in token)


def plot_attention(result: AttentionResult, path: str | os.PathLike):
    """Save ``result``'s attention as a heatmap PNG (rows: generated tokens, columns: source tokens).

    Drawn by ``utils.evaluation.plotting.plot_attention_heatmap``; relative paths resolve against the repository
    root (like every figure of the project). Returns the matplotlib Figure.
    """
    if not isinstance(result, AttentionResult):
        raise TypeError("plot_attention needs the AttentionResult of generate_with_attention, "
                        f"got {type(result).__name__}.")
    if result.attention is None:
        raise ValueError(f"The '{result.model or 'given'}' model has no attention, so there is no heatmap to plot; "
                         "use a model with attention (e.g. --model attention).")
    if result.attention.shape[0] == 0:
        raise ValueError("The model generated no tokens for this docstring, so there is no attention to plot.")
    from utils.evaluation import plot_attention_heatmap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")  # emoji, CJK: drawn as boxes
        return plot_attention_heatmap(result.attention, [_label(t) for t in result.tokens],
                                      [_label(t) for t in result.source_tokens], project_path(path),
                                      max_label_chars=30)
