"""``python -m bench.preprocess`` (part of ``make bench``): where preprocessing's time goes.

For each kind of upload (a drawing as the page sends it and in other modes, at 280 and 450 px;
phone-like JPEG photos of a character on unevenly lit paper), the median CPU time of each stage
of ``shared.preprocess.preprocess``, replayed step by step with the module's own functions (and
checked to give the same tile), next to ``preprocess`` itself, timed in turn with the stages:

- open: the header read and the pixel-count check;
- decode: the JPEG's draft scale, the budget, the full decode and the EXIF rotation;
- grey: 8-bit luminance (transparency composited away);
- reduce: the box reduction to about ``REDUCED_SIDE`` (``WORKING_SIDE`` for a scaled JPEG);
- background: the estimate of the paper's level (part of ink);
- ink: the ink map (``ink_map``: polarity, background, noise floor), background included;
- again: a small character's second pass at a finer scale (decode, grey, reduce, ink), 0 when
  there is none;
- normalize: bounds of the ink, blur, crop, bicubic down-sampling to 28x28.

Beside ``preprocess``'s own total, two same-run baselines, each checked to give the same tile:
"libspng": every PNG's pixel data inflated by libspng itself (with zlib), as before libdeflate;
"Pillow": every PNG and WebP decoded by Pillow, as before libspng and libwebp
(``shared.png_decoder``, ``shared.webp_decoder``). A third, "reference", is the reference
server's naive tile (``bench.reference.naive_tile``: decode to grey, crop to the ink, pad,
resize; not EMNIST's recipe, so its tile differs): what the realtime issue measured
preprocessing against, so that a target set in milliseconds on one day can be read as a ratio
on any other. Then the same four on the HTTP benchmark's own uploads (``loadtests.corpus``:
every character at 300-450 px as PNG, JPEG and WebP), in turns, the median by format. The
process is tuned as the server's are (``shared.process_tuning``: freed memory kept, one BLAS
thread).

Times are the thread's CPU time (``time.thread_time``), so that other processes on a shared
machine slow the figures less than they would wall-clock time; they still move with the cache
and the clock. Writes ``artifacts/bench/preprocess.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from unittest import mock

import numpy as np
from PIL import Image, ImageDraw

import shared.preprocess as pre
from bench.reference import naive_tile
from loadtests.corpus import PEN_FRACTION, SLO_SIZES, STROKES, build
from model.fidelity import lit_photo
from shared import png_decoder
from shared.config import REPO_ROOT
from shared.process_tuning import tune_process

OUT = REPO_ROOT / "artifacts" / "bench" / "preprocess.json"
STAGES = ("open", "decode", "grey", "reduce", "background", "ink", "again", "normalize")
MAX_PIXELS = 40_000_000
Clock = Callable[[], float]


def drawing(size: int, mode: str = "RGB", *, ink: str = "#111", paper: str = "#fff",
            label: str = "7", fmt: str = "PNG") -> bytes:
    """A PNG (or ``fmt``) of a character drawn with a pen as wide as the page's (18 px on 280),
    in ``mode``: the page sends its canvas as grey (``canvas.toBlob`` would make it RGBA,
    opaque), other clients send RGB or grey."""
    image = Image.new("RGB", (size, size), paper)
    pen = ImageDraw.Draw(image)
    for stroke in STROKES[label]:
        pen.line([(x * size, y * size) for x, y in stroke], fill=ink,
                 width=max(2, round(size * PEN_FRACTION)), joint="curve")
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def photo(width: int, height: int, *, label: str = "A", seed: int = 0, box: float = 0.5
          ) -> bytes:
    """A JPEG like a phone photo of a character on paper (``model.fidelity.lit_photo``); the
    character is drawn in a square ``box`` of the shorter side (at 0.5 it spans about a third
    of it)."""
    rng = np.random.default_rng(seed)
    side = round(min(width, height) * box)
    strokes = np.asarray(Image.open(io.BytesIO(drawing(side, "L", label=label))), np.float32)
    paper = np.ones((height, width), np.float32)
    top, left = (height - side) // 3, (width - side) // 2
    paper[top : top + side, left : left + side] = strokes / 255
    return lit_photo(paper, rng)


def inputs() -> dict[str, bytes]:
    return {
        "280 px PNG, RGBA (canvas.toBlob)": drawing(280, "RGBA"),
        "280 px PNG, RGB": drawing(280),
        "280 px PNG, grey (the page's canvas)": drawing(280, "L"),
        "450 px PNG, RGB": drawing(450),
        "450 px PNG, RGB, white on black": drawing(450, ink="#fff", paper="#000"),
        "450 px PNG, grey": drawing(450, "L"),
        "450 px WebP (lossy)": drawing(450, fmt="WEBP"),
        "1200x900 JPEG photo": photo(1200, 900),
        "1200x1600 JPEG photo": photo(1200, 1600, label="E"),
        "1200x1600 JPEG, small E (second pass)": photo(1200, 1600, label="E", box=0.3),
        "4000x3000 JPEG photo": photo(4000, 3000, label="H"),
    }


def staged(data: bytes, clock: Clock) -> tuple[np.ndarray, dict[str, float]]:
    """``preprocess``'s steps one by one, each timed; the tile and the seconds per stage."""
    spent = dict.fromkeys(STAGES, 0.0)
    budget = pre.DecodeBudget(10**12, 10**12)

    def timed(stage: str, step: Callable[[], object]) -> object:
        started = clock()
        result = step()
        spent[stage] += clock() - started
        return result

    def decode(least: int, reserve: int = 1) -> tuple[Image.Image, int]:
        image = timed("open", lambda: pre.open_image(data, max_pixels=MAX_PIXELS))
        side = max(image.size)

        def load() -> Image.Image:
            pre.draft(image, least, reserve)
            budget.spend(image)
            return pre.load_image(image, data)

        loaded = timed("decode", load)
        return timed("grey", lambda: pre._grey(loaded)), side

    def ink_of(image: Image.Image) -> np.ndarray:
        levels = np.asarray(image)
        light = pre._ranked(np.bincount(levels[pre.SAMPLE].ravel(), minlength=256), (50,))[0]

        def background() -> object:  # a photo's level at every pixel, as the first pass reads it
            paper = pre._background(image, light=light >= 0.5)
            return paper if isinstance(paper, float) else paper[pre.EVERYWHERE]

        timed("background", background)
        return timed("ink", lambda: pre.ink_map(image))

    decoded, side = decode(pre.WORKING_SIDE, pre.JPEG_RESERVE)
    image = timed("reduce", lambda: pre._working(decoded, side))
    ink = ink_of(image)
    clear = timed("normalize", lambda: pre._clear_ink(ink))
    extent = pre._longer_side(*clear) if clear else 0
    if 0 < extent < pre.MIN_CHARACTER_SIDE and max(image.size) < side:
        first = dict(spent)
        least = min(math.ceil(max(image.size) * pre.MIN_CHARACTER_SIDE / extent),
                    pre.MAX_WORKING_SIDE)
        if max(decoded.size) < least:
            decoded, side = decode(least)
        finer = timed("reduce", lambda: pre._reduce(decoded, least))
        near = pre._around(clear, image.size, finer.size)
        ink, clear = timed("ink", lambda: pre._finer_ink(finer, near))
        image = finer
        # The second pass's time in "again" alone.
        spent = {stage: first[stage] for stage in STAGES} | {
            "again": sum(spent[s] - first[s] for s in STAGES)}
    sigma = pre.BLUR_SIGMA * max(image.size) / side
    tile = timed("normalize", lambda: pre._normalize(ink, clear, sigma))
    return tile, spent


def measure(repeats: int, clock: Clock = time.thread_time) -> dict[str, dict[str, float]]:
    """Median milliseconds per stage and in all (``preprocess`` itself) for each input."""
    results = {}
    for name, data in inputs().items():
        tile = served_tile(data)
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        totals: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for repeat in range(repeats):
            replayed, spent = staged(data, clock)
            if not np.array_equal(replayed, tile):
                raise AssertionError(f"{name}: the staged replay gives another tile")
            for stage, seconds in spent.items():
                stages[stage].append(seconds)
            for variant, (decoding, make) in in_turn(repeat):
                with decoding():
                    by_variant, seconds = timed(make, data, clock)
                if make is served_tile and not np.array_equal(by_variant, tile):
                    raise AssertionError(f"{name}: decoding as {variant!r} gives another tile")
                totals[variant].append(seconds)
        with Image.open(io.BytesIO(data)) as image:
            size, mode = image.size, image.mode
        results[name] = {"bytes": len(data), "size": f"{size[0]}x{size[1]} {mode}",
                         **{f"{s}_ms": statistics.median(v) * 1e3 for s, v in stages.items()},
                         **{f"{variant}_ms": statistics.median(v) * 1e3
                            for variant, v in totals.items()}}
    return results


def libspng_inflates_every_png() -> contextlib.AbstractContextManager[object]:
    """A baseline: ``preprocess`` as before libdeflate, libspng inflating each PNG's pixels."""
    return mock.patch.object(png_decoder, "_with_stored_pixels", return_value=None)


@contextlib.contextmanager
def pillow_decodes_every_image() -> Iterator[None]:
    """A baseline: ``preprocess`` as before libspng and libwebp, every PNG and WebP decoded by
    Pillow."""
    with mock.patch.object(pre, "decode_png", return_value=None), \
            mock.patch.object(pre, "decode_webp", return_value=None):
        yield


def served_tile(data: bytes) -> np.ndarray:
    """``preprocess`` as the service calls it, with a budget that never runs out."""
    return pre.preprocess(data, max_pixels=MAX_PIXELS, budget=pre.DecodeBudget(10**12, 10**12))


Decoding = Callable[[], contextlib.AbstractContextManager[object]]
Tiler = Callable[[bytes], np.ndarray]
# ``preprocess`` as it is, the two decoding baselines (set up outside the timing) and the
# reference server's tile: the key of each one's median in the results.
VARIANTS: dict[str, tuple[Decoding, Tiler]] = {
    "preprocess": (contextlib.nullcontext, served_tile),
    "libspng_zlib": (libspng_inflates_every_png, served_tile),
    "pillow_decoder": (pillow_decodes_every_image, served_tile),
    "reference": (contextlib.nullcontext, naive_tile),
}


def timed(make: Tiler, data: bytes, clock: Clock) -> tuple[np.ndarray, float]:
    started = clock()
    tile = make(data)
    return tile, clock() - started


def measure_corpus(rounds: int, clock: Clock = time.thread_time) -> dict[str, dict[str, float]]:
    """Median milliseconds of ``preprocess`` over the HTTP benchmark's uploads, by format: as
    it is and as each baseline (``VARIANTS``), in turns (which goes first turns too)."""
    samples = build(SLO_SIZES)
    times: dict[str, dict[str, list[float]]] = {}
    for round_ in range(rounds):
        for sample in samples:
            by_variant = times.setdefault(sample.fmt, {variant: [] for variant in VARIANTS})
            for variant, (decoding, make) in in_turn(round_):
                with decoding():
                    by_variant[variant].append(timed(make, sample.data, clock)[1])
    return {fmt: {"uploads": len(by_variant["preprocess"]) // rounds,
                  **{f"{variant}_ms": statistics.median(v) * 1e3
                     for variant, v in by_variant.items()}}
            for fmt, by_variant in times.items()}


def in_turn(round_: int) -> list[tuple[str, tuple[Decoding, Tiler]]]:
    """``VARIANTS`` in the order of ``round_``: each goes first in turn, so that none always
    runs with the cache the one before it left."""
    variants = list(VARIANTS.items())
    shift = round_ % len(variants)
    return variants[shift:] + variants[:shift]


def table(results: dict[str, dict[str, float]]) -> list[str]:
    heading = f"{'input (median ms of CPU)':38}" + "".join(f"{s:>9}" for s in STAGES)
    lines = [heading + f"{'total':>9}{'libspng':>9}{'Pillow':>9}{'ref.':>9}{'ratios':>21}"]
    for name, row in results.items():
        lines.append(f"{name:38}" + "".join(f"{row[f'{s}_ms']:9.3f}" for s in STAGES)
                     + "".join(f"{row[f'{v}_ms']:9.3f}" for v in VARIANTS) + ratios(row))
    return lines


def ratios(row: dict[str, float]) -> str:
    """``preprocess``'s time over each baseline's."""
    return "".join(f"{row['preprocess_ms'] / row[f'{v}_ms']:6.2f}x" for v in list(VARIANTS)[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300, help="runs of each input")
    parser.add_argument("--corpus-rounds", type=int, default=6,
                        help="rounds over the HTTP benchmark's uploads")
    parser.add_argument("--out", default=str(OUT), help="where to write the JSON")
    args = parser.parse_args(argv)
    tune_process()
    results = measure(args.repeats)
    corpus = measure_corpus(args.corpus_rounds)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()},
              "repeats": args.repeats, "clock": "time.thread_time", "inputs": results,
              "corpus_rounds": args.corpus_rounds, "corpus": corpus}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=2)
    print(f"preprocessing, median of {args.repeats} runs; 'total' is preprocess() itself, "
          "timed apart (background is part of ink); same-run baselines: 'libspng', every PNG's "
          "pixels inflated by libspng (zlib), 'Pillow', every PNG and WebP decoded by Pillow, and "
          "'ref.', the reference server's naive tile; 'ratios': total / each")
    print("\n".join(table(results)))
    print(f"the HTTP benchmark's uploads (300-450 px), median of {args.corpus_rounds} rounds:")
    for fmt, row in corpus.items():
        print(f"  {row['uploads']} {fmt}: {row['preprocess_ms']:.2f} ms, libspng "
              f"{row['libspng_zlib_ms']:.2f} ms, Pillow {row['pillow_decoder_ms']:.2f} ms, "
              f"reference {row['reference_ms']:.2f} ms ({ratios(row).strip()})")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
