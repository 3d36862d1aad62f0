"""``python -m bench.http_clients --compare``: two servers that differ in one setting, side by
side, with each server's CPU time per request next to its latency and throughput."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import pytest

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
    assert "CPUs shared by the servers and the load generator" in lines[0]
    [cpu] = [line for line in lines if "server CPU ms/request" in line]
    off, on = (float(value) for value in cpu.split()[-3:-1])
    assert 0 < off < 1000 and 0 < on < 1000


def test_cpu_lists_are_read_as_taskset_writes_them():
    assert server.cpu_list("3") == {3}
    assert server.cpu_list("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "0,,1", "0-1-2", "1.5"])
def test_anything_else_is_refused_as_a_cpu_list(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a CPU list"):
        server.cpu_list(text)


def test_a_spawned_server_and_its_children_run_only_on_its_cpus(tmp_path):
    mine = os.sched_getaffinity(0)
    cpu = min(mine)
    child = "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)))"
    script = (f"{child}; subprocess.run([sys.executable, '-c', {child!r}])")
    with (tmp_path / "log").open("wb") as log:
        process = server.spawn([sys.executable, "-c", script], log, {cpu})
        assert process.wait(timeout=60) == 0
    assert (tmp_path / "log").read_text().split("\n")[:2] == [f"[{cpu}]"] * 2
    assert os.sched_getaffinity(0) == mine  # the caller's own is kept


def leave_cpus(cpus: str) -> subprocess.CompletedProcess[str]:
    """``server.leave_cpus`` in a process of its own (it confines the process it runs in)."""
    return subprocess.run(
        [sys.executable, "-c", "import os; from local import server; "
         f"print(server.leave_cpus(server.cpu_list({cpus!r}))); "
         "print(sorted(os.sched_getaffinity(0)))"],
        capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to split")
def test_the_load_generator_leaves_the_servers_cpus_to_them():
    mine = sorted(os.sched_getaffinity(0))
    done = leave_cpus(str(mine[0]))
    header, left = done.stdout.splitlines()
    assert header.startswith(f"servers on CPUs {mine[0]}, load generator on ")
    assert left == str(mine[1:])


def test_a_load_generator_without_a_cpu_is_refused():
    every = ",".join(map(str, os.sched_getaffinity(0)))
    done = leave_cpus(every)
    assert done.returncode == 1
    assert "no CPU is left for the load generator" in done.stderr


def test_servers_on_cpus_this_process_may_not_use_are_refused():
    done = leave_cpus(str(max(os.sched_getaffinity(0)) + 1))
    assert done.returncode == 1
    assert "are not among this process's" in done.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to split")
def test_a_comparison_on_cpus_of_its_own_says_so(tmp_path):
    lines = run_http_clients(tmp_path, "--compare", "telemetry", "--clients", "1", "--workers",
                             "1", "--server-cpus", str(min(os.sched_getaffinity(0))))
    assert "servers on CPUs" in lines[0] and "load generator on" in lines[0]
    [cpu] = [line for line in lines if "server CPU ms/request" in line]
    assert all(0 < float(value) < 1000 for value in cpu.split()[-3:-1])
