"""``python -m bench.hostile``: what the costliest inputs within the limits cost.

Each case runs in a fresh interpreter that has loaded the model and answered one good image
first; what the case then adds is measured there: CPU time (user + system) and the rise of the
peak resident memory above that warm baseline. Cases are the worst of the hostile-input suite
(``tests/hostile``; both build their inputs with ``bench.payloads``), each at the limit that
bounds it, and two ordinary uploads for scale. Every figure is printed next to the budget the
README states, and ``artifacts/bench/hostile.json`` keeps them. Exits 1 when a case is over its
budget.

Requests go through the HTTP app's own pipeline in-process (body parsing, decoding,
preprocessing, the forward pass: ``functions.http_api.classify_calls``), batches through
``process_batch`` from a local file, so the server's socket handling is not part of it.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import REPO_ROOT, Settings

if TYPE_CHECKING:  # the parent process never loads torch: each case runs in a child
    from shared.model_loader import LoadedModel

OUT = REPO_ROOT / "artifacts" / "bench" / "hostile.json"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one input under the limits may cost at most (the README's "Limits and errors")."""

    name: str
    cpu_s: float
    memory_mib: float


IMAGE = Budget("one image", 0.5, 200)
REQUEST = Budget("one request", 2.0, 400)
ITEM = Budget("one batch item", 0.5, 200)
BATCH = Budget("one batch, beyond its items", 2.0, 400)
# Entries count as items: a zip's directory holds each in memory while the batch runs.
ENTRY = Budget("one archive entry", 0.0002, 0.001)


@dataclass(frozen=True)
class Case:
    description: str
    budget: Budget
    # The payload is built with the case, before measuring.
    run: Callable[[Settings, LoadedModel], str]
    units: int = 1  # what the figures are divided by (entries of an archive)


# --- payloads --------------------------------------------------------------------------------


def _side(per_pixel: int, budget: int) -> int:
    """The largest square image whose decoding costs at most ``budget`` bytes."""
    return int((budget // per_pixel) ** 0.5)


def _multipart(images: list[bytes]) -> tuple[bytes, str]:
    parts = [b'--b\r\nContent-Disposition: form-data; name="images"; filename="%d.png"\r\n'
             b"Content-Type: image/png\r\n\r\n%s\r\n" % (i, data) for i, data in enumerate(images)]
    return b"".join(parts) + b"--b--\r\n", "multipart/form-data; boundary=b"


def _noise_png(side: int) -> bytes:
    import numpy as np
    from PIL import Image

    from bench.payloads import encode

    levels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    levels[side // 3 : 2 * side // 3, side // 2 - 4 : side // 2 + 4] = 0
    return encode(Image.fromarray(levels))


def _many_frames_gif(frames: int) -> bytes:
    from PIL import Image

    from bench.payloads import encode, seven

    first = seven("P")
    rest = [Image.new("P", first.size, i % 256) for i in range(frames - 1)]
    return encode(first, "GIF", save_all=True, append_images=rest, duration=10)


def _big_jpeg() -> bytes:
    from bench.payloads import encode, seven

    return encode(seven("RGB", size=4000).resize((6000, 4000)), "JPEG", quality=90)


def _zip_of(members: dict[str, bytes]) -> bytes:
    from bench.payloads import zip_bytes

    return zip_bytes(members)


# --- how a case is run -----------------------------------------------------------------------


def _request(body: bytes, content_type: str) -> Callable[[Settings, LoadedModel], str]:
    def run(settings: Settings, model: LoadedModel) -> str:
        from opentelemetry.trace import INVALID_SPAN

        from functions.http_classify import ClassifyCall, classify_calls
        from functions.request_body import body_kind
        from shared.telemetry import Telemetry

        call = ClassifyCall("/api/classify", body_kind(content_type), body, content_type, None,
                            None, time.perf_counter_ns(), 0.0, INVALID_SPAN)
        (answer,) = classify_calls([call], model, settings, Telemetry())
        if isinstance(answer, BaseException):
            return f"refused: {getattr(answer, 'code', type(answer).__name__)}"
        document = json.loads(answer.body)
        failed = [r["error"]["code"] for r in document["results"] if "error" in r]
        return f"{answer.status_code}, {len(document['results']) - len(failed)} classified" + (
            f", {len(failed)} refused ({failed[0]})" if failed else "")
    return run


def _batch(data: bytes, **limits: int) -> Callable[[Settings, LoadedModel], str]:
    def run(settings: Settings, model: LoadedModel) -> str:
        from shared.batch import process_batch
        from shared.local_files import LocalFileSource, LocalResultSink

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "batch"
            path.write_bytes(data)
            tuned = dataclasses.replace(settings, **limits)
            outcome = process_batch(LocalFileSource(path), LocalResultSink(Path(folder)), tuned,
                                    model)
        document = outcome.document or {}
        if outcome.status == "failed":
            return f"refused: {document['code']}"
        return f"{document['items']} items, {document['failed']} failed, " \
               f"{document['skipped']} skipped"
    return run


def cases(settings: Settings) -> dict[str, Callable[[], Case]]:
    """Each case built only in the process that runs it (some payloads are large)."""
    from bench.payloads import (
        encode,
        flat_png,
        grey16_png,
        gzip_bomb,
        npy_with_header,
        png_claiming,
        seven,
        zip_bomb,
        zip_of_many_entries,
        zip_overlapping,
    )

    per_image = settings.max_decoded_bytes
    rgba = _side(4, per_image)
    grey = _side(1, per_image)
    per_request = settings.max_request_decoded_bytes // per_image

    def request_case(description: str, budget: Budget, make: Callable[[], tuple[bytes, str]]):
        return lambda: Case(description, budget, _request(*make()))

    def png(make: Callable[[], bytes]) -> Callable[[], tuple[bytes, str]]:
        return lambda: (make(), "image/png")

    def many(make: Callable[[], bytes], count: int) -> Callable[[], tuple[bytes, str]]:
        return lambda: _multipart([make()] * count)

    def batch_case(description: str, budget: Budget, make: Callable[[], bytes], units: int = 1,
                   **limits: int):
        return lambda: Case(description, budget, _batch(make(), **limits), units)

    return {
        "drawing": request_case("a 450 px PNG drawing (for scale)", IMAGE,
                                png(lambda: encode(seven("RGB", 450)))),
        "photo-jpeg": request_case("a 6000x4000 JPEG photo (drafted while decoding)", IMAGE,
                                   lambda: (_big_jpeg(), "image/jpeg")),
        "rgba-at-limit": request_case(f"an RGBA PNG of {rgba}x{rgba} (the per-image limit)",
                                      IMAGE, png(lambda: flat_png("RGBA", rgba))),
        "grey16-at-limit": request_case(
            f"a 16-bit grey PNG of {rgba}x{rgba} (the per-image limit)", IMAGE,
            png(lambda: grey16_png(rgba))),
        "grey8-at-limit": request_case(f"an 8-bit grey PNG of {grey}x{grey} (the limit)", IMAGE,
                                       png(lambda: flat_png("L", grey))),
        "gif-1000-frames": request_case("an animated GIF of 1000 frames (first frame read)",
                                        IMAGE, png(lambda: _many_frames_gif(1000))),
        "pixel-bomb": request_case("a PNG claiming 30000x30000 pixels", IMAGE,
                                   png(lambda: png_claiming(30_000, 30_000))),
        "request-at-limit": request_case(
            f"{per_request} RGBA PNGs at the per-image limit (the per-request limit)", REQUEST,
            many(lambda: flat_png("RGBA", rgba), per_request)),
        "request-over-limit": request_case(
            f"{settings.max_images} RGBA PNGs at the per-image limit (the rest refused)",
            REQUEST, many(lambda: flat_png("RGBA", rgba), settings.max_images)),
        "request-16-bit-bombs": request_case(
            f"{settings.max_images} 16-bit 6300x6300 PNGs (each refused before decoding)",
            REQUEST, many(lambda: grey16_png(6300), settings.max_images)),
        "json-at-size-limit": request_case(
            f"JSON of {settings.max_images} base64 noise PNGs near the 10 MiB limit", REQUEST,
            lambda: (json.dumps({"images": [base64.b64encode(_noise_png(180)).decode()]
                                 * settings.max_images}).encode(), "application/json")),
        "json-deep": request_case("JSON nested 1,000,000 deep (at the size limit)", REQUEST,
                                  lambda: (b'{"images": ' + b"[" * 10**6 + b"]" * 10**6 + b"}",
                                           "application/json")),
        "multipart-flood": request_case("multipart of 100,000 empty parts", REQUEST,
                                        lambda: _multipart([b""] * 100_000)),
        "item-rgba-at-limit": batch_case(f"a zip member: RGBA PNG {rgba}x{rgba} (the limit)",
                                         ITEM, lambda: _zip_of({"a.png": flat_png("RGBA", rgba)})),
        "item-ratio-bomb": batch_case("a zip member: 30 MiB of zeros named .png", ITEM,
                                      lambda: zip_bomb(30 * MIB)),
        "zip-200k-entries": batch_case("a zip of 200,000 entries, per entry", ENTRY,
                                       lambda: zip_of_many_entries(200_000), units=200_000),
        "zip-over-item-limit": batch_case(
            "a zip of 100,001 entries, limit 100,000 (refused from its end record)", BATCH,
            lambda: zip_of_many_entries(100_001), batch_max_items=100_000),
        "zip-overlapping": batch_case("50,000 zip entries sharing one member", BATCH,
                                      lambda: zip_overlapping(50_000)),
        "gzip-bomb": batch_case("a tar.gz of 1 GiB of zeros", BATCH,
                                lambda: gzip_bomb(1024 * MIB)),
        "npy-absurd": batch_case("an .npy declaring 10^12 images", BATCH, lambda: npy_with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (10**12, 28, 28), }")),
    }


# --- measuring -------------------------------------------------------------------------------


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_here(name: str) -> dict[str, Any]:
    """Run one case in this process: build it, warm up, then measure (the child's side)."""
    from bench.payloads import PNG_7
    from shared.model_loader import ModelSpec, load_spec

    settings = Settings.from_env()
    case = cases(settings)[name]()
    model = load_spec(ModelSpec.of(settings))
    _request(PNG_7, "image/png")(settings, model)  # warm: the first request's one-off costs
    peak, cpu, wall = _peak_mib(), _cpu_s(), time.perf_counter()
    outcome = case.run(settings, model)
    return {"case": name, "description": case.description, "budget": case.budget.name,
            "cpu_s": (_cpu_s() - cpu) / case.units,
            "wall_s": (time.perf_counter() - wall) / case.units,
            "peak_rise_mib": (_peak_mib() - peak) / case.units, "outcome": outcome,
            "budget_cpu_s": case.budget.cpu_s, "budget_memory_mib": case.budget.memory_mib}


def measure(name: str) -> dict[str, Any]:
    """One case in a fresh interpreter (its own peak memory, nothing cached from another)."""
    run = subprocess.run([sys.executable, "-m", "bench.hostile", "--child", name],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    if run.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="run only these cases (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_here(args.child)))
        return 0
    names = args.case or list(cases(Settings.from_env()))
    results = []
    print(f"{'case':<70} {'CPU s':>7} {'budget':>7} {'peak MiB':>9} {'budget':>7}  outcome")
    for name in names:
        result = measure(name)
        results.append(result)
        over = (result["cpu_s"] > result["budget_cpu_s"]
                or result["peak_rise_mib"] > result["budget_memory_mib"])
        print(f"{result['description'][:70]:<70} {result['cpu_s']:>7.3g} "
              f"{result['budget_cpu_s']:>7.3g} {result['peak_rise_mib']:>9.3g} "
              f"{result['budget_memory_mib']:>7.3g}  {result['outcome']}"
              f"{'  OVER BUDGET' if over else ''}", flush=True)
        result["over_budget"] = over
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {OUT.relative_to(REPO_ROOT)}")
    return 1 if any(r["over_budget"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
