"""``python -m bench.http_clients --compare``: two servers that differ in one setting, side by
side, with each server's CPU time per request next to its latency and throughput."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from local import server
from tests.integration.conftest import run_http_clients


def test_cpu_seconds_count_a_process_and_its_children():
    before = server.cpu_s(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while server.cpu_s(os.getpid()) - before < 0.3:  # the child's spinning counts
            assert time.monotonic() < deadline, "the child's CPU time never showed"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()


def test_a_comparison_reports_each_servers_cpu_per_request(tmp_path):
    lines = run_http_clients(tmp_path, "--compare", "telemetry", "--clients", "1", "--workers",
                             "1")
    [cpu] = [line for line in lines if "server CPU ms/request" in line]
    off, on = (float(value) for value in cpu.split()[-3:-1])
    assert 0 < off < 1000 and 0 < on < 1000
