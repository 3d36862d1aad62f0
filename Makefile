# The front door: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EMNIST_DIR ?= $(abspath ../shared/emnist)
export EMNIST_DIR

.PHONY: setup run test lint bench evaluate train clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

IMAGES ?= examples/*.png
run: setup
	$(PY) -m shared classify $(IMAGES)

lint: setup
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m model.benchmark
	$(PY) -m model.fidelity --data $(EMNIST_DIR)

evaluate: setup
	$(PY) -m model.evaluate --data $(EMNIST_DIR) --split test

train: setup
	$(PY) -m model.train --data $(EMNIST_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
