"""The load test, end to end and both ways: the smoke profile against the real server (plus a
batch user against Azurite and the poller, when Azurite is installed) passes, and a gate that no
run can meet fails it with a message naming the breached figure. The verdict arithmetic is
checked on its own first, so that a failure there does not hide behind a Locust run."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.loadtest import POLL_S
from loadtests import __main__ as loadtest
from loadtests.gates import Figures, Gates, percentile
from loadtests.settings import STORAGE_VARIABLE
from local import azurite
from shared.config import Settings
from shared.model_loader import ModelRegistry


def figures(p95: float, p99: float, failures: int = 0) -> Figures:
    return Figures("all", 100, failures, 50.0, 5, p95, p99, 40)


def test_percentiles_come_from_the_merged_histogram():
    histogram = Counter({1.0: 90, 10.0: 9, 100.0: 1})
    assert [percentile(histogram, p) for p in (0.5, 0.9, 0.95, 0.99, 1.0)] == [1, 1, 10, 10, 100]
    assert percentile(Counter(), 0.99) == 0


def test_each_breached_gate_is_named():
    gates = Gates(p95_ms=15, p99_ms=25)
    assert gates.breaches(figures(15, 25), figures(15, 25)) == []
    breaches = gates.breaches(figures(16, 30), figures(16, 30, failures=1))
    assert [message.split()[0] for message in breaches] == ["p95", "p99", "failure"]
    assert Gates(p95_ms=None, p99_ms=None, max_failure_ratio=0.05).breaches(
        figures(900, 900), figures(900, 900, failures=5)) == []


@pytest.fixture(scope="module")
def batch_storage() -> Iterator[bool]:
    """Azurite and the poller, exported to the load generator as the Functions host's storage
    setting; False (no batch user) when Azurite is not installed."""
    if not azurite.is_installed():
        yield False
        return
    # The load test's batches are small (processed in place): no shard workers, whose start
    # (torch, in each) would only compete with the server for the cores under measurement.
    settings = dataclasses.replace(Settings.from_env(), batch_poll_s=POLL_S, batch_workers=0)
    stack = azurite.start_local_batch_stack(settings, ModelRegistry())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STORAGE_VARIABLE, stack.connection_string)
        try:
            yield True
        finally:
            stack.stop()


@pytest.mark.integration
def test_smoke_profile_passes_with_every_answer_checked(http_server, batch_storage, tmp_path,
                                                        capsys):
    if not http_server.real_model:
        pytest.skip("the tiny test model gets the drawn labels wrong by design")
    status = loadtest.main(["--host", http_server.url, "--profile", "smoke",
                            "--reports", str(tmp_path), "--run-time", "4"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "PASS smoke" in out
    verdict = json.loads((tmp_path / "smoke.verdict.json").read_text())
    assert verdict["passed"] and verdict["all"]["failures"] == 0
    names = {entry["name"] for entry in verdict["entries"]}
    assert "POST classify 1 image" in names
    assert any(name.startswith("BATCH ") for name in names) == batch_storage
    for report in ("smoke_stats.csv", "smoke.html", "smoke.json"):
        assert (tmp_path / report).is_file()


@pytest.mark.integration
def test_an_impossible_gate_fails_the_run_and_names_the_figure(http_server, tmp_path, capsys):
    status = loadtest.main(["--host", http_server.url, "--profile", "slo", "--users", "2",
                            "--reports", str(tmp_path), "--run-time", "2",
                            "--p95-ms", "off", "--p99-ms", "0", "--max-failure-ratio", "1"])
    error = capsys.readouterr().err
    assert status == 1
    assert "FAIL slo" in error and "p99 latency" in error and "p95" not in error
