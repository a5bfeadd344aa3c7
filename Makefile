# Two commands set up everything on a fresh machine:
#   make repro   run the whole pipeline on the embedded demo data
#   make test    run the test suite
# Both create .venv and install requirements.txt into it when needed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist processes for make test (whole test files per worker); PYTEST_WORKERS=0 runs one process
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: help install repro test test-fast lint soak ui exps bench team-up team-down team-status ci clean-venv

help:
	@echo "make repro     run the pipeline (dvc repro) on the demo data"
	@echo "make test      run the test suite"
	@echo "make lint      ruff check + ruff format --check (config in pyproject.toml)"
	@echo "make soak      kill dvc repro at random moments for SOAK_SECONDS (900), check each recovery"
	@echo "make ui        MLflow UI on http://127.0.0.1:5000 for this project's store"
	@echo "make exps      dvc exp show with readable columns (changed params, test/val RMSE, classical baseline)"
	@echo "make bench     input-pipeline / training-step benchmark (small sizes)"
	@echo "make team-up   PostgreSQL + MLflow tracking server on 127.0.0.1 in .team/ (team-down stops them)"
	@echo "make ci        dvc pull, dvc repro, then params and metrics against CI_BASE (main) as Markdown"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements.txt into $(VENV) (about 5 minutes the first time: the PyTorch wheel is large)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m metallo.project init
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m metallo.project summary

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not soak" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow and not soak" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Random-time kills of dvc repro / dvc exp run, each followed by a recovering dvc repro
# (tests/pipeline/test_soak.py, docs/reliability.md). SOAK_SECONDS bounds the kills; the test prints its seed.
SOAK_SECONDS ?= 900
soak: $(STAMP)
	METALLO_SOAK_SECONDS=$(SOAK_SECONDS) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m soak -s tests/pipeline/test_soak.py $(PYTEST_ARGS)

ui: $(STAMP)
	$(BIN)/python -m metallo.cli ui

exps: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m metallo.cli exps

bench: $(STAMP)
	$(BIN)/python -m metallo.cli bench

# The local team stack (metallo/team/, docs/scaling.md): PostgreSQL + MLflow server, state in .team/.
team-up: $(STAMP)
	$(BIN)/python -m metallo.team up

team-down:
	$(BIN)/python -m metallo.team down

team-status:
	$(BIN)/python -m metallo.team status

# What CI runs on a pull request (metallo/ci.py, .github/workflows/ci.yml): dvc pull, dvc repro, then
# dvc params/metrics diff against CI_BASE as Markdown (also written to CI_REPORT when set).
CI_BASE ?= main
CI_REPORT ?=
ci: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m metallo.ci --base $(CI_BASE) $(if $(CI_REPORT),--report $(CI_REPORT))

clean-venv:
	rm -rf $(VENV)
