"""Run the numbered notebooks in order through papermill with one parameter file.

    python -m utils.run_notebooks --params params/full.yaml --out runs/full notebooks/0*.ipynb

A parameter file serves the whole chain, so part of it can run with the same file (for example
``notebooks/03_bleu.ipynb`` alone with ``params/full.yaml``): a parameter is accepted when one of the
given notebooks or one of the numbered notebooks in ``notebooks/`` declares it, and each notebook
gets the ones it declares. Executed copies go to ``--out`` (git-ignored); the source notebooks are never written. With
``--prepare-only`` the parameters are injected without executing (nbval then runs the copies).
``--set NAME=VALUE`` overrides one parameter of the file, for example to score a word run's
checkpoints on the BPE run's test functions (``--set data_dir=data/processed``). Each notebook's
wall time is printed and written to ``<out>/timings.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from utils.files import write_text
from utils.paths import project_path

HASH_SEED = "0"  # fixed string hashing in the notebook kernels (see main)


def load_params(path: str | Path) -> dict:
    """Read a YAML parameter file: a mapping of notebook parameters shared by all notebooks."""
    if not str(path).strip():
        raise FileNotFoundError("No parameter file was given (PARAMS is empty); name one of params/*.yaml, "
                                "for example PARAMS=params/full.yaml.")
    p = project_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Parameter file {p} does not exist; see params/ for the available sets.")
    params = yaml.safe_load(p.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"Parameter file {p} must hold a mapping of parameter names to values.")
    return params


def parse_overrides(pairs: list[str]) -> dict:
    """``["data_dir=data/processed", "epochs=2"]`` as ``{"data_dir": "data/processed", "epochs": 2}``
    (each value read as YAML); a ValueError names a pair without ``=``."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set {pair!r} must read NAME=VALUE, for example --set data_dir=data/processed.")
        out[name.strip()] = yaml.safe_load(value)
    return out


def declared_parameters(notebooks: list[str | Path]) -> dict[Path, set[str]]:
    """Each notebook's path and the names its ``parameters`` cell declares; a missing file is a
    FileNotFoundError that names it (checked for all before anything runs)."""
    import papermill as pm

    paths = [project_path(nb) for nb in notebooks]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Notebook(s) not found: {', '.join(missing)}; see notebooks/ for the numbered ones.")
    return {p: set(pm.inspect_notebook(str(p))) for p in paths}


def check_parameters(params: dict, declared: dict[Path, set[str]]) -> None:
    """A ValueError for parameters that none of the notebooks declares (a typo would else be ignored)."""
    known = set().union(*declared.values())
    unused = sorted(set(params) - known)
    if unused:
        raise ValueError(f"Parameter(s) {', '.join(unused)} are declared by none of the notebooks "
                         f"({', '.join(p.name for p in declared)}); their parameters: {', '.join(sorted(known))}.")


def check_values(params: dict) -> None:
    """A ValueError naming the parameter when a model setting is invalid (``epochs: 0``, an unknown
    ``lr_schedule``...): every model of ``params["models"]`` is configured as notebook 02 would,
    so a bad value stops the run before preprocessing or training starts."""
    from utils.config import make_config, model_names

    if "models" not in params:
        return
    for name in model_names(params["models"]):
        make_config(name, **params)


def chain_notebooks() -> list[Path]:
    """The project's numbered notebooks, in order (``notebooks/NN_*.ipynb``)."""
    return sorted(project_path("notebooks").glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks in order with the parameter file; 2 on a bad parameter file or notebook path."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", help="notebooks to run, in order")
    ap.add_argument("--params", required=True, help="YAML file of parameters (params/full.yaml, quick, smoke)")
    ap.add_argument("--out", required=True, help="folder for the executed copies")
    ap.add_argument("--prepare-only", action="store_true", help="inject parameters, do not execute")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override one parameter of the file (the value read as YAML), "
                         "e.g. --set data_dir=data/processed")
    args = ap.parse_args(argv)

    import papermill as pm

    # papermill streams each cell's output through its logger: show it, so progress is visible
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("papermill").setLevel(logging.INFO)
    for noisy in ("traitlets", "asyncio", "blib2to3", "nbconvert"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        params = {**load_params(args.params), **parse_overrides(args.set)}
        declared = declared_parameters(args.notebooks)
        chain = declared_parameters([p for p in chain_notebooks() if p not in declared])  # each read once
        check_parameters(params, {**chain, **declared})
        check_values(params)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {args.params}: {e}" if not isinstance(e, FileNotFoundError) else f"error: {e}",
              file=sys.stderr)
        return 2
    out = project_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this: CodeBLEU's data-flow match orders variable names through Python sets,
    # so with random string hashing the same outputs score differently in every process.
    os.environ.setdefault("PYTHONHASHSEED", HASH_SEED)
    timings: dict[str, float] = {}
    total = time.perf_counter()
    for src, accepted in declared.items():
        dst = out / src.name
        print(f"== {src.name} -> {dst}", flush=True)
        start = time.perf_counter()
        # each notebook gets only the parameters it declares
        pm.execute_notebook(str(src), str(dst), parameters={k: v for k, v in params.items() if k in accepted},
                            kernel_name=args.kernel,
                            prepare_only=args.prepare_only, log_output=not args.prepare_only,
                            progress_bar=False, cwd=str(project_path(".")))
        timings[src.name] = round(time.perf_counter() - start, 1)
        if not args.prepare_only:
            print(f"== {src.name} done in {timings[src.name]:.0f}s", flush=True)
    timings["total"] = round(time.perf_counter() - total, 1)
    if not args.prepare_only:
        write_text(out / "timings.json", json.dumps(timings, indent=2) + "\n")
        print(json.dumps(timings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
