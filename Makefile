# Two commands on a fresh clone:  `make main` (the whole pipeline)  and  `make test` (the tests).
# Both create the virtual environment they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Executed notebooks go to runs/<parameter set>/ (git-ignored); sources stay output-free.
RUNS   := runs
# More pip options, e.g. PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu" (CPU-only torch)
PIP_EXTRA ?=
# CodeBLEU's data-flow match depends on Python's string hashing: fixed, so results repeat.
export PYTHONHASHSEED := 0

.PHONY: setup lock main main-small main-word main-small-word study study-small quick test lint unit notebooks-smoke benchmark recipe-study seeds clean-runs

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

# The main job: every numbered notebook, in order, with the full parameter set.
main: setup
	$(PY) -m utils.run_notebooks --params params/full.yaml --out $(RUNS)/full $(NOTEBOOKS)

# The same recipe at a smaller size (the recipe study's screening size, at most 3 epochs), into
# runs/small/: about 75 minutes on a 2-core CPU for the five models without retrieval (the two
# "+retrieval" models add about 70 more). Its figures and tables go to plots/ like the main job's.
main-small: setup
	$(PY) -m utils.run_notebooks --params params/studies/small.yaml --out $(RUNS)/small $(NOTEBOOKS)

# The same recipes with the original study's word vocabulary (the README's word-vs-BPE table): 01 and
# 02 build and train in runs/<name>-word/, then 03-05 score those checkpoints on the BPE run's
# test functions (data/processed, from `make main` / `make main-small` first), so both read the same ones.
WORD_TRAINED := $(filter %01_preprocess.ipynb %02_train.ipynb,$(NOTEBOOKS))
WORD_SCORED  := $(filter-out $(WORD_TRAINED),$(NOTEBOOKS))
# $(call word_run,<parameter file>,<output folder>)
word_run = $(PY) -m utils.run_notebooks --params $(1) --out $(2) $(WORD_TRAINED) && \
	$(PY) -m utils.run_notebooks --params $(1) --set data_dir=data/processed --out $(2)/scored $(WORD_SCORED)

main-word: setup
	$(call word_run,params/studies/full_word.yaml,$(RUNS)/full-word)

main-small-word: setup
	$(call word_run,params/studies/small_word.yaml,$(RUNS)/small-word)

# The original study's exact settings (word vocabulary, teacher forcing 0.5, dropout 0.5, up to 25
# epochs, the three classic models), into runs/study/.
study: setup
	$(PY) -m utils.run_notebooks --params params/studies/study.yaml --out $(RUNS)/study $(NOTEBOOKS)

# The same at the recipe study's screening size (embedding 64, hidden 128), into runs/study-small/:
# the README's study-settings table (the study's sizes take more than a session here).
study-small: setup
	$(PY) -m utils.run_notebooks --params params/studies/study_small.yaml --out $(RUNS)/study-small $(NOTEBOOKS)

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

# How the training recipe was chosen: one lever at a time on the validation split (plots/recipe_study.csv).
recipe-study: setup
	$(PY) -m utils.studies.recipe --models attention
	$(PY) -m utils.studies.recipe --models lstm rnn --recipes study combined

# The classic models under three seeds, scored on the test split (plots/seed_study.csv): the main run's
# own seed (42) is read from its checkpoints, two more are trained. Needs the main job's corpus and
# checkpoints; `make seeds SEED_PARAMS=params/studies/small.yaml` does it for `make main-small`.
SEED_PARAMS ?= params/full.yaml
seeds: setup
	$(PY) -m utils.studies.seeds --params $(SEED_PARAMS) --models rnn lstm attention --seeds 42 1 2

clean-runs:
	rm -rf $(RUNS)
