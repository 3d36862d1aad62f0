# The front door: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EMNIST_DIR ?= $(abspath ../shared/emnist)
export EMNIST_DIR

.PHONY: setup run browser test lint bench evaluate train clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m functions.serve

# Headless Chromium for the page tests: Debian's package, driven by Playwright (never
# `playwright install`, which downloads a browser build).
browser:
	command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

lint: setup
	$(PY) -m ruff check .

test: setup lint browser
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
