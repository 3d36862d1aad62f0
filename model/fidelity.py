"""``python -m model.fidelity --data DIR``: does the image pipeline give the model what it saw?

EMNIST ``test`` tiles are turned into what people upload: upright, scaled up 8-12x with bicubic,
dark ink on a light background, placed off-centre on a larger canvas, saved as PNG, as JPEG
quality 85 and as lossy WebP quality 85. They go through the full pipeline (decode ->
preprocess -> classify) and top-1 is compared with the model's top-1 on the raw tiles of the
same images. Top-1 is unweighted: each upload is compared with its own raw tile.

``--split validation`` uploads tiles of the validation split instead: that is where a choice
about preprocessing (a threshold, a working size) is made, so that ``test`` stays a figure
nobody tuned for (validation's class mix is training's, so its gaps differ from test's).

``--photos N`` adds N of them (a seeded sample) as phone photos: 1200x900 JPEGs of paper lit
unevenly, the character a third, then a fifth, of the frame's height (each within 20 %)
anywhere in it. At a fifth the tile comes out of libjpeg's 1/4 scale 36-54 px wide and its
character narrower still, mostly under ``shared.preprocess.MIN_CHARACTER_SIDE`` (48): these are
the uploads its second pass is for. At a third the tile is 60-90 px, its character mostly over
the threshold. Each takes about 5 ms to make and 2-6 ms to preprocess.
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
from model.splits import named_split
from shared.classifier import preprocess_all
from shared.config import Settings
from shared.emnist import upright
from shared.errors import EmnistEdgeError
from shared.model_loader import LoadedModel, ModelSpec, load_spec
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


PHOTO_SIZE = (1200, 900)
PHOTO_FRACTIONS = {"photo-third": 1 / 3, "photo-fifth": 1 / 5}


def lit_photo(paper: np.ndarray, rng: np.random.Generator) -> bytes:
    """A JPEG (quality 85) like a phone photo of ``paper`` (floats, 1 white, ``[H,W]``): light
    falling off from 92 % to 52 % across the frame, a slightly warm tint, sensor noise."""
    height, width = paper.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 0.92 - 0.3 * cols / width - 0.1 * rows / height
    grey = shade * (0.3 + 0.7 * paper) + rng.normal(0, 0.015, (height, width))
    colour = np.stack([grey, grey * 0.97, grey * 0.9], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray((np.clip(colour, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                         quality=85)
    return buffer.getvalue()


def as_photo(tile: np.ndarray, rng: np.random.Generator, fraction: float) -> bytes:
    """An upright white-on-black 28x28 tile -> a phone photo of it (``lit_photo``), the
    character ``fraction`` (within 20 %) of the frame's height, anywhere in the frame."""
    width, height = PHOTO_SIZE
    side = round(height * fraction * rng.uniform(0.8, 1.2))
    big = Image.fromarray(255 - tile).resize((side, side), Image.Resampling.BICUBIC)
    paper = np.ones((height, width), np.float32)
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    paper[top : top + side, left : left + side] = np.asarray(big, np.float32) / 255
    return lit_photo(paper, rng)


def fidelity(uploads: list[bytes], tiles: np.ndarray, labels: np.ndarray, model: LoadedModel,
             settings: Settings) -> dict[str, object]:
    """The model's metrics on ``uploads`` (of ``tiles``) through the whole pipeline, with the
    failures and the mean pixel difference of what preprocessing made of them."""
    budgets = [DecodeBudget.for_request(settings) for _ in uploads]
    processed = preprocess_all(uploads, budgets, settings.max_image_pixels)
    failed = sum(isinstance(p, EmnistEdgeError) for p in processed)
    stack = np.stack([p if isinstance(p, np.ndarray) else np.zeros((28, 28), np.uint8)
                      for p in processed])
    result: dict[str, object] = metrics(model.probabilities(stack), labels)
    result["failed"] = failed
    result["mean_abs_pixel_diff"] = round(float(np.abs(stack.astype(np.float32) - tiles).mean()),
                                          2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="EMNIST directory (default: $EMNIST_DIR)")
    parser.add_argument("--split", default="test",
                        help="the tiles to upload: test (the default: the figures published), "
                             "or validation, the split the model's manifest records (where a "
                             "choice about preprocessing is made)")
    parser.add_argument("--n", type=int, default=3000, help="tiles to use (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=int, default=0,
                        help="of those, this many also as phone photos (default: none)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    model = load_spec(ModelSpec.of(settings))
    try:
        raw, labels, _ = named_split(data_dir(args.data), args.split, model.manifest.training)
    except ValueError as exc:
        parser.error(str(exc))
    rng = np.random.default_rng(args.seed)
    if args.n:
        chosen = np.sort(rng.choice(len(raw), size=min(args.n, len(raw)), replace=False))
        raw, labels = raw[chosen], labels[chosen]
    tiles = upright(raw)
    report: dict[str, dict[str, object]] = {
        "raw_tiles": metrics(model.probabilities(tiles), labels)}
    for fmt in ("PNG", "JPEG", "WEBP"):
        report[fmt.lower()] = fidelity([as_upload(t, rng, fmt) for t in tiles], tiles, labels,
                                       model, settings)
    if args.photos:
        some = np.sort(rng.choice(len(tiles), size=min(args.photos, len(tiles)), replace=False))
        report["raw_photo_tiles"] = metrics(model.probabilities(tiles[some]), labels[some])
        for name, fraction in PHOTO_FRACTIONS.items():
            report[name] = fidelity([as_photo(t, rng, fraction) for t in tiles[some]],
                                    tiles[some], labels[some], model, settings)
    print(f"{'input':16} {'n':>6} {'top-1':>8} {'top-3':>8} {'gap':>8}")
    for key, row in report.items():
        base = report["raw_photo_tiles" if key.startswith(("photo", "raw_photo")) else
                      "raw_tiles"]["top1"]
        print(f"{key:16} {row['n']:>6} {row['top1']:>8.2%} {row['top3']:>8.2%} "
              f"{row['top1'] - base:>+8.2%}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
