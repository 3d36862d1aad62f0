"""``python -m model.fidelity --data DIR``: does the image pipeline give the model what it saw?

EMNIST ``test`` tiles are turned into what people upload: upright, scaled up 8-12x with bicubic,
dark ink on a light background, placed off-centre on a larger canvas, saved as PNG, as JPEG
quality 85 and as lossy WebP quality 85. They go through the full pipeline (decode ->
preprocess -> classify) and top-1 is compared with the model's top-1 on the raw tiles of the
same images.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
from PIL import Image

from model.data import data_dir
from model.evaluate import metrics
from shared.classifier import preprocess_all
from shared.config import Settings
from shared.emnist import load_split, upright
from shared.errors import EmnistEdgeError
from shared.model_loader import ModelSpec, load_spec
from shared.preprocess import DecodeBudget


def as_upload(tile: np.ndarray, rng: np.random.Generator, fmt: str) -> bytes:
    """An upright white-on-black 28x28 tile -> an encoded photo-like upload."""
    scale = rng.uniform(8, 12)
    side = round(28 * scale)
    big = Image.fromarray(255 - tile).resize((side, side), Image.Resampling.BICUBIC)
    canvas_w, canvas_h = (round(side * rng.uniform(1.3, 2.0)) for _ in range(2))
    canvas = Image.new("L", (canvas_w, canvas_h), 255)
    corner = (int(rng.integers(0, canvas_w - side)), int(rng.integers(0, canvas_h - side)))
    canvas.paste(big, corner)
    buffer = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        canvas.save(buffer, format=fmt, quality=85)
    else:
        canvas.save(buffer, format=fmt)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    parser.add_argument("--n", type=int, default=3000, help="test images to use (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    raw, labels = load_split(data_dir(args.data), "test")
    rng = np.random.default_rng(args.seed)
    if args.n:
        chosen = np.sort(rng.choice(len(raw), size=min(args.n, len(raw)), replace=False))
        raw, labels = raw[chosen], labels[chosen]
    tiles = upright(raw)
    settings = Settings.from_env()
    model = load_spec(ModelSpec.of(settings))
    raw_metrics = metrics(model.probabilities(tiles), labels)
    report: dict[str, object] = {"n": len(tiles), "raw_tiles": raw_metrics}
    for fmt in ("PNG", "JPEG", "WEBP"):
        uploads = [as_upload(t, rng, fmt) for t in tiles]
        budgets = [DecodeBudget.for_request(settings) for _ in uploads]
        processed = preprocess_all(uploads, budgets, settings.max_image_pixels)
        failed = sum(isinstance(p, EmnistEdgeError) for p in processed)
        stack = np.stack([p if isinstance(p, np.ndarray) else np.zeros((28, 28), np.uint8)
                          for p in processed])
        result = metrics(model.probabilities(stack), labels)
        result["failed"] = failed
        diff = np.abs(stack.astype(np.float32) - tiles).mean()
        result["mean_abs_pixel_diff"] = round(float(diff), 2)
        report[fmt.lower()] = result
    base = raw_metrics["top1"]
    print(f"{'input':10} {'top-1':>8} {'top-3':>8} {'gap':>8}")
    for key in ("raw_tiles", "png", "jpeg", "webp"):
        row = report[key]
        print(f"{key:10} {row['top1']:>8.2%} {row['top3']:>8.2%} {row['top1'] - base:>+8.2%}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
