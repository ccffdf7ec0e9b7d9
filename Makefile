# Two commands on a fresh clone:  `make main` (the whole pipeline)  and  `make test` (the tests).
# Both create the virtual environment they need first; `make` alone lists the targets and the studies.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Executed notebooks go to runs/<parameter set>/ (git-ignored); sources stay output-free.
RUNS   := runs
# The main job's parameter file: `make main PARAMS=params/large.yaml` for the original study's sizes.
PARAMS ?= params/full.yaml
# More pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu" (CPU-only torch)
PIP_EXTRA ?=
# CodeBLEU's data-flow match depends on Python's string hashing: fixed, so results repeat.
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help setup lock main quick evaluate release test lint unit notebooks-smoke study benchmark clean-runs

# What there is to run (before the environment exists too: the list of studies needs only Python).
help:
	@echo "make main            the whole pipeline: every notebook with params/full.yaml (runs/full/), under an hour on 2 cores"
	@echo "make main PARAMS=params/large.yaml   the same at the original study's sizes, to early stopping (a GPU or a long CPU run)"
	@echo "make evaluate        the README's table from the shipped weights (checkpoints/): notebooks 03-05, no training"
	@echo "make release         copy the main job's checkpoints into checkpoints/ with a new manifest"
	@echo "make quick           the same chain on less data with smaller models, in minutes (runs/quick/)"
	@echo "make test            the linter, the unit tests, every notebook under nbval (lint, unit, notebooks-smoke)"
	@echo "make study NAME=...  one study or notebook run: python -m utils.studies NAME ARGS (below)"
	@echo "make benchmark       training throughput on synthetic data (python -m utils.bench.steps)"
	@echo "make setup           the virtual environment from requirements.lock (make lock: a new lock)"
	@echo "make clean-runs      remove runs/ (executed notebooks, the studies' runs)"
	@echo
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m utils.studies --list

setup: $(VENV)/.installed

# The environment comes from requirements.lock (exact versions of every package); requirements.txt
# lists the direct dependencies, and `make lock` turns it into a new lock.
$(VENV)/.installed: requirements.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(PIP_EXTRA) -r requirements.lock
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (seq2seq)" > /dev/null
	echo "$(CURDIR)" > "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')/seq2seq_repo.pth"
	touch $@

# Refresh requirements.lock: a clean install of requirements.txt in a scratch environment, frozen.
# torch is written without its local build tag (2.13.0, not 2.13.0+cpu) so the lock resolves on PyPI too.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet $(PIP_EXTRA) -r requirements.txt
	{ echo "# Exact versions of every package, from a clean install of requirements.txt: \`make lock\` writes it."; \
	  .venv-lock/bin/python -m pip freeze --all | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > requirements.lock
	rm -rf .venv-lock

# The main job: every numbered notebook, in order, with the full parameter set (or PARAMS=...).
main: setup
	$(PY) -m utils.run_notebooks --params "$(PARAMS)" --out $(RUNS)/$(basename $(notdir $(PARAMS))) $(NOTEBOOKS)

# The README's table from the shipped weights, without training: the processed splits first where they
# are missing (notebook 01), then notebooks 03-05 on checkpoints/ (runs/evaluate/).
evaluate: setup
	$(if $(wildcard data/processed/test.jsonl),,$(PY) -m utils.run_notebooks --params params/full.yaml --out $(RUNS)/evaluate notebooks/01_preprocess.ipynb)
	$(PY) -m utils.run_notebooks --params params/full.yaml --set checkpoint_dir=checkpoints --out $(RUNS)/evaluate \
		$(filter-out %/01_preprocess.ipynb %/02_train.ipynb,$(NOTEBOOKS))

# The main job's checkpoints become the shipped weights (replace them only with the README's table).
release: setup
	$(PY) -m utils.evaluation.shipped --run $(RUNS)/full/checkpoints --params params/full.yaml

# A quick look (minutes): small data and models, same chain.
quick: setup
	$(PY) -m utils.run_notebooks --params params/quick.yaml --out $(RUNS)/quick $(NOTEBOOKS)

# The tests: the linter, unit tests, then every notebook under nbval with the smoke parameter set.
test: setup lint unit notebooks-smoke

lint: setup
	$(PY) -m ruff check .

unit: setup
	$(PY) -m pytest -q tests

notebooks-smoke: setup
	rm -rf $(RUNS)/smoke
	$(PY) -m utils.run_notebooks --params params/smoke.yaml --out $(RUNS)/smoke --prepare-only $(NOTEBOOKS)
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-cell-timeout=900 $(addprefix $(RUNS)/smoke/,$(notdir $(NOTEBOOKS)))

benchmark: setup
	$(PY) -m utils.bench.steps --synthetic --batches 20

# One study, or one of the README's other notebook runs (`python -m utils.studies --list` names them):
# `make study NAME=seeds ARGS="--params params/studies/small.yaml"`, `make study NAME=small`; without NAME, the list.
study: setup
	$(PY) -m utils.studies $(NAME) $(ARGS)

clean-runs:
	rm -rf $(RUNS)
