"""HTTP benchmark: ``python -m bench.http_clients [--clients 1 16 64] [--requests N]``.

Closed-loop keep-alive clients (threads, each with its own connection, each request sent as
soon as the last was answered) post drawn characters of about 300-450 px to local servers with
dynamic batching off and on, started side by side on free loopback ports and measured
alternately, round by round, so that the machine's noise hits both alike. Closed loop measures
the throughput ceiling at C clients; its latency is mostly queueing (about C / throughput), which
is why the SLO itself is gated by Locust at a fixed offered load (``python -m loadtests``).
Also: in-process classify latency (the handler's code path, no HTTP), each server's CPU time
per request (its processes' CPU seconds from /proc, read around every measurement), resident
memory of each server after the load. The load generator shares the cores with the server (a
floor), unless ``--server-cpus`` gives the servers cores of their own. ``--compare telemetry``
sets the SDK off and on instead of batching.

``--against DIR`` measures instead, in the same alternating rounds, the server of another
checkout of this repository (an older commit's ``git worktree``, say), this checkout's, and the
reference server (``bench.reference``), each with its defaults: an A/B of a change.

``--per-core`` measures, in the same alternating rounds, this checkout's server and the
reference server each with one worker and with ``--workers``: the per-core targets are ratios
to the reference's one worker (ours with one worker at least level with it, with the default
workers at least twice it; README, "Performance and load tests"), so both sides of each
ratio come from one run. It reads every server's CPU time per request too, and gives the ratios
of requests per CPU second beside those of requests/s: what each would serve on cores of its
own, without the load generator beside it.

``--photos`` posts phone photos instead of drawings (``bench.preprocess.photo``: every
character as 1200x900 and 1200x1600 JPEGs of unevenly lit paper, at the size of the preprocessing
table's and small enough for a second pass), with any of the modes above.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import reference
from bench.preprocess import photo
from loadtests import checks
from loadtests.corpus import SLO_SIZES, STROKES, Sample, build
from local import server
from shared.config import Settings
from shared.model_loader import load_model
from shared.preprocess import DecodeBudget
from shared.process_tuning import tune_process
from shared.uploads import Upload, classify_uploads

PATH = "/api/classify"
CONCURRENCY = (1, 16, 64)
MODES = {"off": {"DYNAMIC_BATCHING": "0"}, "on": {"DYNAMIC_BATCHING": "1"}}
# What else a run can set side by side (``--compare``): the servers' settings per mode.
COMPARISONS = {
    "batching": ("dynamic batching", MODES),
    # Off: no OpenTelemetry SDK (the API records into no-ops); on: the local server's default,
    # the SDK with its Prometheus reader.
    "telemetry": ("telemetry", {"off": {"METRICS": "0"}, "on": {"METRICS": "1"}}),
}


@dataclass(frozen=True)
class Load:
    """One closed-loop measurement: latency percentiles (ms), requests/s and, where the
    server's processes were watched, their CPU time per request (ms)."""

    clients: int
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float
    cpu_ms: float | None = None

    @classmethod
    def of(cls, clients: int, samples_ns: list[int], rps: float,
           cpu_ms: float | None = None) -> Load:
        p50, p95, p99 = np.percentile(np.asarray(samples_ns) / 1e6, [50, 95, 99])
        return cls(clients, len(samples_ns), round(float(p50), 2), round(float(p95), 2),
                   round(float(p99), 2), round(rps, 1),
                   None if cpu_ms is None else round(cpu_ms, 3))


def timed(action: Callable[[], object], count: int) -> list[int]:
    samples = []
    for _ in range(count):
        started = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - started)
    return samples


DRAWINGS = f"drawn characters {SLO_SIZES[0]}-{SLO_SIZES[-1]} px"
# The photos' frames, and the share of the shorter side the character's square takes: at 0.5
# a first pass reads it, at 0.3 it needs a second (bench.preprocess's table has one of each).
PHOTO_FRAMES = ((1200, 900), (1200, 1600))
PHOTO_BOXES = (0.5, 0.3)
PHOTOS = f"phone photos {' and '.join(f'{w}x{h}' for w, h in PHOTO_FRAMES)} (JPEG)"


def corpus() -> list[Sample]:
    return build(SLO_SIZES)


def photo_corpus() -> list[Sample]:
    """Every character as a phone photo in each frame, large and small (``--photos``)."""
    return [Sample(label=label, size=max(frame), fmt="JPEG",
                   data=photo(*frame, label=label, seed=seed, box=box))
            for seed, label in enumerate(STROKES) for frame in PHOTO_FRAMES
            for box in PHOTO_BOXES]


def in_process(samples: list[Sample], count: int) -> list[int]:
    """Latencies of the classify handler's own work (decode, preprocess, forward), no HTTP,
    with the local server's torch threads."""
    settings = Settings.from_env()
    model = load_model(settings.model_path, settings.manifest_path, settings.torch_threads)
    cycle = itertools.cycle(samples)

    def classify() -> None:
        classify_uploads([Upload(None, next(cycle).data)], [DecodeBudget.for_request(settings)],
                         3, False, model, settings)

    timed(classify, 20)
    return timed(classify, count)


def post(connection: http.client.HTTPConnection, sample: Sample, check: bool = True) -> None:
    """One classify request; the answer checked down to the label (``check``), or only for
    its status (the reference server's untrained model)."""
    connection.request("POST", PATH, body=sample.data,
                       headers={"Content-Type": sample.content_type})
    response = connection.getresponse()
    body = response.read()
    if check:
        error = checks.classify_answer(response.status, body, [sample.label])
    else:
        error = None if response.status == 200 else f"status {response.status}: {body[:200]!r}"
    if error:
        raise RuntimeError(f"classify answered wrong: {error}")


def closed_loop(port: int, samples: list[Sample], clients: int,
                per_client: int, check: bool = True) -> tuple[list[int], float]:
    """``clients`` threads with a keep-alive connection each, ``per_client`` requests each:
    every latency (ns) and the wall time (s)."""
    latencies: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = itertools.islice(itertools.cycle(samples), offset, None)
        try:
            post(connection, next(mine), check)  # connect and warm before the clock starts
            barrier.wait()
            latencies.extend(timed(lambda: post(connection, next(mine), check), per_client))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies, time.perf_counter() - started


def per_client(clients: int, requests: int) -> int:
    """Requests per client: ``requests`` in all, at least 10 each (so every client's
    connection is past its first request)."""
    return max(10, requests // clients)


def compare(ports: dict[str, int], samples: list[Sample], concurrency: tuple[int, ...],
            requests: int, rounds: int, unchecked: frozenset[str] = frozenset(),
            cpu_s: Mapping[str, Callable[[], float]] | None = None
            ) -> dict[str, dict[int, Load]]:
    """Every mode at every concurrency, ``rounds`` times, modes alternating (their order
    flipped each round); latencies pooled over the rounds, requests/s their median. The
    answers of the servers in ``unchecked`` are checked for their status only. ``cpu_s``:
    each mode's server CPU seconds so far, read around each measurement for the median CPU
    time per request (the machine's drift moves it less than requests/s: a small cost per
    request is seen there first)."""
    latencies: dict[tuple[str, int], list[int]] = {}
    rates: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    for round_ in range(rounds):
        for clients in concurrency:
            for mode in (list(ports) if round_ % 2 == 0 else list(reversed(ports))):
                cpu_before = cpu_s[mode]() if cpu_s else 0.0
                samples_ns, wall_s = closed_loop(ports[mode], samples, clients,
                                                 per_client(clients, requests),
                                                 mode not in unchecked)
                if cpu_s:
                    cpu_ms.setdefault((mode, clients), []).append(
                        (cpu_s[mode]() - cpu_before) * 1e3 / len(samples_ns))
                latencies.setdefault((mode, clients), []).extend(samples_ns)
                rates.setdefault((mode, clients), []).append(len(samples_ns) / wall_s)
    return {mode: {clients: Load.of(clients, latencies[mode, clients],
                                    float(np.median(rates[mode, clients])),
                                    float(np.median(cpu_ms[mode, clients]))
                                    if cpu_s else None)
                   for clients in concurrency} for mode in ports}


@dataclass(frozen=True)
class ServerRun:
    """A server per batching mode, started together, measured, then stopped."""

    servers: dict[str, server.Server]

    @property
    def ports(self) -> dict[str, int]:
        return {mode: s.port for mode, s in self.servers.items()}

    @property
    def cpu_s(self) -> dict[str, Callable[[], float]]:
        return {mode: s.cpu_s for mode, s in self.servers.items()}

    def rss_mib(self) -> dict[str, float]:
        return {mode: s.rss_mib() for mode, s in self.servers.items()}


def started(stack: ExitStack, running: Callable[..., Any], log: Path, *args: Any,
            **options: Any) -> server.Server:
    """A server started by ``running`` (``local.server.running`` or ``bench.reference.running``)
    with its output in ``log``, both stopped and closed when ``stack`` unwinds."""
    return stack.enter_context(running(stack.enter_context(log.open("wb")), *args, **options))


def running_modes(stack: ExitStack, log_dir: Path, workers: int | None = None,
                  modes: dict[str, dict[str, str]] = MODES,
                  cpus: frozenset[int] | None = None) -> ServerRun:
    servers = {mode: started(stack, server.running, log_dir / f"server-{mode}.log", settings,
                             workers=workers, cpus=cpus)
               for mode, settings in modes.items()}
    return ServerRun(servers)


def rows(results: dict[str, dict[int, Load]]) -> Iterator[tuple[str, float, float]]:
    """Table rows: figure, batching off, batching on."""
    for clients in results["off"]:
        off, on = results["off"][clients], results["on"][clients]
        for field in ("p50_ms", "p99_ms", "rps", "cpu_ms"):
            if getattr(off, field) is not None:
                label = "server CPU ms/request" if field == "cpu_ms" else field.replace("_", " ")
                yield f"{clients} clients: {label}", getattr(off, field), getattr(on, field)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--requests", type=int, default=600, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=Settings.from_env().workers,
                        help="server processes (default: %(default)s, one per core)")
    parser.add_argument("--logs", type=Path, default=Path("artifacts/bench"))
    parser.add_argument("--compare", choices=COMPARISONS, default="batching",
                        help="what the two servers differ in (default: %(default)s)")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="another checkout: its server, this one's and the reference's")
    parser.add_argument("--per-core", action="store_true",
                        help="this server and the reference, each with one worker and with "
                             "--workers, side by side")
    parser.add_argument("--server-cpus", type=server.cpu_list, metavar="LIST",
                        help="the CPUs the servers run on, as taskset -c takes them (0-1, "
                             "say); the load generator takes the others (default: all share)")
    parser.add_argument("--photos", action="store_true",
                        help="post phone photos instead of drawings")
    args = parser.parse_args(argv)
    args.cpus = (server.leave_cpus(args.server_cpus) if args.server_cpus
                 else f"{os.cpu_count()} CPUs shared by the servers and the load generator")
    tune_process()  # the in-process figure runs here: as in the server's workers
    samples = photo_corpus() if args.photos else corpus()
    args.uploads = PHOTOS if args.photos else DRAWINGS
    if args.against:
        return against(args, samples)
    if args.per_core:
        return per_core(args, samples)
    title, modes = COMPARISONS[args.compare]
    local = Load.of(1, in_process(samples, args.requests), 0.0)
    args.logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers = running_modes(stack, args.logs, args.workers, modes, args.server_cpus)
        results = compare(servers.ports, samples, tuple(args.clients), args.requests,
                          args.rounds, cpu_s=servers.cpu_s)
        rss = servers.rss_mib()
    print(f"emnist-edge HTTP benchmark: {args.uploads}, "
          f"closed-loop clients, {args.rounds} rounds, {args.workers} worker(s), {args.cpus}")
    print(f"  in-process classify p50 / p99 (ms): {local.p50_ms:.2f} / {local.p99_ms:.2f}")
    print(f"  {title:30} {'off':>9} {'on':>9} {'on/off':>8}")
    for label, off, on in rows(results):
        print(f"  {label:30} {off:>9.2f} {on:>9.2f} {on / off:>7.2f}x")
    print(f"  server RSS after load (MiB): off {rss['off']:.0f}, on {rss['on']:.0f}")
    return 0


def against(args: argparse.Namespace, samples: list[Sample]) -> int:
    """``--against``: the other checkout's server, this one's and the reference, side by side."""
    args.logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        ports = {
            "other": started(stack, server.running, args.logs / "server-other.log",
                             workers=args.workers, root=args.against.resolve(),
                             cpus=args.server_cpus).port,
            "this": started(stack, server.running, args.logs / "server-this.log",
                            workers=args.workers, cpus=args.server_cpus).port,
            "reference": started(stack, reference.running, args.logs / "server-reference.log",
                                 args.workers, cpus=args.server_cpus).port,
        }
        results = compare(ports, samples, tuple(args.clients), args.requests, args.rounds,
                          unchecked=frozenset({"reference"}))
    print(f"{args.against} against this checkout and the reference server: {args.uploads}, "
          f"{args.rounds} rounds, {args.workers} worker(s), {args.cpus}")
    print_side_by_side(results, args.clients)
    return 0


def per_core(args: argparse.Namespace, samples: list[Sample]) -> int:
    """``--per-core``: this server and the reference, with one worker and with ``--workers``,
    side by side, with the servers' CPU time per request; then each requests/s as a ratio to
    the reference's one worker, and the same for requests per CPU second.

    Unless ``--server-cpus`` sets cores apart for the servers, the load generator runs on the
    same cores and the servers share them with it: the second ratio is then what each server
    would serve on a core of its own, the figure a machine with spare cores for the clients (or
    Azure, where the clients are elsewhere) sees."""
    args.logs.mkdir(parents=True, exist_ok=True)
    counts = sorted({1, args.workers})
    with ExitStack() as stack:
        servers = {}
        for workers in counts:
            servers[f"this/{workers}"] = started(stack, server.running,
                                                 args.logs / f"server-this-{workers}.log",
                                                 workers=workers, cpus=args.server_cpus)
            servers[f"reference/{workers}"] = started(
                stack, reference.running, args.logs / f"server-reference-{workers}.log",
                workers, cpus=args.server_cpus)
        results = compare({name: s.port for name, s in servers.items()}, samples,
                          tuple(args.clients), args.requests, args.rounds,
                          unchecked=frozenset(name for name in servers
                                              if name.startswith("reference")),
                          cpu_s={name: s.cpu_s for name, s in servers.items()})
    print(f"this checkout and the reference server, each with {' and '.join(map(str, counts))} "
          f"worker(s) (name/workers): {args.uploads}, {args.rounds} rounds, {args.cpus}")
    print_side_by_side(results, args.clients)
    more = f", this/{args.workers} >= {args.workers}" if args.workers > 1 else ""
    print(f"  requests/s as a ratio to reference/1 (targets: this/1 >= 1{more} at 16 clients)")
    print_ratios(results, args.clients, lambda load: load.rps)
    print("  requests per server CPU second, as a ratio to reference/1's (each on cores of "
          "its own)")
    print_ratios(results, args.clients, lambda load: 1 / load.cpu_ms)
    return 0


def print_ratios(results: dict[str, dict[int, Load]], clients: list[int],
                 figure: Callable[[Load], float]) -> None:
    """A row per concurrency: each server's ``figure`` over the reference's one worker's."""
    for count in clients:
        base = figure(results["reference/1"][count])
        print(f"  {f'{count} clients':24}" + "".join(
            f" {f'{figure(results[name][count]) / base:.2f}x':>{_width(name)}}"
            for name in results))


def _width(name: str) -> int:
    return max(9, len(name))


def print_side_by_side(results: dict[str, dict[int, Load]], clients: list[int]) -> None:
    """One column per server, p50, p99, requests/s and, where measured, the servers' CPU
    milliseconds per request, per concurrency."""
    print(f"  {'':24}" + "".join(f" {name:>{_width(name)}}" for name in results))
    measured = ("p50_ms", "p99_ms", "rps", "cpu_ms")
    for count in clients:
        for field in (f for f in measured
                      if getattr(results[next(iter(results))][count], f) is not None):
            label = f"{count} clients: {field.replace('_', ' ')}"
            print(f"  {label:24}" + "".join(
                f" {getattr(results[name][count], field):>{_width(name)}.2f}"
                for name in results))


if __name__ == "__main__":
    sys.exit(main())
