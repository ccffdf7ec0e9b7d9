"""Subword (BPE) vocabularies: pieces inside tokens that join back exactly, saved as JSON, checked
against their vocabulary; the preprocess switch and its piece limits; models, decoding and
inference on pieces with no <UNK> in any output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from utils.checkpoint import CheckpointError, load_model, save_checkpoint
from utils.config import Seq2SeqConfig
from utils.data.batch import encode_pairs
from utils.data.processed import load_split, load_vocabs, model_lengths, preprocess
from utils.data.subwords import Subwords, join_pieces, merge_attention, token_starts
from utils.data.tokenizer import detokenize, tokenize_code
from utils.data.vocabulary import UNK, Vocabulary, known_tokens
from utils.decoding.search import decode_examples
from utils.metrics import is_valid_syntax, parse_error
from utils.models import build_model

CODE = '''def get_user_name(self, user_id=None):
    if user_id is None:
        return "unknown user"
    return self.users[user_id].name
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small BPE corpus of the standard library (60 files, 400 pieces)."""
    out = tmp_path_factory.mktemp("bpe")
    manifest = preprocess(out_dir=out, max_files=60, split_sizes=(120, 20, 20), min_freq=1,
                          vocabulary="bpe", bpe_size=400)
    return out, manifest


def test_pieces_join_back_into_the_tokens_exactly() -> None:
    sw = Subwords.train([tokenize_code(CODE)] * 3, vocab_size=120)
    tokens = tokenize_code(CODE.replace("get_user_name", "get_name_of_user"))  # a name never seen whole
    pieces = sw.split(tokens)
    assert len(pieces) > len(tokens) and any(p.startswith("##") for p in pieces)
    assert "<NEWLINE>" in pieces and "<INDENT>" in pieces  # layout tokens stay whole
    assert join_pieces(pieces) == tokens
    assert join_pieces(tokens) == tokens  # word-level outputs come back unchanged
    starts = token_starts(pieces)
    assert len(starts) == len(tokens) and starts[0] == 0
    # a character never seen in training makes its token one <UNK> piece; nothing crashes
    assert sw.split(["ünï", "\u263a", "self"]) == ["<UNK>", "<UNK>", "self"]
    assert not sw.spells("\u263a") and sw.spells("get_name_of_user")


# Random words with many equally frequent pairs: where the library breaks ties by hash-map order
# (huggingface/tokenizers#1794) two processes disagree on them (seen here: 5 of 5 runs differed).
_TRAIN_IN_A_PROCESS = """
import hashlib, random, sys
from utils.data.subwords import Subwords
rng = random.Random(0)
words = ["".join(rng.choice("abcdefgh_") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
print(hashlib.sha256(Subwords.train([words], vocab_size=300).to_json().encode()).hexdigest())
"""


def test_bpe_training_gives_the_same_model_in_every_process() -> None:
    import subprocess
    import sys

    from utils.paths import REPO_ROOT

    hashes = {subprocess.run([sys.executable, "-c", _TRAIN_IN_A_PROCESS], cwd=REPO_ROOT, check=True,
                             capture_output=True, text=True).stdout.strip() for _ in range(3)}
    assert len(hashes) == 1, hashes


def test_a_literal_continuation_mark_inside_a_token_joins_back() -> None:
    sw = Subwords.train([["'##ab'", "x", "ab", "abab"]] * 3, vocab_size=100)
    tokens = ["'##ab'", "x##a", "ab"]
    assert join_pieces(sw.split(tokens)) == tokens


def test_a_subword_vocabulary_is_json_and_checked(tmp_path) -> None:
    sw = Subwords.train([tokenize_code(CODE)] * 3, vocab_size=120)
    vocab = Vocabulary.from_subwords(sw)
    assert vocab.is_subword and vocab.itos[:4] == ["<PAD>", "<SOS>", "<EOS>", "<UNK>"]
    vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again == vocab and again.symbols(["get_user_name"]) == vocab.symbols(["get_user_name"])
    data = json.loads((tmp_path / "v.json").read_text())
    data["itos"] = data["itos"][:-1]  # the tokenizer knows one more piece than the vocabulary
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="do not match its BPE tokenizer"):
        Vocabulary.load(tmp_path / "bad.json")
    word = Vocabulary.build([["a", "b"]], min_freq=1)
    assert not word.is_subword and word.symbols(["a", "zz"]) == ["a", "zz"]
    assert "get_user_name" in known_tokens(vocab) and "\u263a" not in known_tokens(vocab)


def test_preprocess_with_bpe_counts_the_piece_limits(corpus) -> None:
    out, manifest = corpus
    assert manifest["params"]["vocabulary"] == "bpe" and manifest["vocab_sizes"] == {"src": 400, "trg": 400}
    assert manifest["max_lengths"] == {"src": 100, "trg": 160}
    steps = [s["step"] for s in manifest["filter_steps"]]
    assert steps[-2:] == ["dropped_long_docstring_pieces", "dropped_long_code_pieces"]
    src, trg = load_vocabs(out)
    assert src == trg and trg.is_subword  # one model for both sides (bpe_shared)
    rows = load_split(out, "train")
    assert all(len(trg.symbols(r["code_tokens"])) <= 160 for r in rows)
    assert model_lengths(out) == {"max_src_len": 100, "max_trg_len": 160, "max_positions": 162}
    assert manifest["unk_rate"]["train"]["trg"] == 0.0
    with pytest.raises(ValueError, match="Unknown vocabulary 'chars'; use 'word'.*or 'bpe'"):
        preprocess(out_dir=out / "x", max_files=5, vocabulary="chars")


@pytest.mark.parametrize("name", ["rnn", "attention", "copy", "transformer"])
def test_models_train_and_decode_pieces_without_unk(name, corpus, tmp_path) -> None:
    out, _ = corpus
    src, trg = load_vocabs(out)
    rows = load_split(out, "train")[:48]
    examples = encode_pairs(rows, src, trg, with_copy=True)
    assert all(e.src_oov == [] for e in examples)  # shared pieces: nothing for the copy model to extend
    torch.manual_seed(0)
    config = Seq2SeqConfig(model=name, src_vocab_size=len(src), trg_vocab_size=len(trg), embed_dim=16,
                           hidden_dim=32, num_layers=1, dropout=0.0, vocabulary="bpe", **model_lengths(out))
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    from utils.data.batch import bucketed_batches

    for batch in bucketed_batches(examples, 16, seed=0):
        loss, n = model.loss(batch, 0.5, torch.Generator().manual_seed(0))
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
    model.eval()
    for syntax in (False, True):
        hyp = decode_examples(model, examples[:8], max_len=40, beam_size=2 if syntax else 1,
                              syntax_aware=syntax, trg_vocab=trg)
        assert all(UNK not in h for h in hyp.tokens)
        if syntax:
            outputs = [join_pieces(trg.decode(h)) for h in hyp.tokens]
            # the constraint knows no names, so an untrained model may repeat a parameter ("duplicate
            # argument"); every other output parses
            errors = [str(parse_error(o)) for o in outputs if not is_valid_syntax(o)]
            assert all("duplicate argument" in e for e in errors), (errors, [detokenize(o) for o in outputs])
    path = save_checkpoint(tmp_path / f"{name}.pt", model, src, trg)
    loaded, sv, tv, _ = load_model(path)
    assert sv == src and tv == trg and sv.is_subword


def test_a_checkpoint_without_its_tokenizer_is_one_clear_error(corpus, tmp_path) -> None:
    out, _ = corpus
    src, trg = load_vocabs(out)
    config = Seq2SeqConfig(model="rnn", src_vocab_size=len(src), trg_vocab_size=len(trg), embed_dim=8,
                           hidden_dim=8, num_layers=1, vocabulary="bpe")
    path = save_checkpoint(tmp_path / "rnn.pt", build_model(config), src, trg)
    ckpt = torch.load(path, weights_only=True)
    ckpt["trg_subwords"] = None
    torch.save(ckpt, tmp_path / "no_tokenizer.pt")
    with pytest.raises(CheckpointError, match=r"no_tokenizer.pt has a BPE vocabulary but no tokenizer JSON"):
        load_model(tmp_path / "no_tokenizer.pt")
    ckpt["trg_subwords"] = ckpt["src_subwords"]
    ckpt["trg_vocab"] = ckpt["trg_vocab"][:-1]
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match=r"mismatch.pt: The vocabulary's 399 symbols do not match"):
        load_model(tmp_path / "mismatch.pt")


def test_merge_attention_sums_source_pieces_and_averages_output_pieces() -> None:
    a = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    merged = merge_attention(a, ["get_", "##name", "x"], ["<SOS>", "a", "##b"])
    assert merged.shape == (2, 2)
    assert np.allclose(merged, [[0.25, 0.75], [0.2, 0.8]]) and np.allclose(merged.sum(1), 1.0)


def test_a_subword_vocabulary_travels_to_another_process_and_splits_the_same() -> None:
    """As parallel training sends it to its workers: through a spawned process pool."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    vocab = Vocabulary.from_subwords(Subwords.train([tokenize_code(CODE)] * 3, vocab_size=120))
    tokens = tokenize_code(CODE)
    pieces = vocab.symbols(tokens)  # the splitter's cache is filled before the vocabulary travels
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(vocab.symbols, tokens).result() == pieces
