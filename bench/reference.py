"""The reference server: what emnist-edge's HTTP figures are measured against.

A bare FastAPI app as one would write it in an afternoon, under uvicorn with the same workers,
event loop, HTTP parser and socket options as ``python -m local.serve`` (``local.serve.serve``;
access log off, as ours): ``POST /api/classify`` decodes the image to grey, crops it naively to
the ink's bounding box, pads it square and resizes it to 28x28 (no blur, no background
estimate, no EXIF, one ink polarity), and runs a model of EdgeCNN's architecture
(``model.benchmark.baseline``: dynamically quantised and traced, untrained: the same work as a
trained one) on one torch thread; no dynamic batching, limits, telemetry or error mapping. Its
labels are meaningless, so the benchmarks check only that it answers 200 with a result.

``python -m bench.reference --port P [--workers N]`` serves it; ``running`` starts and stops it
like ``local.server.running``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np
from fastapi import FastAPI, Request
from PIL import Image, ImageOps

from local import server
from shared.config import REPO_ROOT, usable_cores

LABELS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def naive_tile(data: bytes) -> np.ndarray:
    """Grey, inverted (dark ink on light paper assumed), cropped to the ink, padded square,
    resized to 28x28: float32 in 0..1."""
    ink = ImageOps.invert(Image.open(io.BytesIO(data)).convert("L"))
    box = ink.getbbox() or (0, 0, *ink.size)
    character = ink.crop(box)
    side = max(character.size)
    square = Image.new("L", (side, side))
    square.paste(character, ((side - character.width) // 2, (side - character.height) // 2))
    return np.asarray(square.resize((28, 28), Image.Resampling.BILINEAR), np.float32) / 255


def create_app() -> FastAPI:
    """Each worker's app (uvicorn's factory): the model built and set to one thread first."""
    import torch

    from model.benchmark import baseline

    torch.set_num_threads(1)
    model, _ = baseline()
    app = FastAPI()

    @app.get(server.READY_PATH)
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/api/classify")
    async def classify(request: Request) -> dict[str, object]:
        tile = torch.from_numpy(naive_tile(await request.body()))[None, None]
        with torch.inference_mode():
            probabilities = model(tile).softmax(1)[0]
        top = probabilities.topk(3)
        ranked = [{"label": LABELS[i], "probability": float(p)}
                  for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
        return {"results": [{**ranked[0], "top_k": ranked}]}

    return app


@contextmanager
def running(log: IO[bytes], workers: int | None = None, timeout_s: float = 120,
            cpus: Collection[int] | None = None) -> Iterator[server.Server]:
    """The reference server on a free loopback port until the block ends (``cpus``: as for
    ``local.server.start``)."""
    port = server.free_port()
    started = time.perf_counter()
    process = server.spawn(
        [sys.executable, "-m", "bench.reference", "--port", str(port),
         *(("--workers", str(workers)) if workers else ())],
        log, cpus, cwd=REPO_ROOT)
    try:
        yield server.wait_ready(process, port, started, timeout_s)
    finally:
        server.stop(process)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from local.serve import serve

    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args(argv)
    serve(uvicorn.Config("bench.reference:create_app", factory=True, host="127.0.0.1",
                         port=args.port, workers=args.workers, access_log=False,
                         log_level="warning"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
