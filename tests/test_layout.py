"""The package's shape: one subpackage per concept, imports going one way between them (no circle),
every module tested, modules and functions short enough to read."""
from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The top level of utils/: plumbing and the two entry points, then one subpackage per concept.
TOP_MODULES = {"__init__", "config", "paths", "files", "precision", "checkpoint", "bleu", "metrics", "run_notebooks"}
PACKAGES = {"data", "models", "fast", "decoding", "training", "evaluation", "studies", "bench", "report"}
# Concepts from the bottom up: a module may import its own layer and the ones below, never one above.
LAYERS = [
    {"utils", "utils.paths", "utils.files", "utils.precision", "utils.config"},
    {"utils.data"},
    {"utils.bleu", "utils.metrics"},  # the scores: the trainer's validation uses them, as the evaluation does
    {"utils.models"},
    {"utils.fast"},
    {"utils.checkpoint"},
    {"utils.decoding"},
    {"utils.training"},
    {"utils.evaluation"},
    {"utils.studies", "utils.bench", "utils.report", "utils.run_notebooks"},
]
# The experiments: the library never imports them.
EXPERIMENTS = ("utils.studies", "utils.bench")
# The concept packages whose __init__ re-exports for the notebooks and inference/; inside utils, modules
# import the module that defines a name (utils.models and utils.fast define theirs in the package).
REEXPORTING = ("utils.data", "utils.decoding", "utils.training", "utils.evaluation")


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


def _concept(module: str) -> str:
    """``utils.data.batch`` -> ``utils.data``; ``utils.paths`` -> ``utils.paths``; ``utils`` -> ``utils``."""
    return ".".join(module.split(".")[:2])


def _layer(module: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) if _concept(module) in layer]
    assert found, f"{module} belongs to no layer: add its concept to LAYERS"
    return found[0]


def _tested_names(paths) -> set[str]:
    """Every ``utils`` module a file imports, with ``from utils.x import y`` counted as both utils.x and utils.x.y."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("utils"))
    return names


def test_the_top_level_holds_the_plumbing_and_one_package_per_concept() -> None:
    modules = {p.stem for p in UTILS.glob("*.py")}
    packages = {p.name for p in UTILS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert modules == TOP_MODULES
    assert packages == PACKAGES
    assert all((UTILS / name / "__init__.py").is_file() for name in packages)


def test_imports_go_one_way_between_concepts() -> None:
    upward = [f"{name} (layer {_layer(name)}) imports {m} (layer {_layer(m)})"
              for name, imported in _graph().items() for m in sorted(imported) if _layer(m) > _layer(name)]
    assert not upward, "\n".join(upward)


def test_the_layer_check_finds_an_upward_import() -> None:
    assert _layer("utils.data.batch") < _layer("utils.training.trainer") < _layer("utils.studies.seeds")
    assert _layer("utils.decoding.search") < _layer("utils.evaluation.results")
    assert _layer("utils.models.base") < _layer("utils.fast.decoders")


def test_the_library_does_not_import_the_experiments() -> None:
    graph = _graph()
    outside = {name: imported for name, imported in graph.items()
               if not name.startswith((*EXPERIMENTS, "utils.report"))}
    assert outside and all(not m.startswith(EXPERIMENTS) for imported in outside.values() for m in imported), [
        (name, sorted(m for m in imported if m.startswith(EXPERIMENTS))) for name, imported in outside.items()
        if any(m.startswith(EXPERIMENTS) for m in imported)]
    assert not {m for m in _tested_names((ROOT / "inference").glob("*.py")) if m.startswith(EXPERIMENTS)}


def test_inside_utils_modules_import_the_module_that_defines_a_name() -> None:
    """Not a concept package's re-exports (they are for the notebooks): no submodule imports its own
    package's __init__, and no module imports another's."""
    found = [(name, m) for name, imported in _graph().items() for m in imported
             if m in REEXPORTING and not name.startswith(m + ".") and name != m]
    found += [(_module_name(p), m) for p in UTILS.rglob("*.py") if p.name != "__init__.py"
              for m in _imports(p) if m in REEXPORTING and _module_name(p).startswith(m + ".")]
    assert not found, found


@pytest.mark.parametrize("package", sorted(f"utils.{name}" for name in PACKAGES))
def test_each_concept_package_says_what_it_holds_and_re_exports_a_few_names(package) -> None:
    module = importlib.import_module(package)
    doc = module.__doc__ or ""
    assert len(doc.split()) >= 40, f"{package}: a paragraph on the concept and each of its modules"
    submodules = {p.stem for p in (UTILS / package.split(".")[1]).glob("*.py")} - {"__init__", "__main__"}
    assert all(re.search(rf"\b{name}\b", doc) for name in submodules), f"{package}: name every module in its docstring"
    exported = getattr(module, "__all__", [])
    assert len(exported) <= 30 and all(hasattr(module, name) for name in exported)


def _defined_in(names: set[str]) -> set[str]:
    """The modules that define what ``names`` (from ``_tested_names``) name: ``utils.models.AttentionSeq2Seq``,
    re-exported by the package, counts for utils.models.attention (and ``utils.models.MODEL_CLASSES`` for
    the module of each class it maps to)."""
    found = set()
    for name in names:
        module, _, attribute = name.rpartition(".")
        if not module:
            continue
        try:
            obj = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
        for item in obj.values() if isinstance(obj, dict) else [obj]:  # MODEL_CLASSES: every family's class
            found.add(item.__name__ if inspect.ismodule(item) else getattr(item, "__module__", None) or module)
    return found


def test_every_module_has_a_test_module_that_imports_it() -> None:
    tested = _tested_names((ROOT / "tests").glob("*.py"))
    tested |= _defined_in(tested)
    modules = sorted(_module_name(p) for p in UTILS.rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if m not in tested]
    assert not missing, f"no test imports {', '.join(missing)}"


def test_the_notebooks_import_the_concept_packages() -> None:
    """The notebooks read like the story: ``from utils.evaluation import results_table``, not its module."""
    deep = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        modules = {node.module for node in ast.walk(ast.parse(code))
                   if isinstance(node, ast.ImportFrom) and node.module}
        deep += [f"{path.name}: {m}" for m in modules if _concept(m) in REEXPORTING and m != _concept(m)]
    assert not deep, deep
