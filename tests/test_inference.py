"""Inference API and CLI on tiny checkpoints built here (one per model type, trained a few dozen steps)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inference.inference as inference_module
import utils.checkpoint
from inference import example_inference
from inference.inference import (
    AttentionResult,
    CheckpointError,
    batch_generate,
    clear_cache,
    generate_code,
    generate_with_attention,
    load_generator,
    plot_attention,
)
from utils.checkpoint import save_checkpoint
from utils.config import Seq2SeqConfig
from utils.data.batch import bucketed_batches, encode_pairs, make_batch
from utils.data.tokenizer import tokenize_code, tokenize_docstring
from utils.data.vocabulary import Vocabulary
from utils.decoding.search import beam_search, greedy_decode
from utils.models import MODEL_CLASSES, build_model

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "inference" / "example_inference.py"
EMPTY = "docstring is empty: describe the function to generate"
MODELS = sorted(MODEL_CLASSES)  # every model type known at test time (copy, transformer once they exist)
OPS = {"sum": "+", "difference": "-", "product": "*", "quotient": "/"}
NAMES = ["a", "b", "x", "y", "n", "m"]
DOC = "Return the sum of a and b."


def _toy_rows() -> list[dict]:
    rows = []
    for op, sym in OPS.items():
        for p in NAMES:
            for q in NAMES:
                if p != q:
                    doc = f"Return the {op} of {p} and {q}."
                    code = f"def f({p}, {q}):\n    return {p} {sym} {q}\n"
                    rows.append({"docstring_tokens": tokenize_docstring(doc), "code_tokens": tokenize_code(code)})
    return rows


def _train(name: str, rows, src_vocab, trg_vocab, steps: int = 60) -> torch.nn.Module:
    torch.manual_seed(0)
    config = Seq2SeqConfig(model=name, embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0,
                           src_vocab_size=len(src_vocab), trg_vocab_size=len(trg_vocab))
    model = build_model(config)
    examples = encode_pairs(rows, src_vocab, trg_vocab, with_copy=getattr(model, "uses_copy", False))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    step = 0
    while step < steps:
        for batch in bucketed_batches(examples, 32, shuffle=True, seed=step):
            loss, n = model.loss(batch, teacher_forcing=1.0)
            opt.zero_grad()
            (loss / n).backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread) -> dict:
    """Checkpoints and vocabulary files: {'dir', 'src_vocab', 'trg_vocab', <model name>: path}."""
    root = tmp_path_factory.mktemp("inference")
    rows = _toy_rows()
    # "m" is left out of the source vocabulary so that real inputs contain <UNK>.
    src_vocab = Vocabulary.build(([t for t in r["docstring_tokens"] if t != "m"] for r in rows), min_freq=1)
    trg_vocab = Vocabulary.build((r["code_tokens"] for r in rows), min_freq=1)
    out = {"dir": root, "src_vocab": root / "src_vocab.json", "trg_vocab": root / "trg_vocab.json"}
    src_vocab.save(out["src_vocab"])
    trg_vocab.save(out["trg_vocab"])
    for name in MODELS:
        model = _train(name, rows, src_vocab, trg_vocab, steps=80 if name == "attention" else 30)
        out[name] = save_checkpoint(root / f"{name}_best.pt", model, src_vocab, trg_vocab, history=[])
    return out


# ----------------------------------------------------------------------------------------------- API


@pytest.mark.parametrize("name", MODELS)
def test_generate_code_returns_source(tiny, name) -> None:
    code = generate_code(DOC, tiny[name])
    assert isinstance(code, str)
    assert code == "" or code.endswith("\n")


def test_trained_attention_model_writes_a_function(tiny) -> None:
    code = generate_code(DOC, tiny["attention"])
    assert code.startswith("def f(")
    assert "\n    return " in code  # real, indented source, not layout tokens
    assert "<NEWLINE>" not in code and "<INDENT>" not in code


@pytest.mark.parametrize("name", MODELS)
def test_batch_generate_keeps_order_and_matches_single(tiny, name) -> None:
    docs = ["Return the product of x and y.", DOC, "Return the quotient of n and m, carefully, as a float.",
            "sum", "Return the difference of b and a."]
    codes = batch_generate(docs, tiny[name], batch_size=2)
    assert codes == [generate_code(d, tiny[name]) for d in docs]
    assert batch_generate([], tiny[name]) == []


def test_cache_loads_each_checkpoint_once(tiny, monkeypatch) -> None:
    calls = []
    real = utils.checkpoint.load_checkpoint
    monkeypatch.setattr(utils.checkpoint, "load_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    clear_cache()
    generate_code(DOC, tiny["attention"])
    generate_code(DOC, str(tiny["attention"]), beam_size=2)
    batch_generate([DOC, DOC], tiny["attention"])
    assert len(calls) == 1
    st_ = os.stat(tiny["attention"])
    os.utime(tiny["attention"], ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))  # a retrained checkpoint
    generate_code(DOC, tiny["attention"])
    assert len(calls) == 2


@pytest.mark.parametrize("name", MODELS)
def test_beam_size_one_is_greedy_and_beams_work(tiny, name) -> None:
    loaded = load_generator(tiny[name])
    ex = encode_pairs([{"docstring_tokens": tokenize_docstring(DOC), "code_tokens": []}],
                      loaded.src_vocab, loaded.trg_vocab, with_copy=getattr(loaded.model, "uses_copy", False))
    batch = make_batch(ex)
    greedy = greedy_decode(loaded.model, batch, 80).tokens[0]
    assert beam_search(loaded.model, batch, beam_size=1, max_len=80).tokens[0] == greedy
    assert generate_code(DOC, tiny[name], beam_size=1) == generate_code(DOC, tiny[name])
    assert isinstance(generate_code(DOC, tiny[name], beam_size=3), str)
    assert batch_generate([DOC, "Return the product of x and y."], tiny[name], beam_size=3)[0] == \
        generate_code(DOC, tiny[name], beam_size=3)


@pytest.mark.parametrize("name", MODELS)
def test_attention_result(tiny, name, tmp_path) -> None:
    doc = "Return the sum of m and zzunknown."
    res = generate_with_attention(doc, tiny[name])
    assert isinstance(res, AttentionResult) and res.model == name
    words = tokenize_docstring(doc)
    assert res.source_tokens == ["<SOS>", *words, "<EOS>"]  # unknown words shown as themselves
    assert res.source_unknown == [False] + [w in ("m", "zzunknown") for w in words] + [False]
    assert res.code == generate_code(doc, tiny[name])
    model = load_generator(tiny[name]).model
    if not model.has_attention:
        assert res.attention is None
        with pytest.raises(ValueError, match="has no attention"):
            plot_attention(res, tmp_path / "a.png")
        return
    assert res.attention.shape == (len(res.tokens), len(words) + 2)
    if len(res.tokens):
        assert abs(float(res.attention.sum(1).mean()) - 1.0) < 1e-4
        plot_attention(res, tmp_path / "sub" / "a.png")
        assert (tmp_path / "sub" / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_odd_tokens(tmp_path) -> None:
    import numpy as np
    res = AttentionResult("x\n", ["$", "a$b", "\\"], ["<SOS>", "$x$", "\x00", "🐍", "中文", "<EOS>"],
                          np.full((3, 6), 1 / 6), "attention")
    plot_attention(res, tmp_path / "odd.png")
    assert (tmp_path / "odd.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no tokens"):
        plot_attention(AttentionResult("", [], ["<SOS>", "<EOS>"], np.zeros((0, 2)), "attention"), tmp_path / "e.png")


@pytest.mark.parametrize("bad", ["", "   \n\t ", None])
def test_empty_docstring(tiny, bad) -> None:
    with pytest.raises(ValueError, match=EMPTY):
        generate_code(bad, tiny["attention"])
    with pytest.raises(ValueError, match=EMPTY):
        generate_with_attention(bad, tiny["attention"])
    with pytest.raises(ValueError, match="docstring 1 is empty: describe the function to generate"):
        batch_generate([DOC, bad, DOC], tiny["attention"])


def test_bad_arguments(tiny) -> None:
    ck = tiny["attention"]
    with pytest.raises(TypeError, match="docstring must be a str"):
        generate_code(123, ck)
    with pytest.raises(TypeError, match="docstring 1 must be a str"):
        batch_generate([DOC, b"bytes"], ck)
    with pytest.raises(TypeError, match="list of str"):
        batch_generate(DOC, ck)
    for value in (0, -3):
        with pytest.raises(ValueError, match="max_length must be at least 1"):
            generate_code(DOC, ck, max_length=value)
    with pytest.raises(ValueError, match="beam_size must be at least 1, got 0"):
        generate_code(DOC, ck, beam_size=0)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        batch_generate([DOC], ck, batch_size=0)
    for value in (-1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="length_penalty must be a number >= 0"):
            generate_code(DOC, ck, beam_size=2, length_penalty=value)
    with pytest.raises(TypeError, match="beam_size must be an int"):
        generate_code(DOC, ck, beam_size=None)
    for value in ("80", 2.5, True):  # None is allowed: the model's own limit
        with pytest.raises(TypeError, match="max_length must be an int"):
            generate_code(DOC, ck, max_length=value)
        with pytest.raises(TypeError, match="beam_size must be an int"):
            batch_generate([DOC], ck, beam_size=value)
    with pytest.raises(TypeError, match="model_path must be a file path"):
        generate_code(DOC, None)
    with pytest.raises(ValueError, match="Unknown device"):
        generate_code(DOC, ck, device="tpu")
    assert isinstance(generate_code(DOC, ck, max_length=1), str)
    assert batch_generate(iter([DOC]), ck) == [generate_code(DOC, ck)]  # any iterable of str


def test_syntax_aware_and_length_limits(tiny) -> None:
    code = generate_code(DOC, tiny["attention"], syntax_aware=True)
    assert code.startswith("def ") and "<UNK>" not in code
    assert batch_generate([DOC], tiny["attention"], syntax_aware=True, beam_size=2) == \
        [generate_code(DOC, tiny["attention"], syntax_aware=True, beam_size=2)]
    if "transformer" in tiny:  # its position table bounds the output length
        with pytest.warns(UserWarning, match="max_positions=128"):
            assert isinstance(generate_code(DOC, tiny["transformer"], max_length=500), str)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda(tiny) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        generate_code(DOC, tiny["attention"], device="cuda")


@pytest.mark.parametrize("name", MODELS)
def test_odd_text_still_generates(tiny, name) -> None:
    for doc in ("Retourne la somme de é et ü — données 中文 🐍🐍", "ctrl \x00\x07\x1b[31m chars\x7f",
                "zzqx wvvb plorf frobnicate", "?!", "Return the sum of a and b.\n\nArgs:\n    a: first"):
        assert isinstance(generate_code(doc, tiny[name], max_length=20), str)
    res = generate_with_attention("zzqx wvvb plorf", tiny[name], max_length=20)
    assert res.source_unknown == [False, True, True, True, False]


def test_long_docstring_is_cut_with_a_warning(tiny) -> None:
    doc = ("Return the sum of a and b " * 20000)[:100_000]
    assert len(doc) == 100_000
    with pytest.warns(UserWarning, match="source limit of 50"):
        res = generate_with_attention(doc, tiny["attention"])
    assert len(res.source_tokens) == 52 and res.attention.shape[1] == 52
    with pytest.warns(UserWarning, match="source limit of 50"):
        assert isinstance(generate_code(doc, tiny["attention"]), str)
    with pytest.warns(UserWarning, match=r"1 docstring\(s\) \(index 1\)"):
        codes = batch_generate([DOC, doc], tiny["attention"])
    assert len(codes) == 2 and all(isinstance(c, str) for c in codes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short docstring does not warn
        generate_code(DOC, tiny["attention"])


def test_vocab_path(tiny, tmp_path) -> None:
    ck = tiny["attention"]
    expected = generate_code(DOC, ck)
    assert generate_code(DOC, ck, vocab_path=tiny["trg_vocab"]) == expected
    assert generate_code(DOC, ck, vocab_path=str(tiny["src_vocab"])) == expected
    assert batch_generate([DOC], ck, vocab_path=tiny["trg_vocab"]) == [expected]
    other = tmp_path / "other.json"
    Vocabulary.build([["just", "other", "words"]], min_freq=1).save(other)
    with pytest.raises(CheckpointError, match="matches neither the source .* nor the target") as e:
        generate_code(DOC, ck, vocab_path=other)
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="No vocabulary file"):
        generate_code(DOC, ck, vocab_path=tmp_path / "missing.json")
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a valid vocabulary"):
        generate_code(DOC, ck, vocab_path=junk)


def test_files_that_are_not_checkpoints(tiny, tmp_path) -> None:
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pt"
    data = Path(tiny["attention"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "text.pt"
    text.write_text("hi\n")
    cases = {random_bytes: "cannot be read", text: "cannot be read", truncated: "cannot be read",
             foreign: "not a checkpoint of this project",
             tmp_path / "missing.pt": "does not exist; train with `make main`"}
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as e:
            generate_code(DOC, path)
        assert "\n" not in str(e.value)
        with pytest.raises(CheckpointError, match=message):
            batch_generate([DOC], path)
    with pytest.raises(CheckpointError) as e:  # no unpickler detail such as ": 104." that means nothing
        generate_code(DOC, text)
    assert str(e.value).endswith("(truncated, or not a checkpoint of this project).")


# ----------------------------------------------------------------------------------------------- property


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text().filter(lambda s: s.strip()))
def test_any_text_gives_source_code(tiny, name, text) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # very long texts are cut with a warning
        code = generate_code(text, tiny[name], max_length=25)
        codes = batch_generate([text, DOC], tiny[name], max_length=25)
        alone = batch_generate([text], tiny[name], max_length=25)
    assert isinstance(code, str) and len(codes) == 2 and all(isinstance(c, str) for c in codes)
    assert alone == [code]


# ----------------------------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path = REPO, stdin: str | None = None, script: Path | str = CLI):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("where", ["root", "inference"])
def test_cli_help(where) -> None:
    cwd, script = (REPO, "inference/example_inference.py") if where == "root" else (REPO / "inference",
                                                                                  "example_inference.py")
    r = _cli("--help", cwd=cwd, script=script)
    assert r.returncode == 0, r.stderr
    for text in ("--docstring", "--file", "--checkpoint", "--beam-size", "--attention-plot", "examples", "make main"):
        assert text in r.stdout


def test_cli_model_names_match_the_config() -> None:
    from utils.config import MODEL_NAMES
    assert example_inference.MODEL_NAMES == MODEL_NAMES
    assert example_inference.LENGTH_PENALTY == inference_module.LENGTH_PENALTY


def test_cli_from_root_prints_code_and_plot(tiny, tmp_path) -> None:
    plot = tmp_path / "attn.png"
    r = _cli("--checkpoint", str(tiny["attention"]), "--docstring", DOC, "--docstring",
             "Return the product of x and y.", "--device", "cpu", "--attention-plot", str(plot),
             "--vocab", str(tiny["trg_vocab"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# {DOC}\n")
    assert "# Return the product of x and y.\n" in r.stdout
    assert r.stdout.count("def ") >= 1
    assert generate_code(DOC, tiny["attention"]) in r.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    bare = tmp_path / "heatmap"  # no extension: the PNG gets one, and the message names the real file
    r = _cli("--checkpoint", str(tiny["attention"]), "-d", DOC, "--attention-plot", str(bare))
    assert r.returncode == 0, r.stderr
    assert f"saved to {bare}.png" in r.stderr and (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_inside_inference_reads_stdin(tiny) -> None:
    rel = os.path.relpath(tiny["lstm"], REPO / "inference")
    r = _cli("--checkpoint", rel, "--beam-size", "2", cwd=REPO / "inference", script="example_inference.py",
             stdin=f"{DOC}\n\n   \nReturn the product of x and y.\n")
    assert r.returncode == 0, r.stderr
    headers = [line for line in r.stdout.splitlines() if line.startswith("# ")]
    assert headers == [f"# {DOC}", "# Return the product of x and y."]


def test_cli_missing_checkpoint(tmp_path) -> None:
    r = _cli("--checkpoint", str(tmp_path / "nope.pt"), "--docstring", DOC)
    assert r.returncode == 2
    assert "make main" in r.stderr and "02_train.ipynb" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _main(capsys, *args: str) -> tuple[int, str, str]:
    code = example_inference.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_one_line(tiny, tmp_path, capsys, monkeypatch) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    ck = str(tiny["attention"])
    cases = [
        (["--checkpoint", str(junk), "-d", DOC], "cannot be read"),
        (["--checkpoint", ck, "-d", "   "], EMPTY),
        (["--checkpoint", ck, "-d", DOC, "--device", "tpu"], "Unknown device"),
        (["--checkpoint", ck, "-d", DOC, "--vocab", str(tmp_path / "none.json")], "No vocabulary file"),
        (["--checkpoint", ck, "--file", str(tmp_path / "none.txt")], "cannot read docstrings"),
        (["--checkpoint", str(tiny["rnn"]), "-d", DOC, "--attention-plot", str(tmp_path / "p.png")],
         "has no attention"),
        (["--checkpoint", str(tiny["rnn"]), "--model", "attention", "-d", DOC], "holds a 'rnn' model"),
    ]
    for args, message in cases:
        code, out, err = _main(capsys, *args)
        assert code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    for flag, value, message in (("--beam-size", "0", "must be at least 1"),
                                 ("--length-penalty", "-0.5", "must be 0 or more")):
        with pytest.raises(SystemExit) as e:
            example_inference.main([flag, value, "-d", DOC])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_length_penalty_reaches_the_beam_search(tiny, monkeypatch, capsys) -> None:
    seen: list[float] = []
    real = inference_module.decode_batch

    def spy(*args, **kwargs):
        seen.append(kwargs["length_penalty"])
        return real(*args, **kwargs)

    monkeypatch.setattr(inference_module, "decode_batch", spy)
    generate_code(DOC, tiny["attention"], beam_size=2, length_penalty=0.0)
    batch_generate([DOC], tiny["attention"], beam_size=2, length_penalty=2.5)
    assert example_inference.main(["-c", str(tiny["attention"]), "-b", "2", "--length-penalty", "0.7",
                                   "-d", DOC]) == 0
    assert seen == [0.0, 2.5, 0.7]
    generate_code(DOC, tiny["attention"], beam_size=2)  # the default: the value chosen on validation rows
    assert example_inference.main(["-c", str(tiny["attention"]), "-b", "2", "-d", DOC]) == 0
    assert seen[3:] == [inference_module.LENGTH_PENALTY] * 2 == [3.0, 3.0]


def test_cli_file_and_long_docstring(tiny, tmp_path, capsys) -> None:
    f = tmp_path / "docs.txt"
    f.write_text(f"{DOC}\n\nReturn the sum of a and b " + "and b " * 100 + "\n", encoding="utf-8")
    code, out, err = _main(capsys, "--checkpoint", str(tiny["attention"]), "--file", str(f), "--max-length", "30")
    assert code == 0, err
    assert out.count("\n# Return the sum") + out.startswith("# Return the sum") == 2
    *warned, used = err.splitlines()  # which checkpoint, once the outputs are there
    assert used == f"using checkpoint {tiny['attention']}"
    assert warned[0].startswith("warning: ") and "source limit of 50" in warned[0]


def test_cli_echoes_the_first_200_characters_of_a_long_docstring(tiny, capsys) -> None:
    long = "Return the sum of a and b " + "and b " * 20_000
    code, out, err = _main(capsys, "--checkpoint", str(tiny["attention"]), "-d", long, "--max-length", "5")
    assert code == 0, err
    header = out.splitlines()[0]
    rest = len(" ".join(long.split())) - example_inference.ECHO_CHARS
    assert header == f"# {' '.join(long.split())[:200]}... ({rest:,} more characters)"
    assert len(out) < 2_000


def test_cli_beam_uses_the_length_penalty_chosen_for_a_shipped_model() -> None:
    """--length-penalty wins; else the shipped model's validation choice for the beam it runs; else 3.0."""
    import argparse

    chosen = ({"commit": "abc"}, {"length_penalty": {"beam5": 2.0, "beam5+syntax": 1.0}})
    pick = lambda penalty, syntax, shipped: example_inference._length_penalty(  # noqa: E731
        argparse.Namespace(length_penalty=penalty, syntax_aware=syntax), shipped)
    assert pick(None, False, chosen) == 2.0 and pick(None, True, chosen) == 1.0 and pick(0.5, True, chosen) == 0.5
    assert pick(None, False, None) == example_inference.LENGTH_PENALTY == 3.0


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory, one_thread) -> Path:
    """An attention model on BPE pieces (one vocabulary for both sides), trained a little."""
    from utils.data.subwords import Subwords

    rows = _toy_rows()
    vocab = Vocabulary.from_subwords(Subwords.train(([*r["docstring_tokens"], *r["code_tokens"]] for r in rows), 110))
    torch.manual_seed(0)
    config = Seq2SeqConfig(model="attention", embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0,
                           src_vocab_size=len(vocab), trg_vocab_size=len(vocab), vocabulary="bpe")
    model = build_model(config)
    examples = encode_pairs(rows, vocab, vocab)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for epoch in range(6):
        for batch in bucketed_batches(examples, 32, shuffle=True, seed=epoch):
            loss, n = model.loss(batch, teacher_forcing=1.0)
            opt.zero_grad()
            (loss / n).backward()
            opt.step()
    return save_checkpoint(tmp_path_factory.mktemp("bpe") / "attention_best.pt", model.eval(), vocab, vocab)


def test_a_bpe_checkpoint_writes_code_without_unk(bpe_checkpoint) -> None:
    clear_cache()
    code = generate_code(DOC, bpe_checkpoint)
    assert "<UNK>" not in code and "##" not in code  # pieces joined back into tokens
    result = generate_with_attention(DOC, bpe_checkpoint)
    assert result.attention.shape == (len(result.tokens), len(result.source_tokens))  # merged to tokens
    assert result.source_tokens == ["<SOS>", *tokenize_docstring(DOC), "<EOS>"]
    assert not any(result.source_unknown)
    # characters BPE has never seen: the token becomes one <UNK> piece, and code still comes out
    odd = generate_with_attention("\u263a\u263a \u2603", bpe_checkpoint, syntax_aware=True)
    assert odd.source_unknown == [False, True, True, True, False] and "<UNK>" not in odd.code
    codes = batch_generate([DOC, "Return the product of x and y."], bpe_checkpoint, beam_size=2, syntax_aware=True)
    assert len(codes) == 2 and all("<UNK>" not in c for c in codes)


def test_cli_uses_the_shipped_weights_and_refuses_a_damaged_one_in_one_line(tiny, tmp_path, capsys,
                                                                             monkeypatch) -> None:
    """Without --checkpoint the shipped model answers (its name, file and commit on stderr, its chosen
    length penalty for the beam); once its bytes change, one line names it and the restore command."""
    import shutil

    import utils.checkpoint as checkpoint_module

    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    ck = shipped / "attention_best.pt"
    shutil.copyfile(tiny["attention"], ck)
    entry = {"model": "attention", "sha256": checkpoint_module.file_sha256(ck), "length_penalty": {"beam5": 0.5}}
    (shipped / "manifest.json").write_text(json.dumps({"commit": "abc1234def", "files": {ck.name: entry}}))
    monkeypatch.setattr(example_inference, "SHIPPED_DIR", shipped)
    monkeypatch.setattr(checkpoint_module, "SHIPPED_DIR", str(shipped))
    seen: list[float] = []
    real = inference_module.decode_batch
    monkeypatch.setattr(inference_module, "decode_batch",
                        lambda *a, **k: seen.append(k["length_penalty"]) or real(*a, **k))
    code, out, err = _main(capsys, "-d", DOC, "-b", "2")
    assert code == 0 and out.startswith(f"# {DOC}\n") and seen == [0.5]
    assert err.splitlines()[-1] == f"using the shipped 'attention' model ({ck}, trained at commit abc1234)"
    ck.write_bytes(ck.read_bytes()[:-16])
    code, out, err = _main(capsys, "-d", DOC)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "attention_best.pt is damaged or was replaced" in err and "git checkout -- checkpoints" in err


def test_the_command_line_and_the_api_decode_in_the_tables_precision_by_default() -> None:
    """The README's table was scored in fp32 (notebook 03's decode_precision): a user gets that unless told."""
    import inspect

    import inference.inference as api
    from inference.example_inference import build_parser

    assert api.DECODE_PRECISION == "fp32"
    for fn in (api.generate_code, api.generate_with_attention, api.batch_generate):
        assert inspect.signature(fn).parameters["precision"].default == "fp32", fn.__name__
    assert build_parser().parse_args(["--docstring", "x"]).precision == "fp32"
