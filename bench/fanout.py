"""Fan-out against in-place processing, end to end through Azurite, in one run:
``python -m bench.fanout [--png-items N] [--idx-items N] [--workers 1 2] [--rounds R]``.

- A zip of ``--png-items`` PNG cells (default 100,000): items/s processed in place (this
  process, the blob trigger's code), then fanned out (``functions.storage.submit_blob`` plans
  and queues; ``local.shard_workers`` processes, already warm, consume the queue) with each
  ``--workers`` count, from the upload's end to the summary's appearance. Targets on this
  2-core machine: 2 workers >= 1.7x in place; 1 worker within 10 % of in place (the overhead).
- An IDX file of ``--idx-items`` images (default 1,000,000): the same, with each worker
  process's peak resident memory (VmHWM; the in-place figure is ``python -m bench.batch``'s).

The speed of this shared machine drifts by tens of percent over minutes, so the measurements
alternate: ``--rounds`` rounds of in place and each worker count, in turn (in place first in
even rounds, last in odd ones), each round opened by the model alone on 10,000 tiles in this
process (a drift gauge: ``model_only_s``); the ratios are of the medians. Each run also
records the CPU seconds spent meanwhile by this process (in place: all of the work; fanned out:
planning and waiting), by the worker processes and by Azurite, and the cores they kept busy on
average (their sum over the wall time): what bounds a speed-up on a machine of two cores. Writes
``artifacts/bench/fanout.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.batch import draw_prototypes, write_idx, write_png_zip
from functions.storage import QueueShards, blob_service, process_blob, shard_queue, submit_blob
from local.azurite import start_azurite
from local.server import cpu_s
from local.shard_workers import start_workers, stop_workers
from shared.classifier import top_k_arrays
from shared.config import REPO_ROOT, Settings
from shared.model_loader import ModelRegistry, ModelSpec
from shared.process_tuning import tune_process

OUT = REPO_ROOT / "artifacts" / "bench" / "fanout.json"
WARM_ITEMS = 40
WARM_BATCHES = 10
MODEL_ONLY_ITEMS = 10_000
# How often the benchmark looks for a batch's summary. Every 50 ms cost this process and Azurite
# about 0.1 core between them (measured: 6.6 + 6.2 CPU s over a 96 s run), which two workers
# that keep both cores busy lose; every 250 ms adds at most 0.5 % to a 50 s run.
SUMMARY_POLL_S = 0.25


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def _upload(blob, path: Path) -> None:
    with open(path, "rb") as stream:
        blob.upload_blob(stream, overwrite=True, max_concurrency=4)


def _wait_for(blob, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while not blob.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {blob.blob_name} within {timeout_s:.0f} s")
        time.sleep(SUMMARY_POLL_S)
    return time.perf_counter()


@dataclasses.dataclass(frozen=True)
class CpuMeter:
    """CPU seconds so far of this process (its threads, not its children), of Azurite, and of
    the given worker processes."""

    azurite_pid: int

    def read(self, workers: list[int]) -> dict[str, float]:
        return {"here": time.process_time(), "azurite": cpu_s(self.azurite_pid),
                "workers": sum(cpu_s(pid) for pid in workers)}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
        cpu = {role: round(after[role] - before[role], 2) for role in before}
        return {"cpu_s": cpu, "cores_busy": round(sum(cpu.values()) / seconds, 2)}


def measure(path: Path, settings: Settings, connection: str, worker_counts: list[int],
            model, rounds: int, meter: CpuMeter) -> dict:
    """In place and fanned out with each worker count, in turn, ``rounds`` times (each run on
    a batch uploaded under a name of its own); per configuration every round and the median,
    ratios of the medians."""
    service = blob_service(settings, connection)
    shards = QueueShards(lambda: shard_queue(settings, connection))
    tiles = np.random.default_rng(1).integers(0, 256, (MODEL_ONLY_ITEMS, 28, 28),
                                              dtype=np.uint8)
    runs: dict[str, list[dict]] = {}
    gauge: list[float] = []
    for round_ in range(rounds):
        started = time.perf_counter()
        top_k_arrays(tiles, settings.batch_top_k, model, settings.batch_size)
        gauge.append(round(time.perf_counter() - started, 2))
        # In place first in even rounds, last in odd ones: a drift within a round does not
        # always favour the same configuration.
        order: list[int | None] = [None, *worker_counts]
        for workers in order if round_ % 2 == 0 else reversed(order):
            if workers is None:
                runs.setdefault("in_place", []).append(
                    _in_place(path, settings, service, model, round_, meter))
            else:
                runs.setdefault(f"fanout_{workers}", []).append(
                    _fanned_out(path, settings, connection, service, shards, model, workers,
                                round_, meter))
    figures: dict = {"items": runs["in_place"][0]["items"], "bytes": path.stat().st_size,
                     "model_only_s": gauge}
    for key, entries in runs.items():
        figures[key] = {"items_per_s": round(statistics.median(e["items_per_s"]
                                                                for e in entries), 1),
                        "rounds": entries}
    base = figures["in_place"]["items_per_s"]
    for workers in worker_counts:
        entry = figures[f"fanout_{workers}"]
        entry["ratio_to_in_place"] = round(entry["items_per_s"] / base, 2)
        print(f"{path.name}: {workers} worker(s) {entry['items_per_s']:,.0f} items/s, "
              f"{entry['ratio_to_in_place']:.2f}x in place ({base:,.0f} items/s), medians of "
              f"{rounds} round(s)", flush=True)
    return figures


def _in_place(path: Path, settings: Settings, service, model, round_: int,
              meter: CpuMeter) -> dict:
    blob = service.get_blob_client(settings.batch_container, f"inplace{round_}-{path.name}")
    _upload(blob, path)
    cpu = meter.read([])
    started = time.perf_counter()
    outcome = process_blob(blob, settings, service, model)
    seconds = time.perf_counter() - started
    items = outcome.document["items"]
    entry = {"items": items, "seconds": round(seconds, 2),
             "items_per_s": round(items / seconds, 1), **meter.spent(cpu, meter.read([]), seconds)}
    print(f"{path.name}: in place {items / seconds:,.0f} items/s ({seconds:.1f} s; "
          f"{_cores(entry)})", flush=True)
    return entry


def _cores(entry: dict) -> str:
    cpu = entry["cpu_s"]
    return (f"{entry['cores_busy']:.2f} cores busy: CPU s here {cpu['here']:.1f}, workers "
            f"{cpu['workers']:.1f}, Azurite {cpu['azurite']:.1f}")


def _fanned_out(path: Path, settings: Settings, connection: str, service,
                shards: QueueShards, model, workers: int, round_: int, meter: CpuMeter) -> dict:
    results = service.get_container_client(settings.results_container)
    processes = start_workers(dataclasses.replace(settings, batch_workers=workers), connection)
    try:
        _warm(service, settings, shards, model, results, workers)
        name = f"fanout{workers}-{round_}-{path.name}"
        blob = service.get_blob_client(settings.batch_container, name)
        _upload(blob, path)
        pids = [process.pid for process in processes]
        cpu = meter.read(pids)
        started = time.perf_counter()
        submit_blob(blob, settings, service, shards, model)
        done = _wait_for(results.get_blob_client(f"{name}.summary.json"), 3600)
        cpu = meter.spent(cpu, meter.read(pids), done - started)
        summary = json.loads(results.get_blob_client(f"{name}.summary.json")
                             .download_blob().readall())
        peaks = [_peak_mb(process.pid) for process in processes]
    finally:
        stop_workers(processes)
    seconds = done - started
    entry = {"seconds": round(seconds, 2), "items_per_s": round(summary["items"] / seconds, 1),
             "shards": summary.get("shards", 1), "instances": summary.get("instances", 1),
             "worker_peak_mb": [round(p, 1) for p in peaks], **cpu}
    print(f"{path.name}: fanned out over {workers} worker(s) {entry['items_per_s']:,.0f} "
          f"items/s ({seconds:.1f} s, {entry['shards']} shards, {entry['instances']} workers "
          f"used; {_cores(entry)}); worker peak {', '.join(f'{p:.0f}' for p in peaks)} MB",
          flush=True)
    return entry


def _warm(service, settings: Settings, shards: QueueShards, model, results,
          workers: int) -> None:
    """Small fanned-out batches first, two shards per worker (one shard alone would be
    processed in place, here), until every worker has classified one: each has loaded and
    warmed its model before the measured batch is uploaded. (One worker never saw the single
    shard it was meant to warm with, and a second worker could be left out when the first took
    both: the measured batch then paid for a model load, about 2 s.)"""
    warm = dataclasses.replace(settings, batch_shard_items=WARM_ITEMS)
    tiles = np.random.default_rng(0).integers(1, 256, (2 * WARM_ITEMS * workers, 28, 28),
                                              dtype=np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, tiles)
    seen: set[str] = set()
    for _ in range(WARM_BATCHES):
        name = f"warm-{time.monotonic_ns()}.npy"
        blob = service.get_blob_client(settings.batch_container, name)
        blob.upload_blob(buffer.getvalue(), overwrite=True)
        submit_blob(blob, warm, service, shards, model)
        summary = results.get_blob_client(f"{name}.summary.json")
        _wait_for(summary, 300)
        timings = json.loads(summary.download_blob().readall())["shard_timings"]
        seen.update(timing["instance"] for timing in timings)
        if len(seen) >= workers:
            return
    raise RuntimeError(f"{len(seen)} of {workers} workers took a warm-up shard in "
                       f"{WARM_BATCHES} batches")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--png-items", type=int, default=100_000)
    parser.add_argument("--idx-items", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    tune_process()  # in place runs here: as in the blob trigger's process (function_app.py)
    settings = dataclasses.replace(Settings.from_env(), batch_poll_s=0.05)
    model = ModelRegistry().get(ModelSpec.of(settings))
    print(f"shards of {settings.batch_shard_items} items, chunks of "
          f"{settings.batch_chunk_items}, forward passes of {settings.batch_size}", flush=True)
    report: dict = {"shard_items": settings.batch_shard_items}
    azurite = start_azurite(containers=(settings.batch_container, settings.results_container),
                            queues=(settings.shard_queue,))
    try:
        with tempfile.TemporaryDirectory(prefix="fanout-bench-") as work:
            rng = np.random.default_rng(0)
            prototypes = draw_prototypes(rng)
            png = Path(work) / "cells.zip"
            write_png_zip(png, args.png_items, prototypes, rng)
            meter = CpuMeter(azurite.process.pid)
            report["png_zip"] = measure(png, settings, azurite.connection_string,
                                        args.workers, model, args.rounds, meter)
            png.unlink()
            idx = Path(work) / "million.idx"
            write_idx(idx, args.idx_items, prototypes, rng)
            report["idx"] = measure(idx, settings, azurite.connection_string, args.workers,
                                    model, args.rounds, meter)
    finally:
        azurite.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
