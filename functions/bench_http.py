"""HTTP benchmark: ``python -m functions.bench_http [--requests N] [--clients C] [--workers W]``.

Prints, for one 280x280 PNG of a drawn character: in-process classify latency (the handler's
own code path, no HTTP), HTTP round trips at 1 and at C concurrent keep-alive clients against a
local server this script starts on a free loopback port, throughput, the HTTP overhead, the time
from process start to ready, and the server's resident memory. The load generator runs on the
same cores as the server, so the concurrent numbers are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from functions.classify import Upload, classify_uploads
from shared.config import REPO_ROOT, Settings
from shared.model_loader import get_model

PATH = "/api/classify"
HEADERS = {"Content-Type": "image/png"}


def drawn_seven(size: int = 280) -> bytes:
    """A 7 drawn with a thick pen on an opaque white RGBA canvas, as the page sends it."""
    image = Image.new("RGBA", (size, size), "white")
    points = [(0.25 * size, 0.2 * size), (0.75 * size, 0.2 * size), (0.45 * size, 0.85 * size)]
    ImageDraw.Draw(image).line(points, fill="#111", width=18, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples_ns) / 1e6, [50, 99])
    return float(p50), float(p99)


def timed(action: Callable[[], object], count: int) -> list[int]:
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - started)
    return samples


def in_process(image: bytes, count: int) -> list[int]:
    settings = Settings.from_env()
    model = get_model(settings)
    uploads = [Upload(None, image)]

    def classify() -> None:
        classify_uploads(uploads, 3, False, model, settings)

    timed(classify, 20)
    return timed(classify, count)


def post(connection: http.client.HTTPConnection, image: bytes) -> None:
    connection.request("POST", PATH, body=image, headers=HEADERS)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"classify answered {response.status}: {body[:200]!r}")


def clients(port: int, image: bytes, count: int, per_client: int) -> tuple[list[int], float]:
    """``count`` threads, each with its own keep-alive connection: latencies, wall seconds."""
    samples: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(count + 1)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            post(connection, image)  # connect and warm before the clock starts
            barrier.wait()
            samples.extend(timed(lambda: post(connection, image), per_client))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return samples, time.perf_counter() - started


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), from
    /proc/<pid>/status (VmRSS, in kB)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    own = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return own + sum(rss_mib(int(child)) for child in children)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, workers: int, log: io.BufferedWriter) -> tuple[subprocess.Popen, float]:
    """Start ``functions.serve``; the process and the seconds until it answered ready."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "functions.serve", "--port", str(port), "--workers", str(workers),
         "--no-access-log"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = started + 120
    while time.perf_counter() < deadline and process.poll() is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/api/health/ready")
            if connection.getresponse().status == 200:
                return process, time.perf_counter() - started
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.01)
    process.kill()
    raise RuntimeError("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.bench_http", description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="per measurement")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=Settings.from_env().workers)
    args = parser.parse_args(argv)
    image = drawn_seven()
    local = percentiles(in_process(image, args.requests))

    port = free_port()
    with tempfile.TemporaryFile() as log:
        process, ready_s = start_server(port, args.workers, log)
        try:
            rss_ready = rss_mib(process.pid)
            single, _ = clients(port, image, 1, args.requests)
            per_client = max(1, args.requests * 2 // args.clients)
            many, wall_s = clients(port, image, args.clients, per_client)
            rss_loaded = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    one, loaded = percentiles(single), percentiles(many)

    rows = [
        ("in-process classify p50 / p99 (ms)", f"{local[0]:.2f} / {local[1]:.2f}"),
        ("HTTP round trip, 1 client p50 / p99 (ms)", f"{one[0]:.2f} / {one[1]:.2f}"),
        (f"HTTP round trip, {args.clients} clients p50 / p99 (ms)",
         f"{loaded[0]:.2f} / {loaded[1]:.2f}"),
        (f"throughput at {args.clients} clients (req/s)", f"{len(many) / wall_s:.0f}"),
        ("HTTP overhead at 1 client, p50 (ms)", f"{one[0] - local[0]:.2f}"),
        ("process start to ready (s)", f"{ready_s:.2f}"),
        ("server RSS ready / after load (MiB)", f"{rss_ready:.0f} / {rss_loaded:.0f}"),
    ]
    print(f"emnist-edge HTTP benchmark: one 280x280 PNG, {args.requests} requests per "
          f"measurement, {args.workers} worker(s), {os.cpu_count()} CPUs")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
