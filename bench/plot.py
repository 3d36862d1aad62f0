"""The benchmark report's figure (``docs/bench.png``, shown in the README): HTTP latency
percentiles against concurrency, and throughput with and without dynamic batching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.ticker import ScalarFormatter

COLOURS = {"off": "#8c8c8c", "on": "#1f77b4"}
LABELS = {"off": "batching off", "on": "batching on"}


def draw(http: dict[str, dict[str, dict[str, Any]]], caption: str, path: Path) -> None:
    """``http``: mode ("off"/"on") -> clients (as a string, JSON's keys) -> figures with
    p50_ms, p95_ms, p99_ms and rps."""
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    clients = [int(c) for c in http["off"]]
    for mode, loads in http.items():
        for name, style in (("p50_ms", "-"), ("p99_ms", "--")):
            latency.plot(clients, [loads[str(c)][name] for c in clients], style, marker="o",
                         color=COLOURS[mode], label=f"{name[:3]}, {LABELS[mode]}")
    latency.set(xscale="log", yscale="log", xlabel="concurrent clients (closed loop)",
                ylabel="round-trip latency (ms)", title="HTTP latency percentiles")
    latency.set_xticks(clients, [str(c) for c in clients])
    latency.yaxis.set_major_formatter(ScalarFormatter())
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize="small")

    width = 0.38
    for offset, mode in ((-width / 2, "off"), (width / 2, "on")):
        rates = [http[mode][str(c)]["rps"] for c in clients]
        bars = throughput.bar([i + offset for i in range(len(clients))], rates, width,
                              color=COLOURS[mode], label=LABELS[mode])
        throughput.bar_label(bars, fmt="%.0f", fontsize="small")
    throughput.set_xticks(range(len(clients)), [str(c) for c in clients])
    throughput.set(xlabel="concurrent clients (closed loop)", ylabel="requests/s",
                   title="Throughput, dynamic batching off vs on")
    throughput.legend(fontsize="small", loc="upper left")
    throughput.grid(True, axis="y", alpha=0.3)
    fig.suptitle(caption, fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
