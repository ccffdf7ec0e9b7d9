"""The locked environment: requirements.lock pins every package, and satisfies requirements.txt."""
from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from utils.paths import REPO_ROOT


def _lines(name: str) -> list[str]:
    text = (REPO_ROOT / name).read_text(encoding="utf-8")
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def test_the_lock_pins_every_package_exactly_and_satisfies_the_requirements() -> None:
    lock = {}
    for line in _lines("requirements.lock"):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.!_-]+", line), f"not an exact pin: {line}"
        name, version = line.split("==")
        assert canonicalize_name(name) not in lock, f"{name} is pinned twice"
        lock[canonicalize_name(name)] = version
    assert "pip" in lock  # the installer itself is pinned too
    for line in _lines("requirements.txt"):
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} (requirements.txt) is missing from requirements.lock: run `make lock`"
        assert req.specifier.contains(lock[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={lock[name]}, outside {req.specifier}: run `make lock`"
