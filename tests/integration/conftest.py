"""Integration fixtures for the batch path: one real Azurite for the session, started and
stopped (by PID) here, with the batches and results containers created; and a helper that
runs the HTTP benchmark as a user would."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobClient

from local.azurite import Azurite, is_installed, start_azurite
from shared.config import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    if not is_installed():
        pytest.skip("Azurite is not installed: run `npm ci` at the repository root")
    settings = Settings.from_env()
    server = start_azurite(containers=(settings.batch_container, settings.results_container),
                           queues=(settings.shard_queue,))
    yield server
    server.stop()


def wait_for_blob(blob: BlobClient, who: str, timeout_s: float = 30) -> None:
    """Poll until ``blob`` exists (a batch's completion marker); fail naming who did not
    process the upload in time."""
    deadline = time.monotonic() + timeout_s
    while not blob.exists():
        assert time.monotonic() < deadline, f"{who} did not process the upload"
        time.sleep(0.1)


def run_http_clients(logs: Path, *options: str) -> list[str]:
    """``python -m bench.http_clients`` with ``options`` and its server logs in ``logs``, run
    small (20 requests a measurement, one round); the lines it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_clients", *options, "--requests", "20", "--rounds",
         "1", "--logs", str(logs)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()
