# vaeserve: `make test` sets up everything and runs the checks; see README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_OUT ?= model/zoo/mnist-vae/1
TEXTURE_OUT ?= model/zoo/fundus-vae/1
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup serve dev chromium test lint monitoring-tools smoke model texture-model quality screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: set-up runs again only when pyproject.toml changes, not on every `make serve`.
$(VENV)/.setup: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $@ $(VENV)/.setup

setup: $(VENV)/.setup  ## the serving runtime only: numpy, onnxruntime, Pillow, pydantic (no torch)

serve: setup  ## run the service on the shipped model at http://127.0.0.1:8000 (PORT=8001 make serve for another port)
	$(BIN)/python -m app $(if $(PORT),--port $(PORT))

dev: $(VENV)/.dev  ## training (torch 2.13.0, CPU build) and the test tools

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

monitoring-tools:  ## Debian's prometheus package (prometheus, promtool) for tests/monitoring: installed when missing, as root
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's prometheus package (promtool and a real Prometheus for the tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else echo "prometheus and promtool are missing and this is not root: the tests that need them skip (apt-get install prometheus)"; fi


chromium:  ## Debian's chromium, which the playground's browser tests drive (installed with apt-get as root when missing)
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "the browser tests need $(CHROMIUM): apt-get install chromium (as root)" >&2; exit 1; }

test: lint monitoring-tools chromium
	$(BIN)/python -m pytest

screenshots: dev chromium  ## docs/img/playground-*.png from a real run of the playground on the shipped model
	$(BIN)/python -m tests.app.playground.screenshots docs/img

smoke: dev  ## build the Docker image in a real engine and check it (starts dockerd; see docker/smoke.sh)
	PY=$(BIN)/python bash docker/smoke.sh

model: dev  ## retrain the shipped default model from scratch, with the baseline comparison
	$(BIN)/python bench/quality.py --default-out $(MODEL_OUT) --work runs/quality

texture-model: dev  ## retrain the shipped colour texture model (64x64 patches of scikit-image's retina photograph)
	rm -rf runs/fundus
	$(BIN)/python -m training.fundus runs/fundus/patches
	$(BIN)/python -m training --config training/configs/fundus.toml --data runs/fundus/patches \
	  --out $(TEXTURE_OUT) --run-dir runs/fundus/run --force

quality: dev  ## the same comparison, without touching the shipped model
	$(BIN)/python bench/quality.py --work runs/quality

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache build *.egg-info
