"""The package's shape: imports go one way (no circle), modules and functions stay short enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "utils"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(UTILS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``utils`` modules that ``path`` imports at any depth (``from utils.x import y`` -> utils.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("utils"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in UTILS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # a package's __init__ re-exports its own modules: that is not a circle
        graph[name] = {m for m in _imports(path) if m in modules and m != name and not m.startswith(name + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_utils() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", sorted(UTILS.rglob("*.py")), ids=lambda p: str(p.relative_to(UTILS)))
def test_modules_and_functions_are_short(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines; split it by concept"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} is {length} lines"


def test_the_models_read_in_under_700_lines() -> None:
    """All five models, their states and their shared loop, without the CPU shortcut (``utils/fast``)."""
    lines = sum(p.read_text().count("\n") for p in (UTILS / "models").glob("*.py"))
    assert lines < 700, f"utils/models/: {lines} lines"


def test_the_models_do_not_depend_on_the_fast_path() -> None:
    graph = _graph()
    for name in graph:
        if name.startswith("utils.models"):
            assert not any(m.startswith("utils.fast") for m in graph[name]), name
