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
unevenly, the character a third, then a fifth, of the frame's height (each within 20 %) anywhere
in it. At a fifth the tile comes out of the first pass (at 300x225, a quarter of the photo's
side) 36-54 px wide and its character narrower still, mostly under
``shared.preprocess.MIN_CHARACTER_SIDE`` (48): these are the uploads its second pass is for. At
a third the tile is 60-90 px, its character mostly over the threshold. Each takes about 5 ms to
make and 2-6 ms to preprocess.

``--vary NAME=A,B,...`` compares instead, paired, the same uploads through preprocessing with
its constant ``NAME`` (``shared.preprocess.REDUCED_SIDE``, say) set to each value in turn: top-1
of each against the first value's, with its 95 % interval (the per-upload differences are -1, 0
or +1), how many uploads it reads better and worse, and the CPU an upload takes. A change is
made where the cheaper value is not measurably worse, on ``--split validation``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from collections.abc import Iterator

import numpy as np
from PIL import Image

from model.data import data_dir
from model.evaluate import metrics
from model.splits import named_split
from shared import preprocess
from shared.classifier import preprocess_all
from shared.config import Settings
from shared.emnist import upright
from shared.errors import EmnistEdgeError
from shared.model_loader import LoadedModel, ModelSpec, load_spec
from shared.preprocess import DecodeBudget
from shared.process_tuning import tune_process

FORMATS = ("PNG", "JPEG", "WEBP")


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


def upload_sets(tiles: np.ndarray, labels: np.ndarray, rng: np.random.Generator, photos: int
                ) -> Iterator[tuple[str, list[bytes], np.ndarray, np.ndarray]]:
    """Each kind of upload of ``tiles`` in turn, made as it is asked for: its name, the uploads,
    and the tiles and labels they are of (a seeded sample of ``photos`` for the photos)."""
    for fmt in FORMATS:
        yield fmt.lower(), [as_upload(t, rng, fmt) for t in tiles], tiles, labels
    if photos:
        some = np.sort(rng.choice(len(tiles), size=min(photos, len(tiles)), replace=False))
        for name, fraction in PHOTO_FRACTIONS.items():
            yield name, [as_photo(t, rng, fraction) for t in tiles[some]], tiles[some], labels[some]


def preprocessed(uploads: list[bytes], settings: Settings) -> tuple[np.ndarray, int]:
    """Every upload's tile through the pipeline (zeros where it failed), and how many failed."""
    budgets = [DecodeBudget.for_request(settings) for _ in uploads]
    processed = preprocess_all(uploads, budgets, settings.max_image_pixels)
    failed = sum(isinstance(p, EmnistEdgeError) for p in processed)
    return np.stack([p if isinstance(p, np.ndarray) else np.zeros((28, 28), np.uint8)
                     for p in processed]), failed


def fidelity(uploads: list[bytes], tiles: np.ndarray, labels: np.ndarray, model: LoadedModel,
             settings: Settings) -> dict[str, object]:
    """The model's metrics on ``uploads`` (of ``tiles``) through the whole pipeline, with the
    failures and the mean pixel difference of what preprocessing made of them."""
    stack, failed = preprocessed(uploads, settings)
    result: dict[str, object] = metrics(model.probabilities(stack), labels)
    result["failed"] = failed
    result["mean_abs_pixel_diff"] = round(float(np.abs(stack.astype(np.float32) - tiles).mean()),
                                          2)
    return result


def paired(uploads: list[bytes], labels: np.ndarray, model: LoadedModel, settings: Settings,
           name: str, values: list[float]) -> list[dict[str, float]]:
    """``uploads`` through preprocessing with its constant ``name`` at each of ``values`` in
    turn: top-1, the uploads read better and worse than at the first value, and CPU ms an
    upload (this process's CPU time)."""
    rows, first = [], None
    for value in values:
        with _preprocess_constant(name, value):
            start = time.process_time()
            stack, _ = preprocessed(uploads, settings)
            cpu_ms = (time.process_time() - start) * 1e3 / len(uploads)
        right = np.asarray(model.probabilities(stack)).argmax(axis=1) == labels
        first = right if first is None else first
        rows.append({"value": value, "n": len(right), "top1": float(right.mean()),
                     "better": int((right & ~first).sum()), "worse": int((first & ~right).sum()),
                     "cpu_ms": round(cpu_ms, 3)})
    return rows


def paired_change(better: int, worse: int, n: int) -> tuple[float, float]:
    """Top-1's paired change (-1, 0 or +1 an upload) and its 95 % interval's half-width, from
    the counts of uploads read better and worse out of ``n``."""
    mean = (better - worse) / n
    variance = ((better + worse) / n - mean**2) * n / max(n - 1, 1)
    return mean, 1.96 * math.sqrt(max(variance, 0.0) / n)


@contextlib.contextmanager
def _preprocess_constant(name: str, value: float) -> Iterator[None]:
    saved = getattr(preprocess, name)
    setattr(preprocess, name, value)
    try:
        yield
    finally:
        setattr(preprocess, name, saved)


def variation(text: str) -> tuple[str, list[float]]:
    """``NAME=A,B,...`` -> the name of a numeric constant of ``shared.preprocess`` and the
    values to give it, of its own type."""
    name, _, values = text.partition("=")
    current = getattr(preprocess, name, None)
    if not name.isupper() or isinstance(current, bool) or not isinstance(current, int | float):
        raise argparse.ArgumentTypeError(f"{name!r} is not a numeric constant of shared.preprocess")
    try:
        parsed = [type(current)(value) for value in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{values!r}: values for {name} are {type(current).__name__}s, comma-separated"
        ) from None
    if len(parsed) < 2:
        raise argparse.ArgumentTypeError(f"give {name} at least two values to compare")
    return name, parsed


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
    parser.add_argument("--vary", type=variation, metavar="NAME=A,B,...",
                        help="compare instead, paired: shared.preprocess's constant NAME at "
                             "each value in turn, on the same uploads")
    args = parser.parse_args(argv)
    tune_process()  # as the server's processes are, so that --vary's CPU figures are theirs
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
    if args.vary:
        return compare(args.vary, upload_sets(tiles, labels, rng, args.photos), model, settings)
    report: dict[str, dict[str, object]] = {
        "raw_tiles": metrics(model.probabilities(tiles), labels)}
    for kind, uploads, some_tiles, some_labels in upload_sets(tiles, labels, rng, args.photos):
        if kind.startswith("photo") and "raw_photo_tiles" not in report:
            report["raw_photo_tiles"] = metrics(model.probabilities(some_tiles), some_labels)
        report[kind] = fidelity(uploads, some_tiles, some_labels, model, settings)
    print(f"{'input':16} {'n':>6} {'top-1':>8} {'top-3':>8} {'gap':>8}")
    for key, row in report.items():
        base = report["raw_photo_tiles" if key.startswith(("photo", "raw_photo")) else
                      "raw_tiles"]["top1"]
        print(f"{key:16} {row['n']:>6} {row['top1']:>8.2%} {row['top3']:>8.2%} "
              f"{row['top1'] - base:>+8.2%}")
    print(json.dumps(report))
    return 0


def compare(vary: tuple[str, list[float]], sets: Iterator[tuple[str, list[bytes], np.ndarray,
            np.ndarray]], model: LoadedModel, settings: Settings) -> int:
    """``--vary``: the paired comparison, a row per kind of upload and value, then all kinds
    pooled; the report as JSON last."""
    name, values = vary
    report: dict[str, list[dict[str, float]]] = {}
    print(f"{'input':16} {name:>14} {'n':>6} {'top-1':>8} {'change, 95 %':>17} "
          f"{'better':>7} {'worse':>6} {'CPU ms':>7}", flush=True)
    for kind, uploads, _, labels in sets:
        report[kind] = paired(uploads, labels, model, settings, name, values)
        for row in report[kind]:
            _print_paired(kind, row)
    report["all"] = [
        {"value": value, **{key: sum(rows[i][key] for rows in report.values())
                            for key in ("n", "better", "worse")}}
        for i, value in enumerate(values)]
    for row in report["all"]:
        _print_paired("all", row)
    print(json.dumps({"vary": name, **report}))
    return 0


def _print_paired(kind: str, row: dict[str, float]) -> None:
    change, interval = paired_change(int(row["better"]), int(row["worse"]), int(row["n"]))
    top1 = f"{row['top1']:>8.2%}" if "top1" in row else f"{'':>8}"
    cpu = f"{row['cpu_ms']:>7.3f}" if "cpu_ms" in row else ""
    print(f"{kind:16} {row['value']:>14} {row['n']:>6} {top1} {change * 100:>+8.2f} +- "
          f"{interval * 100:.2f} {row['better']:>7} {row['worse']:>6} {cpu}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
