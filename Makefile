# vaeserve: `make test` sets up everything and runs the checks; see README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_OUT ?= model/zoo/mnist-vae/1
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup serve dev chromium test lint smoke model quality screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python  ## the serving runtime only: numpy, onnxruntime, Pillow, pydantic (no torch)
	$(BIN)/pip install -q -e .

serve: setup  ## run the service on the shipped model at http://127.0.0.1:8000
	$(BIN)/python -m app

dev: $(BIN)/python  ## training (torch 2.13.0, CPU build) and the test tools
	$(BIN)/pip install -q -e '.[train,dev]'

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

chromium:  ## Debian's chromium, which the playground's browser tests drive (installed with apt-get as root when missing)
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "the browser tests need $(CHROMIUM): apt-get install chromium (as root)" >&2; exit 1; }

test: lint chromium
	$(BIN)/python -m pytest

screenshots: dev chromium  ## docs/img/playground-*.png from a real run of the playground on the shipped model
	$(BIN)/python -m tests.app.playground.screenshots docs/img

smoke: dev  ## build the Docker image in a real engine and check it (starts dockerd; see docker/smoke.sh)
	PY=$(BIN)/python bash docker/smoke.sh

model: dev  ## retrain the shipped default model from scratch, with the baseline comparison
	$(BIN)/python bench/quality.py --default-out $(MODEL_OUT) --work runs/quality

quality: dev  ## the same comparison, without touching the shipped model
	$(BIN)/python bench/quality.py --work runs/quality

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache build *.egg-info
