# Every target sets up its own .venv from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export MPLBACKEND ?= Agg

.PHONY: venv test lint demo bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build that this kind of machine keeps on disk; an open range pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

demo: $(STAMP)
	$(BIN)/python -m jaxmotif.demo

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(NUMBA_CACHE_DIR) demo_out
