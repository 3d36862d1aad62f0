"""``python -m model.benchmark``: our shipped model against the original EdgeCNN, in one run.

The baseline is re-created as the original shipped it (Linear layers dynamically quantised to
int8, traced with ``torch.jit.trace``); its weights are random, which does not change its speed.
Both models are timed alternately in rounds so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings

import numpy as np
import torch

from model.architectures import EdgeCNN, count_macs, count_parameters
from shared.config import Settings
from shared.model_loader import load_model


def baseline() -> tuple[torch.jit.ScriptModule, dict[str, int]]:
    net = EdgeCNN().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
        quantised = torch.ao.quantization.quantize_dynamic(
            net, {torch.nn.Linear}, dtype=torch.qint8
        )
        traced = torch.jit.trace(quantised, torch.rand(1, 1, 28, 28))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    facts = {"parameters": count_parameters(net), "macs": count_macs(net),
             "file_bytes": len(buffer.getvalue())}
    return traced, facts


def single_latencies(models: dict[str, torch.nn.Module], rounds: int, calls: int) -> dict:
    torch.set_num_threads(1)
    x = torch.rand(1, 1, 28, 28)
    samples: dict[str, list[int]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(50):
                model(x)
        for _ in range(rounds):
            for name, model in models.items():
                for _ in range(calls):
                    start = time.perf_counter_ns()
                    model(x)
                    samples[name].append(time.perf_counter_ns() - start)
    return {name: {"p50_us": float(np.percentile(s, 50)) / 1e3,
                   "p99_us": float(np.percentile(s, 99)) / 1e3} for name, s in samples.items()}


def throughput(models: dict[str, torch.nn.Module], threads: int, rounds: int,
               batch: int = 256) -> dict[str, float]:
    torch.set_num_threads(threads)
    x = torch.rand(batch, 1, 28, 28)
    best: dict[str, float] = {name: 0.0 for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(3):
                model(x)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(5):
                    model(x)
                best[name] = max(best[name], 5 * batch / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="single-image calls per round")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    ours = load_model(settings.model_path, settings.manifest_path)
    edge, edge_facts = baseline()
    models = {"emnist-edge": ours.module, "EdgeCNN": edge}
    latency = single_latencies(models, args.rounds, args.calls)
    thr1 = throughput(models, 1, args.rounds)
    thr2 = throughput(models, 2, args.rounds)
    facts = {
        "emnist-edge": {"parameters": ours.manifest.parameters,
                        "macs": ours.manifest.macs_per_image,
                        "file_bytes": ours.manifest.file_bytes},
        "EdgeCNN": edge_facts,
    }
    rows = [
        ("single image p50 (1 thread), us", lambda n: latency[n]["p50_us"], "lower"),
        ("single image p99 (1 thread), us", lambda n: latency[n]["p99_us"], "lower"),
        ("batch 256 throughput (1 thread), img/s", lambda n: thr1[n], "higher"),
        ("batch 256 throughput (2 threads), img/s", lambda n: thr2[n], "higher"),
        ("file size, bytes", lambda n: facts[n]["file_bytes"], "lower"),
        ("parameters", lambda n: facts[n]["parameters"], "lower"),
        ("multiply-accumulates per image", lambda n: facts[n]["macs"], "lower"),
    ]
    table = {label: {"emnist-edge": get("emnist-edge"), "EdgeCNN": get("EdgeCNN"),
                     "ratio": get("emnist-edge") / get("EdgeCNN"), "better": better}
             for label, get, better in rows}
    if args.json:
        print(json.dumps(table))
        return 0
    print(f"{'':42} {'emnist-edge':>14} {'EdgeCNN':>14} {'ratio':>8}")
    for label, row in table.items():
        print(f"{label:42} {row['emnist-edge']:>14,.1f} {row['EdgeCNN']:>14,.1f} "
              f"{row['ratio']:>7.2f}x  ({row['better']} is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
