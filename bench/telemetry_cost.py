"""``python -m bench.telemetry_cost`` (part of ``make bench``): telemetry's CPU per request.

Three apps in one process, each built as the local server builds its own
(``functions.http_api.create_app``, one torch thread):

- ``off``: recording into the OpenTelemetry API with no SDK behind it (``EMNIST_EDGE_METRICS=0``);
- ``one by one``: the local SDK (Prometheus reader, no exemplars), each measurement handed to it
  as it is taken (``flush_every=1``);
- ``on``: the same SDK with the default buffering (``shared.telemetry.FLUSH_EVERY``).

Every image of the load test's corpus (300-450 px drawings as PNG, JPEG and WebP) is posted to
the three in turn, the order rotating, through the ASGI interface: no sockets and no client, whose
noise in the HTTP benchmark (``--compare telemetry``) is larger than the cost it looks for. The
main thread's CPU time (``time.thread_time``; single images are classified on the event loop) is
summed per app over each round; the figures are the medians over the rounds of each app's CPU
per request and of its difference from ``off`` in the same round. Writes
``artifacts/bench/telemetry.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from functions.http_api import create_app
from loadtests.corpus import SLO_SIZES, Sample, build
from local.telemetry import meter_provider
from shared.config import Settings
from shared.model_loader import ModelRegistry
from shared.process_tuning import tune_process
from shared.telemetry import Telemetry, model_identity, resource_attributes

OUT = "artifacts/bench/telemetry.json"
PATH = "/api/classify"


async def post(app: Any, sample: Sample) -> int:
    """One classify request through the app's ASGI interface; its status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"bench"), (b"content-type", sample.content_type.encode()),
                         (b"content-length", str(len(sample.data)).encode())]}
    messages = [{"type": "http.request", "body": sample.data, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def apps(settings: Settings) -> dict[str, Any]:
    """The three apps, sharing one model."""
    models = ModelRegistry()
    resource = Resource.create(resource_attributes(model_identity(settings.manifest_path)))

    def sdk() -> Any:
        return meter_provider(resource, [PrometheusMetricReader(registry=CollectorRegistry())])

    return {"off": create_app(settings, models, Telemetry()),
            "one by one": create_app(settings, models, Telemetry(sdk(), flush_every=1)),
            "on": create_app(settings, models, Telemetry(sdk()))}


async def measure(rounds: int, requests: int) -> dict[str, list[float]]:
    """Each app's CPU per request (us) in every round."""
    settings = dataclasses.replace(Settings.from_env(), torch_threads=1)
    built = apps(settings)
    samples = itertools.cycle(build(SLO_SIZES))
    per_round: dict[str, list[float]] = {name: [] for name in built}
    async with AsyncExitStack() as stack:
        for app in built.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        for round_ in range(rounds + 1):  # round 0 warms up and is not kept
            cpu = dict.fromkeys(built, 0.0)
            for i in range(requests):
                sample = next(samples)
                names = list(built)
                for name in names[i % 3:] + names[:i % 3]:
                    started = time.thread_time()
                    status = await post(built[name], sample)
                    await asyncio.sleep(0)  # the answer's background task (its telemetry)
                    cpu[name] += time.thread_time() - started
                    if status != 200:
                        raise RuntimeError(f"{name}: classify answered {status}")
            if round_:
                for name, seconds in cpu.items():
                    per_round[name].append(seconds / requests * 1e6)
    return per_round


def summary(per_round: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    off = per_round["off"]
    result = {}
    for name, cpu in per_round.items():
        extra = [mine - base for mine, base in zip(cpu, off, strict=True)]
        result[name] = {"cpu_us_per_request": statistics.median(cpu),
                        "extra_us": statistics.median(extra),
                        "extra_percent": 100 * statistics.median(
                            [e / base for e, base in zip(extra, off, strict=True)]),
                        "extra_us_min": min(extra), "extra_us_max": max(extra)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300, help="requests per app a round")
    parser.add_argument("--out", default=OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    tune_process()
    per_round = asyncio.run(measure(args.rounds, args.requests))
    result = summary(per_round)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                   "rounds": args.rounds, "requests": args.requests, "clock": "time.thread_time",
                   "apps": result, "per_round_us": per_round}, out, indent=2)
    print(f"telemetry's CPU per classify request, {args.rounds} rounds of {args.requests} "
          "requests per app (medians; extra: against 'off' in the same round)")
    print(f"{'app':<12}{'CPU us/request':>16}{'extra us':>10}{'extra %':>9}  extra us, rounds")
    for name, row in result.items():
        print(f"{name:<12}{row['cpu_us_per_request']:>16.0f}{row['extra_us']:>10.0f}"
              f"{row['extra_percent']:>9.2f}  "
              f"{row['extra_us_min']:.0f} to {row['extra_us_max']:.0f}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
