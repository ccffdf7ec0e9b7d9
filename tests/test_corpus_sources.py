"""The default corpus's sources: the pinned list, its installation into a folder of its own, the
reference comparison. Installs use real pip on a wheel the test writes, with no index."""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from utils.data import corpus_sources
from utils.data.corpus_sources import (
    ENVIRONMENT,
    CorpusSourceError,
    compare_with_reference,
    corpus_hash,
    corpus_roots,
    environment_roots,
    install_corpus_packages,
    load_reference_manifest,
    read_package_list,
    stdlib_root,
)
from utils.data.processed import build_python_corpus
from utils.paths import REPO_ROOT

MODULE = '''
def add_numbers(a, b):
    """Add two numbers and return the sum."""
    total = a + b
    return total
'''


def _write_wheel(folder: Path, name: str = "corpusdemo", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel: one module, one data file, its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": MODULE, f"{name}/data.txt": "not code\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def _offline(wheels: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheels)]


def test_read_package_list(tmp_path) -> None:
    good = tmp_path / "list.txt"
    good.write_text("# the corpus\nnumpy==2.1.0  # pinned\n\nPyYAML==6.0.2\ntorch==2.13.0+cpu\n")
    assert read_package_list(good) == ["numpy==2.1.0", "PyYAML==6.0.2", "torch==2.13.0+cpu"]
    bad = tmp_path / "bad.txt"
    bad.write_text("numpy==2.1.0\nrequests>=2\n")
    with pytest.raises(CorpusSourceError, match=r"bad.txt, line 2: 'requests>=2' is not an exact pin"):
        read_package_list(bad)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(CorpusSourceError, match="lists no packages"):
        read_package_list(tmp_path / "empty.txt")
    with pytest.raises(CorpusSourceError, match="No corpus package list.*'environment'"):
        read_package_list(tmp_path / "missing.txt")


def test_the_committed_list_is_pinned_and_has_the_project_environment() -> None:
    pins = read_package_list(corpus_sources.PACKAGES_FILE)
    names = {p.split("==")[0].lower() for p in pins}
    assert len(pins) == len(names) > 100
    assert {"numpy", "pandas", "torch", "nltk"} <= names


def test_install_keeps_only_sources_is_cached_and_feeds_the_corpus(tmp_path, monkeypatch) -> None:
    wheels = tmp_path / "wheels"
    _write_wheel(wheels)
    pins = tmp_path / "corpus_packages.txt"
    pins.write_text("corpusdemo==1.0\n")
    target = install_corpus_packages(pins, tmp_path / "src", pip_args=_offline(wheels))
    assert (target / "corpusdemo" / "__init__.py").is_file()
    assert not (target / "corpusdemo" / "data.txt").exists()  # the corpus reads nothing but .py files
    assert (target / "corpusdemo-1.0.dist-info" / "METADATA").is_file()
    assert not (tmp_path / "src.partial").exists()

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran again for the same list")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert install_corpus_packages(pins, tmp_path / "src", pip_args=_offline(wheels)) == target
    monkeypatch.undo()

    rows = build_python_corpus([target])
    assert [(r["repo"], r["func_name"], r["url"]) for r in rows] == [
        ("corpusdemo", "add_numbers", "corpusdemo==1.0:corpusdemo/__init__.py#L2-L5")]


def test_install_failure_is_one_clear_error_and_keeps_the_old_folder(tmp_path) -> None:
    wheels = tmp_path / "wheels"
    _write_wheel(wheels)
    pins = tmp_path / "corpus_packages.txt"
    pins.write_text("corpusdemo==1.0\n")
    target = install_corpus_packages(pins, tmp_path / "src", pip_args=_offline(wheels))
    pins.write_text("corpusdemo==1.0\nnot-on-any-index==9.9\n")  # a longer list, but the registry has no such thing
    with pytest.raises(CorpusSourceError) as err:
        install_corpus_packages(pins, target, pip_args=_offline(wheels))
    message = str(err.value)
    assert "Could not install the corpus packages" in message and "pip said: ERROR" in message
    assert "left as it is" in message and f"corpus_packages='{ENVIRONMENT}'" in message
    assert (target / "corpusdemo" / "__init__.py").is_file()  # the previous install is untouched
    with pytest.raises(CorpusSourceError, match="does not exist yet"):
        install_corpus_packages(pins, tmp_path / "fresh", pip_args=_offline(wheels))
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "fresh.partial").exists()


def test_corpus_roots(tmp_path) -> None:
    assert corpus_roots(ENVIRONMENT) == environment_roots()
    # the smoke run's few files all come from the standard library: nothing is installed
    assert corpus_roots(corpus_sources.PACKAGES_FILE, tmp_path / "src", max_files=50) == [stdlib_root()]
    assert not (tmp_path / "src").exists()


def _manifest(**changes) -> dict:
    base = {"params": {"source": "python", "max_files": None}, "python_version": "3.11.7",
            "corpus_sha256": "a" * 64, "pairs_within_limits": 30799,
            "corpus_sources": {"distributions": {"numpy": "2.1.0", "torch": "2.13.0", "six": "1.16.0"}}}
    base.update(changes)
    return base


def test_compare_with_reference() -> None:
    ref = _manifest()
    assert compare_with_reference(_manifest(), ref) == (
        "Identical to the reference corpus (sha256 aaaaaaaaaaaa, 30,799 pairs).")
    other = _manifest(corpus_sha256="b" * 64, python_version="3.11.9", pairs_within_limits=30699,
                      corpus_sources={"distributions": {"numpy": "2.2.0", "torch": "2.13.0", "tokenizers": "0.22"}})
    line = compare_with_reference(other, ref)
    assert line.startswith("DIFFERENT from the reference corpus (sha256 bbbbbbbbbbbb, reference aaaaaaaaaaaa)")
    assert "Python 3.11.9 (reference 3.11.7)" in line
    assert "3 packages differ (numpy 2.1.0 -> 2.2.0, +tokenizers 0.22, -six 1.16.0)" in line
    assert "30,699 pairs within the limits, -100 against the reference's 30,799" in line
    assert "\n" not in line
    small = compare_with_reference(_manifest(params={"source": "python", "max_files": 400}), ref)
    assert small.startswith("Not compared") and "max_files=400 (reference None)" in small
    assert "missing" in compare_with_reference(ref, None)


def test_corpus_hash_covers_names_and_contents() -> None:
    files = {"train.jsonl": "1" * 64, "valid.jsonl": "2" * 64}
    assert corpus_hash(files) == corpus_hash(dict(reversed(list(files.items()))))
    assert corpus_hash(files) != corpus_hash({**files, "valid.jsonl": "3" * 64})
    assert corpus_hash(files) != corpus_hash({"train.jsonl": "1" * 64, "test.jsonl": "2" * 64})


def test_the_committed_reference_manifest(tmp_path) -> None:
    ref = load_reference_manifest()
    assert ref is not None and len(ref["corpus_sha256"]) == 64
    assert ref["corpus_sha256"] == corpus_hash(ref["sha256"])
    assert ref["corpus_sources"]["corpus_packages"] == corpus_sources.PACKAGES_FILE
    pins = dict(p.lower().split("==") for p in read_package_list(corpus_sources.PACKAGES_FILE))
    installed = ref["corpus_sources"]["distributions"]
    assert len(installed) == len(pins)
    # what was installed is what the list pins (torch's local build tag, +cpu, aside)
    assert all(pins[name.lower()] == version.split("+")[0] for name, version in installed.items())
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CorpusSourceError, match="not valid JSON"):
        load_reference_manifest(tmp_path / "broken.json")
    assert load_reference_manifest(tmp_path / "none.json") is None
    assert (REPO_ROOT / corpus_sources.REFERENCE_MANIFEST).is_file()
    json.dumps(ref)  # plain JSON
