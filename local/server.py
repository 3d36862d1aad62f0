"""The local server as the benchmarks, the local load test (``bench.loadtest``) and the tests
run it: ``python -m local.serve`` in a subprocess on a free loopback port, with settings given
as EMNIST_EDGE_* variables, waited for until ready, measured (resident memory), and stopped by
its PID.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local.serve import base_url
from shared.config import PREFIX, REPO_ROOT

READY_PATH = "/api/health/ready"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(descendant for child in children for descendant in process_tree(int(child)))]


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, from /proc/<pid>/status (VmRSS, kB)."""
    total_kb = 0
    for member in process_tree(pid):
        status = Path(f"/proc/{member}/status").read_text().splitlines()
        total_kb += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total_kb / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) of a process and its children so far, from
    /proc/<pid>/stat."""
    ticks = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_list(text: str) -> frozenset[int]:
    """CPUs written as ``taskset -c`` takes them (``0,1``, ``0-3``, ``0-1,4``); raises
    ``argparse.ArgumentTypeError`` (a command line's error) for anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            span = range(int(first), int(last or first) + 1)
        except ValueError:
            span = range(0)
        if not span or span.start < 0:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a CPU list as taskset -c takes it (0-1, say)")
        cpus.update(span)
    return frozenset(cpus)


def leave_cpus(cpus: Collection[int]) -> str:
    """Confine this process (a load generator, and whatever it starts from now on) to the
    CPUs it may use other than ``cpus``, the servers'; says which, for a report's header.
    Exits with a message if ``cpus`` are not all this process's, or are all of them."""
    mine = os.sched_getaffinity(0)
    if not set(cpus) <= mine:
        raise SystemExit(f"CPUs {_ranges(set(cpus) - mine)} are not among this process's "
                         f"({_ranges(mine)})")
    others = mine - set(cpus)
    if not others:
        raise SystemExit(f"no CPU is left for the load generator beside {_ranges(cpus)}")
    os.sched_setaffinity(0, others)
    return f"servers on CPUs {_ranges(cpus)}, load generator on {_ranges(others)}"


def _ranges(cpus: Collection[int]) -> str:
    """``cpu_list``'s notation for a set of CPUs."""
    ordered = sorted(cpus)
    runs: list[list[int]] = []
    for cpu in ordered:
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def is_ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", READY_PATH)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass(frozen=True)
class Server:
    """A started server: its process, URL, and seconds from spawn to answering ready."""

    process: subprocess.Popen[bytes]
    port: int
    ready_s: float

    @property
    def url(self) -> str:
        return base_url("127.0.0.1", self.port)

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def cpu_s(self) -> float:
        return cpu_s(self.process.pid)


def start(log: IO[bytes], settings: Mapping[str, str] | None = None,
          workers: int | None = None, port: int | None = None, timeout_s: float = 120,
          args: Sequence[str] = (), root: Path = REPO_ROOT,
          cpus: Collection[int] | None = None) -> Server:
    """Spawn the server with ``settings`` (names without the EMNIST_EDGE_ prefix) and further
    command-line ``args``, ``workers`` processes (default: the server's, one per core), and wait
    until it answers ready; raises RuntimeError (the process killed) if it never does. ``root``:
    the checkout whose server runs (another one, e.g. an older commit's worktree, for A/B).
    ``cpus``: the only CPUs it (and every process it starts) may run on (default: any)."""
    port = port or free_port()
    env = {**os.environ, **{PREFIX + name: value for name, value in (settings or {}).items()}}
    started = time.perf_counter()
    process = spawn(
        [sys.executable, "-m", "local.serve", "--port", str(port), "--no-access-log",
         *(("--workers", str(workers)) if workers else ()), *args],
        log, cpus, cwd=root, env=env,
    )
    return wait_ready(process, port, started, timeout_s)


def spawn(command: Sequence[str], log: IO[bytes], cpus: Collection[int] | None,
          **options: Any) -> subprocess.Popen[bytes]:
    """A server process, its output in ``log``, confined to ``cpus`` from before it runs (its
    workers inherit that): a benchmark gives the server cores of its own, and the load
    generator the others."""
    # Between fork and exec, a single system call: safe even with the caller's threads running.
    confine = None if cpus is None else functools.partial(os.sched_setaffinity, 0, set(cpus))
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=confine,
                            **options)


def wait_ready(process: subprocess.Popen[bytes], port: int, started: float,
               timeout_s: float) -> Server:
    """The spawned server once it answers ready; raises RuntimeError (the process killed) if
    it exits or ``timeout_s`` passes first."""
    while time.perf_counter() - started < timeout_s and process.poll() is None:
        if is_ready(port):
            return Server(process, port, time.perf_counter() - started)
        time.sleep(0.01)
    stop(process)
    raise RuntimeError(f"the server on port {port} did not become ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate by PID; kill if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(log: IO[bytes], settings: Mapping[str, str] | None = None,
            **options: Any) -> Iterator[Server]:
    """``start``, then ``stop`` on the way out, whatever happens."""
    server = start(log, settings, **options)
    try:
        yield server
    finally:
        stop(server.process)
