"""``python -m model.benchmark``: our shipped model against the original EdgeCNN, in one run.

The baseline is re-created as the original shipped it (Linear layers dynamically quantised to
int8, traced with ``torch.jit.trace``); its weights are random, which does not change its speed.
When the shipped model has an ONNX file (``model.export --onnx``) and onnxruntime is installed,
that file is timed too, under onnxruntime's CPU provider, and, with the EMNIST data at hand
(``--data`` or ``EMNIST_DIR``), its probabilities are checked against the TorchScript file's on
every ``test`` image. All models are timed alternately in rounds so that machine noise hits
them alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.architectures import EdgeCNN, count_macs, count_parameters
from shared.config import Settings
from shared.manifest import sha256_file
from shared.model_loader import LoadedModel, load_model


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


class OnnxModel:
    """An ONNX file under onnxruntime, called like a torch module (tensor in, tensor out), with
    one session per thread count so that it follows ``torch.set_num_threads`` as set here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sessions: dict[int, Any] = {}
        self.threads = 1

    def set_threads(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from model.export import ONNX_INPUT, onnx_session

        if self.threads not in self.sessions:
            self.sessions[self.threads] = onnx_session(self.path, self.threads)
        out = self.sessions[self.threads].run(None, {ONNX_INPUT: x.numpy()})[0]
        return torch.from_numpy(out)


def _set_threads(models: dict[str, Any], threads: int) -> None:
    torch.set_num_threads(threads)
    for model in models.values():
        if isinstance(model, OnnxModel):
            model.set_threads(threads)


def onnx_model(loaded: LoadedModel) -> OnnxModel | None:
    """The shipped model's ONNX file, if the manifest lists one and onnxruntime is installed."""
    if not loaded.manifest.onnx or importlib.util.find_spec("onnxruntime") is None:
        return None
    path = loaded.path.parent / loaded.manifest.onnx["file"]
    if not path.is_file() or sha256_file(path) != loaded.manifest.onnx["sha256"]:
        raise SystemExit(f"{path} is missing or does not match its manifest entry")
    return OnnxModel(path)


def single_latencies(models: dict[str, Any], rounds: int, calls: int) -> dict:
    _set_threads(models, 1)
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


def throughput(models: dict[str, Any], threads: int, rounds: int,
               batch: int = 256) -> dict[str, float]:
    _set_threads(models, threads)
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


def parity_on_test(loaded: LoadedModel, onnx: OnnxModel, data: str | None) -> dict | None:
    """Largest |p_onnx - p_torchscript| over every ``test`` image; None without the data."""
    from model.data import data_dir
    from model.export import PARITY_TOLERANCE, onnx_parity
    from shared.emnist import load_split, upright

    if not (data or os.environ.get("EMNIST_DIR")):
        return None
    torch.set_num_threads(1)
    images, _ = load_split(data_dir(data), "test")
    worst = onnx_parity(onnx.path, loaded, upright(images))
    return {"images": len(images), "max_abs_probability_diff": worst,
            "tolerance": PARITY_TOLERANCE, "ok": worst <= PARITY_TOLERANCE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="single-image calls per round")
    parser.add_argument("--data", help="EMNIST directory for the ONNX parity check "
                        "(default: $EMNIST_DIR; skipped without either)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    ours = load_model(settings.model_path, settings.manifest_path)
    edge, edge_facts = baseline()
    # As the service runs it (a single tile through the network as saved, a batch through the
    # one optimised for inference: shared.model_loader.LoadedModel), and all through the saved
    # one, the same run's baseline for that choice.
    models: dict[str, Any] = {"emnist-edge": ours.forward, "emnist-edge as saved": ours.module}
    onnx = onnx_model(ours)
    if onnx is not None:
        models["emnist-edge ONNX"] = onnx
    models["EdgeCNN"] = edge
    latency = single_latencies(models, args.rounds, args.calls)
    thr1 = throughput(models, 1, args.rounds)
    thr2 = throughput(models, 2, args.rounds)
    facts = {
        "emnist-edge": {"parameters": ours.manifest.parameters,
                        "macs": ours.manifest.macs_per_image,
                        "file_bytes": ours.manifest.file_bytes},
        "EdgeCNN": edge_facts,
    }
    facts["emnist-edge as saved"] = facts["emnist-edge"]
    if onnx is not None:
        facts["emnist-edge ONNX"] = {**facts["emnist-edge"],
                                     "file_bytes": ours.manifest.onnx["file_bytes"]}
    rows = [
        ("single image p50 (1 thread), us", lambda n: latency[n]["p50_us"], "lower"),
        ("single image p99 (1 thread), us", lambda n: latency[n]["p99_us"], "lower"),
        ("batch 256 throughput (1 thread), img/s", lambda n: thr1[n], "higher"),
        ("batch 256 throughput (2 threads), img/s", lambda n: thr2[n], "higher"),
        ("file size, bytes", lambda n: facts[n]["file_bytes"], "lower"),
        ("parameters", lambda n: facts[n]["parameters"], "lower"),
        ("multiply-accumulates per image", lambda n: facts[n]["macs"], "lower"),
    ]
    table: dict[str, Any] = {
        label: {**{name: get(name) for name in models},
                "ratio": get("emnist-edge") / get("EdgeCNN"), "better": better}
        for label, get, better in rows}
    parity = parity_on_test(ours, onnx, args.data) if onnx is not None else None
    if args.json:
        print(json.dumps({**table, "onnx_parity": parity} if onnx is not None else table))
        return 0 if parity is None or parity["ok"] else 1
    names = list(models)
    print(f"{'':42} " + " ".join(f"{n:>16}" for n in names) + f" {'ratio':>8}")
    for label, row in table.items():
        print(f"{label:42} " + " ".join(f"{row[n]:>16,.1f}" for n in names)
              + f" {row['ratio']:>7.2f}x  ({row['better']} is better)")
    print("(ratio: emnist-edge TorchScript / EdgeCNN; ONNX under onnxruntime "
          f"{_ort_version()}, CPU provider)" if onnx is not None else "(ratio: ours / EdgeCNN)")
    if onnx is not None:
        if parity is None:
            print("ONNX parity on test: skipped (no --data and no EMNIST_DIR)")
        else:
            print(f"ONNX parity on all {parity['images']:,} test images: max |p_onnx - "
                  f"p_torchscript| = {parity['max_abs_probability_diff']:.2e} "
                  f"({'within' if parity['ok'] else 'OVER'} {parity['tolerance']:.0e})")
            if not parity["ok"]:
                return 1
    return 0


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
