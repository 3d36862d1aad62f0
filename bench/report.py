"""``python -m bench.report`` (``make bench``): every performance figure in one run.

Side by side, with ratios:

- model only, in-process (``model.benchmark``): our model against the original EdgeCNN,
  single-image latency and batch throughput;
- HTTP round trips at 1, 16 and 64 closed-loop clients and requests/s, dynamic batching off
  against on (``bench.http_clients``), next to the handler's in-process latency;
- the same against the reference server (``bench.reference``: bare FastAPI, naive crop and
  resize, a model of EdgeCNN's architecture), with as many workers, measured in turn with ours
  in the same rounds: requests/s per core;
- batches: items/s for a 100k-image IDX file and a 10k-PNG zip through Azurite
  (``bench.batch``; skipped when Azurite is not installed), next to model-only;
- cold start: process start to the first prediction served over HTTP, next to a bare
  ``python -c "import torch"`` measured in the same run;
- resident memory of the server, ready and after the load.

Writes ``artifacts/bench/report.json`` and draws ``docs/bench.png``. Everything runs on this
machine's cores, load generator included: figures to compare with each other, not a ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import http_clients, plot, reference
from local import server
from shared.config import REPO_ROOT, Settings
from shared.process_tuning import tune_process

OUT = REPO_ROOT / "artifacts" / "bench"
FIGURE = REPO_ROOT / "docs" / "bench.png"
REFERENCE = "reference"
IMPORT_TORCH = [sys.executable, "-c", "import torch, time; print(repr(time.time()))"]


def model_only(rounds: int) -> dict[str, Any]:
    """Ours against EdgeCNN, in-process (``model.benchmark``'s own functions)."""
    from model.benchmark import baseline, single_latencies, throughput
    from shared.model_loader import load_model

    settings = Settings.from_env()
    ours = load_model(settings.model_path, settings.manifest_path)
    edge, _ = baseline()
    models = {"emnist-edge": ours.forward, "EdgeCNN": edge}
    latency = single_latencies(models, rounds, 200)
    return {
        "single image p50 (us, 1 thread)": {n: latency[n]["p50_us"] for n in models},
        "single image p99 (us, 1 thread)": {n: latency[n]["p99_us"] for n in models},
        "batch 256 (images/s, 1 thread)": throughput(models, 1, rounds),
        "batch 256 (images/s, 2 threads)": throughput(models, 2, rounds),
    }


def batches(repeats: int) -> dict[str, Any] | None:
    """Batch items/s through Azurite (``bench.batch``'s measurement: best of
    ``repeats`` runs, its figure of merit); None without Azurite."""

    from bench.batch import measure_batches
    from local import azurite
    from shared.model_loader import ModelSpec, load_spec

    if not azurite.is_installed():
        return None
    settings = Settings.from_env()
    model = load_spec(ModelSpec.of(settings))
    measured = measure_batches(settings, model, 100_000, 10_000, repeats)
    return {m.title: {"items": m.items, "end_to_end": m.best("end_to_end"),
                      "model_only": m.best("model_only")} for m in measured}


def cold_start(repeats: int) -> dict[str, Any]:
    """Process start to the first prediction served, and a bare ``import torch``, alternated;
    the medians, and the server's resident memory once ready."""
    sample = http_clients.corpus()[0]
    first: list[float] = []
    torch_s: list[float] = []
    rss: list[float] = []
    with tempfile.TemporaryFile() as log:
        for _ in range(repeats):
            # Until torch is imported, not until the process exits: the wall clock (comparable
            # across processes) when the child has it, as the server is timed to its answer.
            started = time.time()
            imported = subprocess.run(IMPORT_TORCH, check=True, capture_output=True, text=True)
            torch_s.append(float(imported.stdout) - started)
            with server.running(log) as running:
                started = time.perf_counter()
                connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
                try:
                    http_clients.post(connection, sample)
                finally:
                    connection.close()
                first.append(running.ready_s + time.perf_counter() - started)
                rss.append(running.rss_mib())
    return {"first prediction (s)": statistics.median(first),
            "import torch (s)": statistics.median(torch_s),
            "server RSS ready (MiB)": statistics.median(rss)}


def http_figures(requests: int, rounds: int) -> dict[str, Any]:
    """Closed-loop clients against servers with batching off and on (``bench.http_clients``)
    and the reference server (``bench.reference``), all measured in turn in each round."""
    samples = http_clients.corpus()
    local = http_clients.Load.of(1, http_clients.in_process(samples, requests), 0.0)
    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers = http_clients.running_modes(stack, OUT)
        bare = http_clients.started(stack, reference.running, OUT / "server-reference.log",
                                    Settings.from_env().workers)
        results = http_clients.compare({**servers.ports, REFERENCE: bare.port}, samples,
                                       http_clients.CONCURRENCY, requests, rounds,
                                       unchecked=frozenset({REFERENCE}))
        rss = servers.rss_mib() | {REFERENCE: bare.rss_mib()}
    figures = {mode: {str(c): asdict(load) for c, load in loads.items()}
               for mode, loads in results.items()}
    return {"in-process classify": asdict(local), "reference": figures.pop(REFERENCE),
            "modes": figures, "server RSS after load (MiB)": rss}


Row = tuple[str, float, float | None]


def table(report: dict[str, Any]) -> list[str]:
    """The report as aligned rows: figure, the two values compared, their ratio; a section
    heading names the two columns."""
    sections: list[tuple[str, str, str, list[Row]]] = []
    model = report["model_only"]
    sections.append(("model only, in-process", "emnist-edge", "EdgeCNN", [
        (name, values["emnist-edge"], values["EdgeCNN"]) for name, values in model.items()]))
    figures = report["http"]
    modes = figures["modes"]
    rows: list[Row] = [("in-process classify p50 (ms, no HTTP)",
                        figures["in-process classify"]["p50_ms"], None)]
    rows += [(f"{clients} clients: {field.replace('_', ' ')}", modes["on"][clients][field],
              modes["off"][clients][field])
             for clients in modes["on"] for field in ("p50_ms", "p99_ms", "rps")]
    rss = figures["server RSS after load (MiB)"]
    rows.append(("server RSS after load (MiB)", rss["on"], rss["off"]))
    sections.append(("HTTP, a 300-450 px drawing per request", "batching on", "off", rows))
    bare = figures["reference"]
    cores = report["machine"]["cpus"]
    rows = [(f"{clients} clients: {field.replace('_', ' ')}", modes["on"][clients][field],
             bare[clients][field])
            for clients in modes["on"] for field in ("p50_ms", "p99_ms", "rps")]
    rows += [(f"{clients} clients: req/s per core", modes["on"][clients]["rps"] / cores,
              bare[clients]["rps"] / cores) for clients in modes["on"] if clients != "1"]
    rows.append(("server RSS after load (MiB)", rss["on"], rss[REFERENCE]))
    sections.append(("HTTP against the reference server", "emnist-edge", "reference", rows))
    if report["batch"]:
        sections.append(("batches through Azurite (items/s)", "end to end", "model only", [
            (f"{title}, {batch['items']:,} items", batch["end_to_end"], batch["model_only"])
            for title, batch in report["batch"].items()]))
    cold = report["cold_start"]
    sections.append(("cold start", "server", "import torch", [
        ("process start to first prediction (s)", cold["first prediction (s)"],
         cold["import torch (s)"]),
        ("server RSS when ready (MiB)", cold["server RSS ready (MiB)"], None)]))
    lines = []
    for title, left, right, section_rows in sections:
        lines.append(f"{title:44} {left:>13} {right:>13} {'ratio':>8}")
        for name, a, b in section_rows:
            compared = f"{b:13,.2f} {a / b:7.2f}x" if b else ""
            lines.append(f"  {name:42} {a:13,.2f} {compared}")
    return lines


def caption(settings: Settings) -> str:
    return (f"emnist-edge, local server ({settings.workers} worker(s) of "
            f"{settings.torch_threads} torch thread(s)) and load generator on the same "
            f"{os.cpu_count()} CPUs; drawings of 300-450 px")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--requests", type=int, default=600, help="HTTP requests per round")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    tune_process()  # the batches run in this process, as in the blob trigger's
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "http": http_figures(args.requests, args.rounds),
        "cold_start": cold_start(args.rounds),
        "model_only": model_only(args.rounds * 2),
        "batch": batches(2),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    plot.draw(report["http"]["modes"], caption(Settings.from_env()), args.figure)
    print(f"emnist-edge benchmark report ({os.cpu_count()} CPUs, {report['seconds']:.0f} s; "
          f"load generator on the same machine)")
    print("\n".join(table(report)))
    print(f"written: {OUT / 'report.json'}, {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
