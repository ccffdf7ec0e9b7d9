"""Filtering, file-level splits, the preprocess pipeline and loading the processed corpus."""
from __future__ import annotations

import hashlib
import json
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from utils.data.corpus_sources import corpus_hash
from utils.data.processed import (
    build_python_corpus,
    check_split_sizes,
    file_bucket,
    filter_by_length,
    load_split,
    load_vocabs,
    preprocess,
    split_by_file,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


# ----------------------------------------------------------------------------------------------- filter and split

def _row(repo: str, path: str, code_tokens: list[str], n_doc: int = 3) -> dict:
    return {"repo": repo, "path": path, "code_tokens": code_tokens, "docstring_tokens": ["w"] * n_doc,
            "code": " ".join(code_tokens)}


def test_filter_by_length_drops_and_never_truncates() -> None:
    rows = [_row("r", "a", ["x"] * 5), _row("r", "b", ["x"] * 6), _row("r", "c", ["x"], n_doc=4)]
    stats: Counter = Counter()
    kept = filter_by_length(rows, max_doc_tokens=3, max_code_tokens=5, stats=stats)
    assert kept == [rows[0]] and len(kept[0]["code_tokens"]) == 5
    assert (stats["dropped_long_code"], stats["dropped_long_docstring"]) == (1, 1)


def test_split_by_file_keeps_files_and_identical_code_in_one_split() -> None:
    rows = [_row(f"repo{i % 7}", f"f{i % 50}.py", ["def", f"f{i % 120}"]) for i in range(600)]
    stats: Counter = Counter()
    splits = split_by_file(rows, sizes=None, stats=stats)
    files = {name: {(r["repo"], r["path"]) for r in rs} for name, rs in splits.items()}
    codes = {name: {r["code"] for r in rs} for name, rs in splits.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not files[a] & files[b] and not codes[a] & codes[b]
    assert stats["dropped_cross_split_duplicate"] > 0  # the data was built to collide
    assert sum(map(len, splits.values())) + stats["dropped_cross_split_duplicate"] == len(rows)
    assert all(r["partition"] == name and file_bucket(r) == name for name, rs in splits.items() for r in rs)
    small = split_by_file(rows, sizes=(10, 2, None))
    assert (len(small["train"]), len(small["valid"])) == (10, 2)
    assert small == split_by_file(rows, sizes=(10, 2, None))
    with pytest.raises(ValueError, match="three non-negative ints"):
        split_by_file(rows, sizes=(10, 2))


# ----------------------------------------------------------------------------------------------- pipeline

@pytest.fixture(scope="module")
def csn_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real stdlib functions written out as a CodeSearchNet jsonl file (code with docstring)."""
    rows = build_python_corpus(roots=[STDLIB / name for name in ("email", "asyncio", "json", "argparse.py")],
                               keep_docstring=True)
    path = tmp_path_factory.mktemp("csn") / "python_train_0.jsonl"
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("repo", "path", "func_name", "code", "docstring")}) + "\n")
    return [path]


def test_preprocess_writes_splits_vocabs_and_manifest(tmp_path: Path, csn_files: list[Path]) -> None:
    out = tmp_path / "processed"
    manifest = preprocess(source="codesearchnet", codesearchnet_files=csn_files, out_dir=out,
                          split_sizes=(200, 30, 30), min_freq=2)
    train, valid = load_split(out, "train"), load_split(out, "valid")
    src_vocab, trg_vocab = load_vocabs(out)
    assert manifest["split_sizes"]["train"] == len(train) == 200
    assert all(len(r["code_tokens"]) <= 80 and len(r["docstring_tokens"]) <= 50 for r in train + valid)
    assert manifest["vocab_sizes"] == {"src": len(src_vocab), "trg": len(trg_vocab)}
    train_counts = Counter(t for r in train for t in r["code_tokens"])
    assert set(trg_vocab.itos[4:]) == {t for t, c in train_counts.items() if c >= 2}  # train only
    assert manifest["unk_rate"]["train"]["trg"] < manifest["unk_rate"]["test"]["trg"]
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert json.loads((out / "manifest.json").read_text())["pairs_within_limits"] == manifest["pairs_within_limits"]
    steps, counts = manifest["filter_steps"], manifest["counts"]
    assert steps[0] == {"step": "rows_seen", "dropped": 0, "remaining": counts["rows_seen"]}
    assert steps[-1]["step"] == "dropped_cross_split_duplicate"
    assert steps[-1]["remaining"] == sum(counts[f"available_{s}"] for s in ("train", "valid", "test"))


def test_preprocess_default_python_source_small(tmp_path: Path) -> None:
    manifest = preprocess(out_dir=tmp_path, max_files=60, split_sizes=(50, 10, 10), min_freq=1)
    assert manifest["source"] == "python" and manifest["counts"]["files_parsed"] == 60
    assert manifest["split_sizes"] == {"train": 50, "valid": 10, "test": 10}
    assert load_split(tmp_path, "train")[0]["repo"] == "stdlib"


def test_preprocess_bad_input_gives_one_clear_sentence(tmp_path: Path, csn_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="Unknown source 'github'; use one of 'python', 'codesearchnet'"):
        preprocess(source="github", out_dir=tmp_path)
    with pytest.raises(ValueError, match="No docstring/code pairs left after filtering"):
        preprocess(source="codesearchnet", codesearchnet_files=csn_files, out_dir=tmp_path, max_code_tokens=3)
    with pytest.raises(FileNotFoundError, match="run notebooks/01_preprocess.ipynb or `make main`"):
        load_split(tmp_path / "empty", "train")
    with pytest.raises(FileNotFoundError, match="01_preprocess"):
        load_vocabs(tmp_path / "empty")


def test_check_split_sizes_stops_on_an_empty_split_and_warns_on_a_short_one() -> None:
    rows = lambda n: [{"i": i} for i in range(n)]  # noqa: E731
    check_split_sizes({"train": rows(5), "valid": rows(2), "test": rows(2)}, (5, 2, 2))  # as asked: silent
    with pytest.raises(ValueError, match=r"The test split is empty \(train 360, valid 72, test 0\).*max_files"):
        check_split_sizes({"train": rows(360), "valid": rows(72), "test": []}, (10000, 1000, 1000))
    with pytest.raises(ValueError, match="The valid and test splits are empty"):
        check_split_sizes({"train": rows(3), "valid": [], "test": []}, None)
    check_split_sizes({"train": rows(3), "valid": [], "test": rows(1)}, (3, 0, 1))  # 0 asked for: fine
    with pytest.raises(ValueError, match="The train split is empty"):
        check_split_sizes({"train": [], "valid": rows(1), "test": rows(1)}, (0, 1, 1))
    with pytest.warns(UserWarning, match="Fewer pairs than asked for: valid 2 of 30"):
        check_split_sizes({"train": rows(5), "valid": rows(2), "test": rows(2)}, (5, 30, 2))


@pytest.mark.parametrize("bad, reason", [(b'{"docstring_tokens": ["a"], "code_tok', "not valid JSON"),
                                         (b'["a", "b"]', "not a JSON object"),
                                         (b'{"docstring_tokens": ["a"]}', "no docstring_tokens/code_tokens lists"),
                                         (b'{"a": "\xff"}', "not UTF-8 text")])
def test_a_damaged_split_line_names_the_file_and_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    good = json.dumps({"docstring_tokens": ["Add", "numbers", "."], "code_tokens": ["def", "f"]}).encode()
    (tmp_path / "train.jsonl").write_bytes(good + b"\n\n" + good + b"\n" + bad + b"\n")
    with pytest.raises(ValueError, match=rf"train.jsonl, line 4: {reason}.*damaged\. Run notebooks/01_preprocess"):
        load_split(tmp_path, "train")
    (tmp_path / "train.jsonl").write_bytes(good + b"\n\n" + good + b"\n")
    assert len(load_split(tmp_path, "train")) == 2


def test_preprocess_records_its_sources_and_one_corpus_hash(tmp_path: Path) -> None:
    manifest = preprocess(out_dir=tmp_path, max_files=60, split_sizes=(50, 10, 10), min_freq=1)
    sources = manifest["corpus_sources"]
    assert sources["corpus_packages"] == "data/corpus_packages.txt" and sources["distributions"] == {}
    assert sources["roots"] == [str(STDLIB)]  # 60 files: the standard library alone, nothing installed
    assert manifest["corpus_sha256"] == corpus_hash(manifest["sha256"])
    again = preprocess(out_dir=tmp_path / "again", max_files=60, split_sizes=(50, 10, 10), min_freq=1)
    assert again["corpus_sha256"] == manifest["corpus_sha256"]  # byte for byte the same files
    assert not list(tmp_path.glob("*.tmp"))
