"""Integration fixtures for the batch path: one real Azurite for the session, started and
stopped (by PID) here, with the batches and results containers created."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.azurite import Azurite, is_installed, start_azurite
from shared.config import Settings


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    if not is_installed():
        pytest.skip("Azurite is not installed: run `npm ci` at the repository root")
    settings = Settings.from_env()
    server = start_azurite(containers=(settings.batch_container, settings.results_container))
    yield server
    server.stop()
