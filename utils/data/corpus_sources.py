"""Where the default corpus's code comes from, and whether a corpus is the reference one.

The default corpus is the standard library plus a pinned list of distributions
(``data/corpus_packages.txt``, one ``name==version`` per line), installed without their
dependencies into a folder of their own (``data/raw/corpus-src``). The project's own environment
is not read, so adding a dependency to the project never changes the data; a longer list is how a
user grows the corpus. ``corpus_packages="environment"`` reads the running interpreter's installed
packages instead (the data then depends on what is installed).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterator, Sequence

from utils.files import replace_folder, write_text
from utils.paths import project_path

PACKAGES_FILE = "data/corpus_packages.txt"
SOURCES_DIR = "data/raw/corpus-src"
ENVIRONMENT = "environment"
REFERENCE_MANIFEST = "data/reference_manifest.json"

_TEST_DIRS = frozenset({"test", "tests", "testing"})
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
# The list an installed folder was made from: the same list means the folder is reused as it is.
_STAMP = "corpus-packages.txt"
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


class CorpusSourceError(RuntimeError):
    """The corpus's sources cannot be read or installed."""


# ----------------------------------------------------------------------------------------------- files

def stdlib_root() -> Path:
    """The running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def environment_roots() -> list[Path]:
    """The standard library, then the running interpreter's site-packages."""
    roots = [stdlib_root()] + [Path(p) for p in site.getsitepackages()]
    unique = []
    for r in roots:
        if r.is_dir() and r not in unique:
            unique.append(r)
    return unique


def is_test_path(rel_parts: Sequence[str]) -> bool:
    """True for files in test folders and for test modules (CodeSearchNet leaves them out)."""
    name = rel_parts[-1]
    return (any(p.lower() in _TEST_DIRS for p in rel_parts[:-1]) or name.startswith("test_")
            or name.endswith("_test.py") or name == "conftest.py")


def python_files(root: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """(file, path parts relative to root) of every .py file under ``root``, sorted."""
    if root.is_file():
        yield root, (root.name,)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        # Nested site-packages would mix installed packages into the stdlib.
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        rel = Path(dirpath).relative_to(root).parts
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name, (*rel, name)


def count_corpus_files(root: Path) -> int:
    """How many files under ``root`` the corpus builder reads (test files left out)."""
    return sum(not is_test_path(parts) for _, parts in python_files(root))


def _distributions(search_paths: Sequence[Path] | None) -> list[tuple[str, str, importlib.metadata.Distribution]]:
    """(name, version, distribution) found on ``search_paths`` (default ``sys.path``), sorted by name."""
    found = importlib.metadata.distributions(**({} if search_paths is None else
                                                {"path": [str(p) for p in search_paths]}))
    # Reading metadata parses a file each time: once per distribution, not per file.
    return sorted(((d.metadata["Name"] or "", d.version, d) for d in found), key=lambda item: item[0].lower())


def distribution_files(search_paths: Sequence[Path] | None = None) -> dict[str, tuple[str, str]]:
    """Normalized absolute path of each .py file of the distributions found on ``search_paths``
    (default ``sys.path``) -> (distribution name, version)."""
    owners: dict[str, tuple[str, str]] = {}
    for name, version, dist in _distributions(search_paths):
        for f in dist.files or ():
            if f.suffix == ".py":
                owners.setdefault(os.path.normpath(str(dist.locate_file(f))), (name, version))
    return owners


def installed_versions(search_paths: Sequence[Path] | None = None) -> dict[str, str]:
    """Name -> version of every distribution on ``search_paths`` (default ``sys.path``), sorted by name."""
    versions: dict[str, str] = {}
    for name, version, _ in _distributions(search_paths):
        versions.setdefault(name, version)
    return versions


# ----------------------------------------------------------------------------------------------- the pinned list

def read_package_list(path: str | Path) -> list[str]:
    """The ``name==version`` lines of a package list (``#`` comments and blank lines skipped)."""
    p = project_path(path)
    if not p.is_file():
        raise CorpusSourceError(f"No corpus package list at {p}; restore {PACKAGES_FILE} from git, or set "
                                f"corpus_packages='{ENVIRONMENT}' to read the installed packages instead.")
    pins = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.match(line):
            raise CorpusSourceError(f"{p}, line {n}: {line!r} is not an exact pin; write one 'name==version' "
                                    "per line (a pinned list is what keeps the corpus the same).")
        pins.append(line)
    if not pins:
        raise CorpusSourceError(f"{p} lists no packages; add 'name==version' lines.")
    return pins


def _pip_error(stderr: str) -> str:
    """The line of pip's output that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "is ignored" not in line]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[0][:300]


def _keep_sources_only(folder: Path) -> None:
    """Delete what the corpus never reads (compiled libraries, data, scripts): only .py files and the
    distributions' metadata stay (one seventh of the disk for the default list)."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        if Path(dirpath).name.endswith(".dist-info") or Path(dirpath).parent.name.endswith(".dist-info"):
            continue
        for name in filenames:
            if not name.endswith(".py"):
                (Path(dirpath) / name).unlink()


def install_corpus_packages(packages_file: str | Path = PACKAGES_FILE, target: str | Path = SOURCES_DIR,
                            pip_args: Sequence[str] = ()) -> Path:
    """Install the listed distributions (no dependencies, no compiling) into ``target``, keep only
    their sources, and return the folder. Cached: a folder made from the same list is reused offline.

    ``pip_args`` go to ``pip install`` (the tests point it at a local folder of wheels).
    """
    pins = read_package_list(packages_file)
    target = project_path(target)
    stamp = "\n".join(pins) + "\n"
    if (target / _STAMP).is_file() and (target / _STAMP).read_text(encoding="utf-8") == stamp:
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target", str(partial), *pip_args, *pins]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        state = (f"{target} holds another list's packages and was left as it is" if target.exists()
                 else f"{target} does not exist yet")
        raise CorpusSourceError(
            f"Could not install the corpus packages of {project_path(packages_file)} ({len(pins)} pins) into "
            f"{target}; pip said: {_pip_error(done.stderr)}. The first run needs the package index (PyPI), later "
            f"runs reuse the folder offline, and {state}. Connect and run again, copy the folder from a machine "
            f"that has it, or set corpus_packages='{ENVIRONMENT}' to read the installed packages instead.")
    _keep_sources_only(partial)
    write_text(partial / _STAMP, stamp)
    replace_folder(partial, target)
    return target


def corpus_roots(corpus_packages: str | Path = PACKAGES_FILE, sources_dir: str | Path = SOURCES_DIR,
                 max_files: int | None = None) -> list[Path]:
    """The folders the default corpus reads: the standard library, then the pinned packages (installed
    when needed), or the running environment's site-packages for ``corpus_packages="environment"``.

    When the standard library alone holds ``max_files`` files, nothing is installed.
    """
    if str(corpus_packages) == ENVIRONMENT:
        return environment_roots()
    stdlib = stdlib_root()
    if max_files and count_corpus_files(stdlib) >= max_files:
        read_package_list(corpus_packages)  # a broken list is reported even when it is not needed
        return [stdlib]
    return [stdlib, install_corpus_packages(corpus_packages, sources_dir)]


# ----------------------------------------------------------------------------------------------- the reference

def corpus_hash(file_hashes: dict[str, str]) -> str:
    """One sha256 for a processed corpus: over the sorted (file name, file sha256) pairs."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _version_changes(ours: dict[str, str], ref: dict[str, str]) -> list[str]:
    changes = [f"{n} {ref[n]} -> {ours[n]}" for n in sorted(ours.keys() & ref.keys(), key=str.lower)
               if ours[n] != ref[n]]
    changes += [f"+{n} {ours[n]}" for n in sorted(ours.keys() - ref.keys(), key=str.lower)]
    changes += [f"-{n} {ref[n]}" for n in sorted(ref.keys() - ours.keys(), key=str.lower)]
    return changes


def load_reference_manifest(path: str | Path = REFERENCE_MANIFEST) -> dict | None:
    """The committed manifest of the reference corpus, or None when there is no such file."""
    p = project_path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CorpusSourceError(f"{p} is not valid JSON ({e}); restore it with `git checkout {path}`.") from None


def compare_with_reference(manifest: dict, reference: dict | None) -> str:
    """One line: the corpus is the reference one, or what differs (Python, packages, pairs)."""
    if reference is None:
        return "No reference manifest to compare with (data/reference_manifest.json is missing)."
    if manifest.get("params") != reference.get("params"):
        keys = sorted(set(manifest.get("params", {})) | set(reference.get("params", {})))
        other = [f"{k}={manifest['params'].get(k)!r} (reference {reference['params'].get(k)!r})" for k in keys
                 if manifest.get("params", {}).get(k) != reference.get("params", {}).get(k)]
        return f"Not compared with the reference corpus: it was built with other parameters ({', '.join(other)})."
    ours, ref = manifest.get("corpus_sha256"), reference.get("corpus_sha256")
    if ours == ref:
        return f"Identical to the reference corpus (sha256 {ours[:12]}, {manifest['pairs_within_limits']:,} pairs)."
    parts = []
    if manifest.get("python_version") != reference.get("python_version"):
        parts.append(f"Python {manifest.get('python_version')} (reference {reference.get('python_version')})")
    changes = _version_changes(manifest.get("corpus_sources", {}).get("distributions", {}),
                               reference.get("corpus_sources", {}).get("distributions", {}))
    if changes:
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        parts.append(f"{len(changes)} package{'s' if len(changes) > 1 else ''} differ ({shown})")
    diff = manifest.get("pairs_within_limits", 0) - reference.get("pairs_within_limits", 0)
    parts.append(f"{manifest.get('pairs_within_limits', 0):,} pairs within the limits, {diff:+,} against the "
                 f"reference's {reference.get('pairs_within_limits', 0):,}")
    return (f"DIFFERENT from the reference corpus (sha256 {str(ours)[:12]}, reference {str(ref)[:12]}): "
            + "; ".join(parts) + ". Results will not match the README's.")
