"""Schemathesis over the running server's own OpenAPI document: every operation fuzzed with a
bounded number of generated requests (valid and invalid) under every check schemathesis has
(no server error, status codes, content types, headers and response schemas as documented,
invalid data rejected, valid data accepted, Allow headers). Zero failures.

It runs as schemathesis's own command (its pytest plugin does not load under this pytest), with
a fixed seed, so a failure reproduces with the command line it prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Bounded so that the suite stays within CI's budget (about 30 s on this project's machine).
EXAMPLES = 25
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_api_conforms_to_its_own_schema(http_server, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis), "--no-color", "--config-file", str(CONFIG), "run",
        f"{http_server.url}/api/openapi.json", "--checks", "all",
        "--max-examples", str(EXAMPLES), "--workers", "1",
        "--generation-deterministic", "--suppress-health-check", "all",
        "--request-timeout", "30",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, f"{' '.join(command)}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
