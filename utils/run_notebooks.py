"""Run the numbered notebooks in order through papermill with one parameter file.

    python -m utils.run_notebooks --params params/full.yaml --out runs/full notebooks/0*.ipynb

Executed copies go to ``--out`` (git-ignored); the source notebooks are never written. With
``--prepare-only`` the parameters are injected without executing (nbval then runs the copies).
Each notebook's wall time is printed and written to ``<out>/timings.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

from utils.paths import project_path


def load_params(path: str | Path) -> dict:
    """Read a YAML parameter file: a mapping of notebook parameters shared by all notebooks."""
    p = project_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Parameter file {p} does not exist; see params/ for the available sets.")
    params = yaml.safe_load(p.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"Parameter file {p} must hold a mapping of parameter names to values.")
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", help="notebooks to run, in order")
    ap.add_argument("--params", required=True, help="YAML file of parameters (params/full.yaml, quick, smoke)")
    ap.add_argument("--out", required=True, help="folder for the executed copies")
    ap.add_argument("--prepare-only", action="store_true", help="inject parameters, do not execute")
    ap.add_argument("--kernel", default="python3")
    args = ap.parse_args(argv)

    import papermill as pm

    # papermill streams each cell's output through its logger: show it, so progress is visible
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("papermill").setLevel(logging.INFO)
    for noisy in ("traitlets", "asyncio", "blib2to3", "nbconvert"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        params = load_params(args.params)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = project_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    total = time.perf_counter()
    for nb in args.notebooks:
        src = project_path(nb)
        dst = out / src.name
        print(f"== {src.name} -> {dst}", flush=True)
        start = time.perf_counter()
        accepted = pm.inspect_notebook(str(src))  # pass each notebook only the parameters it declares
        pm.execute_notebook(str(src), str(dst), parameters={k: v for k, v in params.items() if k in accepted},
                            kernel_name=args.kernel,
                            prepare_only=args.prepare_only, log_output=not args.prepare_only,
                            progress_bar=False, cwd=str(project_path(".")))
        timings[src.name] = round(time.perf_counter() - start, 1)
        if not args.prepare_only:
            print(f"== {src.name} done in {timings[src.name]:.0f}s", flush=True)
    timings["total"] = round(time.perf_counter() - total, 1)
    if not args.prepare_only:
        (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        print(json.dumps(timings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
