"""Uploaded image bytes -> the 28x28 tile the model was trained on, made the way EMNIST was made.

People upload phone photos of paper, canvas drawings with a transparent background and scans;
the model only ever saw EMNIST tiles. EMNIST (Cohen et al. 2017) built each tile from a
high-resolution NIST scan: Gaussian blur (sigma 1), crop to the character's bounding box,
centre it in a square that keeps the aspect ratio with a 2 px border, bicubic down-sampling to
28x28, intensities scaled to 0-255. Replaying that recipe on the upload, rather than the MNIST
20x20 centre-of-mass recipe, is what makes an upload look like the training data.

Tiles come back upright (as a person reads them), white ink (255) on black (0).
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared.config import Settings
from shared.errors import BlankImage, ImageTooLarge, InvalidImage
from shared.png_decoder import decode_png
from shared.webp_decoder import decode_webp

TILE = 28
# EMNIST's border: the character's longer side spans 24 of the tile's 28 pixels.
BORDER = 2
BLUR_SIGMA = 1.0
# EMNIST's sigma 1 is a pixel of a 128x128 NIST scan, where a character spans about this many
# pixels. A smaller drawing (a 28x28 tile, say) gets a proportionally narrower blur, so that it is
# never blurred more, relative to the character, than EMNIST blurred its scans.
NIST_SIDE = 100
# Formats a person uploads. Pillow can open more (EPS even runs Ghostscript); none is needed.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# Larger images are reduced, before any per-pixel work, by the largest whole factor that keeps
# their longer side at least REDUCED_SIDE; JPEGs are scaled while decoding instead (libjpeg:
# 1/2, 1/4, 1/8), to at least WORKING_SIDE (a photo's a scale finer: JPEG_RESERVE). About the
# 128 px of a NIST scan that EMNIST started from: the character ends up 24 px tall, so more
# resolution only costs time. Chosen on the validation split, paired (all 16,021 tiles uploaded
# at 290-670 px as PNG and lossy WebP, three seeds): top-1 at 100 against 140 -0.01 +- 0.04
# points (219 uploads read better, 225 worse of 96,126), for 35-43 % less CPU on those uploads
# (``python -m model.fidelity --split validation --n 0 --vary REDUCED_SIDE=140,100``, one seed).
# A 280 px drawing still works at 140 px (a quarter of its pixels), a 450 px one at 113 instead
# of 150. (Earlier, on test: the same top-1 at 140 as at 160, and within 0.1 point from 1024
# down to 160.)
WORKING_SIDE = 160
REDUCED_SIDE = 100
# A character that comes out shorter than this (a small character in a large photo) is worked
# on again, at the scale that gives it this size, but never above MAX_WORKING_SIDE. Chosen on
# the validation split, in a paired scratch comparison of the same 8,000 photos a third and a
# fifth of the frame tall (``python -m model.fidelity --split validation --photos N`` makes
# such photos and checks the choice, unpaired): at 48, top-1 the same as at 64 in both (0.00
# +- 0.13 and 0.00 +- 0.06 points) for 38 % and 11 % less CPU; at 32, -0.01 to -0.14 points in
# four comparisons (none significant alone, all below 0) for 41-57 % less.
MIN_CHARACTER_SIDE = 48
MAX_WORKING_SIDE = 1024
# A photo's JPEG (libjpeg could scale it by 1/4 or more) is decoded this many times finer than
# its first pass works at, and box-reduced for that pass: a character too small for the first
# pass then finds finer pixels decoded already instead of being decoded a second time. Most of a
# photo's decoding is reading its coefficients, paid in full at any scale: a 1200x900 photo took
# 1.73-1.77 ms decoded at 1/2 and halved against 1.51-1.65 at 1/4, and a second decode took
# 1.65-2.0 ms more. Smaller JPEGs (drawings) are decoded once more where they need it: they
# seldom do, and decoding them finer costs more (a 450 px drawing: 0.25 against 0.15 ms).
JPEG_RESERVE = 2
# The second pass reads ink only around the character the first pass found: within this many
# times its extent each way (the paper's level and noise are still estimated from the whole
# image). Should the character reach the edge of that region, or the image hold clear ink
# elsewhere at every 4th pixel (a stroke the first pass could not see), the whole image is read.
# So the tile is the whole finer image's unless stray pixels of clear ink lie between those
# (isolated noise or specks, which reading the whole image let stretch the character's box: of
# 332 random test images that took a second pass, 22 came out apart, each for such pixels). On the
# validation split, paired (``python -m model.fidelity --split validation --n 6000 --photos
# 6000 --vary SECOND_PASS_REACH=100,1``, seeds 0 and 1), not one of 60,000 uploads was read
# differently; a second pass costs 0.26-0.43 ms less (6-9 % of such a photo). Estimating the
# paper near the character too (cutting the image down before the ink map) lost 0.20-0.25
# point on photos a fifth of the frame.
SECOND_PASS_REACH = 1.0
# Ink contrast below this fraction of the background's range is no character at all.
MIN_INK = 0.1
# Bounding-box threshold, as a fraction of the blurred ink's maximum: faint noise and JPEG
# ringing stay below it, the blurred stroke edge that EMNIST's crop kept stays above it.
# (Tuned on EMNIST tiles round-tripped through upscaled PNG/JPEG uploads: the error is flat
# from about 0.04 to 0.06 and grows either side. Top-1 on the validation split, paired, barely
# moves: ``--vary BBOX_THRESHOLD=0.05,0.03,0.02,0.08`` gave -0.06, -0.05 and +0.09 +- 0.06
# points on all 48,063 drawings; with ``--seed 1 --photos 2000``, 0.08, 0.12 and 0.16 gave
# +0.04 +- 0.06, +0.05 +- 0.07 and +0.08 +- 0.08 with the photos. Too little to move it.)
BBOX_THRESHOLD = 0.05
# The background's own spread (paper texture, noise) is measured from the 50th to this
# percentile of the ink residual, on the side away from the ink, and mirrored onto the ink side.
NOISE_PERCENTILE = 90
# The background is estimated on a grid this many cells along the longer side, with a window
# of 2 * BACKGROUND_RADIUS + 1 cells (over a quarter of the image): wider than any stroke, so it
# sees through the ink to the paper, and still local enough to follow the uneven light of a photo.
# (Measured on EMNIST round trips: a narrower window starts to eat into bold strokes.)
BACKGROUND_CELLS = 32
BACKGROUND_RADIUS = 4

# Pillow's two-step down-sampling (integer box reduction to within this factor of 28, then
# bicubic): several times faster, and within 2 grey levels (almost always 0) of one-step.
REDUCING_GAP = 3.0

NO_INK = "the image holds no ink: nothing to recognise"
# Half-open (start, stop) row and column ranges.
Bounds = tuple[tuple[int, int], tuple[int, int]]
# Rows and columns of an image, as an index.
Region = tuple[slice, slice]
EVERYWHERE: Region = (slice(None), slice(None))
# The pixels the histograms read: every 4th (every other row and column).
SAMPLE: Region = (slice(None, None, 2), slice(None, None, 2))


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open an upload and check its size, without decoding its pixels yet.

    The size check reads only the header, so a decompression bomb never reaches the decoder;
    Pillow's own bomb guard is turned into the same error. (What decoding will cost is checked
    once the decoding scale is known: ``DecodeBudget``.)
    """
    if not data:
        raise InvalidImage("the upload is empty: not an image")
    with _decoding():
        with warnings.catch_warnings(action="error", category=Image.DecompressionBombWarning):
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"the image has {width}x{height} pixels, more than the {max_pixels} allowed"
            )
        if width * height == 0:
            raise InvalidImage("the image has no pixels")
        return image


def decode_cost(image: Image.Image) -> int:
    """What decoding an opened image costs, in bytes, at its current (drafted) size: Pillow
    keeps 1/L/P in a byte per pixel and the other modes (RGB too) in four. 16-bit grey is
    stored in two but counted as four: it decodes as slowly per pixel as RGBA (measured: a
    6300x6300 PNG 1.06 s as 16-bit grey, 1.2 s as RGBA, 0.16 s as 8-bit grey)."""
    return image.width * image.height * (1 if image.mode in ("1", "L", "P") else 4)


@dataclass
class DecodeBudget:
    """The decoding one image (``per_image``) and one request or batch item (``left``, spent
    as images are decoded) may cost, in bytes (``decode_cost``).

    A pixel count alone does not bound the cost: a 91 KB 16-bit 6300x6300 PNG is within 40 M
    pixels, yet took 1.7 s of CPU and ~170 MB to decode and convert; 64 such images fit in one
    request. Time and memory both grow with the decoded bytes, so that is what is bounded,
    before any pixel is decoded (JPEGs after drafting, which decodes them at a fraction).
    """

    per_image: int
    left: int

    @classmethod
    def for_request(cls, settings: Settings) -> DecodeBudget:
        """A fresh budget for one request (over HTTP) or one item (of a batch)."""
        return cls(settings.max_decoded_bytes, settings.max_request_decoded_bytes)

    def spend(self, image: Image.Image) -> None:
        cost = decode_cost(image)
        what = f"decoding this {image.width}x{image.height} {image.mode} image takes {_mib(cost)}"
        if cost > self.per_image:
            raise ImageTooLarge(f"{what}, more than the {_mib(self.per_image)} allowed for one "
                                "image: send it smaller, or in 8-bit grey")
        if cost > self.left:
            raise ImageTooLarge(f"{what}, more than the {_mib(self.left)} left for this "
                                "request's images: send fewer or smaller images at once")
        self.left -= cost


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def load_image(image: Image.Image, data: bytes) -> Image.Image:
    """Decode ``image``, opened from ``data`` (the first frame of an animation), upright per
    EXIF: a common PNG by libspng (``decode_png``), a simple lossy WebP by libwebp, to its grey
    alone (``decode_webp``: grey is all preprocessing needs), anything else by Pillow.

    The full load happens here so that a truncated file fails as ``InvalidImage`` and not
    somewhere further down.
    """
    fast = decode_png(image, data) or decode_webp(image, data)
    if fast is not None:
        return fast
    with _decoding():
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return image


@contextlib.contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's errors while opening or decoding an upload, as this package's errors."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image is too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(f"not an image in a supported format ({', '.join(FORMATS)})") from exc
    except (InvalidImage, ImageTooLarge):
        raise
    # Pillow's decoders signal corrupt data with a grab-bag of types (OSError, SyntaxError,
    # ValueError, EOFError, struct.error, ...); to the caller they all mean the same thing.
    except Exception as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc


def ink_map(image: Image.Image) -> np.ndarray:
    """Ink per pixel, float32 ``[H,W]`` in 0..1 (1 = full ink), whatever the colours and polarity.

    Transparent canvases are composited onto a background that contrasts with the strokes, so
    black and white strokes both work. The median level decides the polarity (ink covers less
    than half of any sensible upload). The background is estimated locally, so the uneven
    light of a phone photo does not read as ink, and ink is measured as the fraction of the way
    from it to the opposite extreme. Ink only ever moves pixels away from the background, so the
    residual's spread on the other side is paper texture and noise: that much is taken off too.
    """
    ink = _ink(image)
    return ink if isinstance(ink, np.ndarray) else ink[:, :]


class _LevelInk:
    """An ink map kept as the image's levels and the ink of each level (what a flat background
    gives): read a region at a time, it spares passes over the whole image."""

    def __init__(self, levels: np.ndarray, table: np.ndarray) -> None:
        self.levels = levels
        self.table = table
        self.shape = levels.shape

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return self.table.take(self.levels[key])

    def strong(self) -> np.ndarray | None:
        """Where the ink is at least ``MIN_INK`` (None: nowhere), from the levels."""
        strong = self.table >= MIN_INK
        if not strong.any():
            return None
        first, last = int(strong.argmax()), 255 - int(strong[::-1].argmax())
        if strong[first : last + 1].all():  # a range of levels: compared, not looked up
            if first == 0:
                return self.levels <= last
            if last == 255:
                return self.levels >= first
        return strong.take(self.levels)


def _ink(image: Image.Image, near: Region = EVERYWHERE) -> np.ndarray | _LevelInk | None:
    """``ink_map`` of the ``near`` part of the image, kept as levels and a table where the
    background is flat. The paper's level and noise come from the whole image either way. None
    where the image has clear ink outside ``near`` too (seen at every 4th pixel, ``SAMPLE``)."""
    grey = _grey(image)
    levels = np.asarray(grey)
    # One histogram of the levels serves both the polarity and, where the background is flat,
    # the noise floor.
    counts = np.bincount(levels[SAMPLE].ravel(), minlength=256)
    light = _ranked(counts, (50,))[0] >= 0.5  # dark ink on light paper
    background = _background(grey, light=light)
    if isinstance(background, float):
        # A flat background (a drawing): ink is a function of the level alone, so the same
        # arithmetic is done once per level (a table of 256) and looked up per pixel. The
        # table's entries are exactly what the per-pixel arithmetic gives.
        table = _ink_from_levels(np.arange(256, dtype=np.float32), background, light=light)
        ink_counts = np.bincount(_bins(table), weights=counts)
        table = _lifted(table, *_ranked(ink_counts, (100 - NOISE_PERCENTILE, 50), offset=255))
        if near != EVERYWHERE and _outside(_strong(_LevelInk(levels[SAMPLE], table)), near):
            return None
        return _LevelInk(levels[near], table)
    if near == EVERYWHERE:
        ink = _ink_from_levels(levels.astype(np.float32), background[near], light=light)
        return _lifted(ink, *_percentiles(ink[SAMPLE], (100 - NOISE_PERCENTILE, 50)))
    # The noise floor from the same sampled pixels, computed apart, which also tell whether
    # there is clear ink outside the region.
    sample = _ink_from_levels(levels[SAMPLE].astype(np.float32), background[SAMPLE], light=light)
    low, middle = _percentiles(sample, (100 - NOISE_PERCENTILE, 50))
    if _outside(_strong(_lifted(sample, low, middle)), near):
        return None
    ink = _ink_from_levels(levels[near].astype(np.float32), background[near], light=light)
    return _lifted(ink, low, middle)


def _outside(strong: np.ndarray | None, near: Region) -> bool:
    """Whether any of a sample's (``SAMPLE``) clear pixels (``_strong``) lies outside ``near``."""
    if strong is None:
        return False
    rows, cols = (slice(-(-span.start // 2), -(-span.stop // 2)) for span in near)
    return np.count_nonzero(strong) > np.count_nonzero(strong[rows, cols])


def _ink_from_levels(
    ink: np.ndarray, background: np.ndarray | float, *, light: bool
) -> np.ndarray:
    """Levels (0..255, float32, worked on in place) -> ink as the fraction of the way from the
    background to the opposite extreme (negative on the far side of the background)."""
    ink *= 1 / 255
    if light:
        ink = np.subtract(background, ink, out=ink)
        ink /= np.maximum(background, 1e-3)
    else:
        ink -= background
        ink /= np.maximum(1.0 - background, 1e-3)
    return ink


def _lifted(ink: np.ndarray, low: float, middle: float) -> np.ndarray:
    """The ink (in place) with the background's own spread taken off, clipped to 0..1."""
    # Capped so that even a grainy photo keeps its ink.
    floor = min(max(middle + (middle - low), 0.0), 0.5)
    ink -= floor
    ink /= 1.0 - floor
    return np.clip(ink, 0.0, 1.0, out=ink)


def normalize_character(ink: np.ndarray, *, blur_sigma: float = BLUR_SIGMA) -> np.ndarray:
    """An ink map -> uint8 ``[28,28]`` tile by EMNIST's recipe (see the module docstring).

    ``blur_sigma`` is in the ink map's pixels: a caller that has reduced the image passes the
    sigma scaled by the same factor, so the blur stays sigma 1 of the full-resolution image.
    Raises ``BlankImage`` when there is no ink.
    """
    ink = np.asarray(ink, dtype=np.float32)
    if ink.ndim != 2:
        raise ValueError(f"an ink map is 2-D, not of shape {ink.shape}")
    return _normalize(ink, _clear_ink(ink), blur_sigma)


def _normalize(ink: np.ndarray | _LevelInk, clear: Bounds | None, blur_sigma: float
               ) -> np.ndarray:
    """``normalize_character`` of an ink map whose clear ink (``_clear_ink``) is known."""
    if clear is None:
        raise BlankImage(NO_INK)
    # Blur only the ink's surroundings: everything further out is background and stays 0.
    rows, cols = clear
    blur_sigma = min(blur_sigma, _longer_side(rows, cols) / NIST_SIDE)
    margin = _blur_margin(blur_sigma)
    top, left = max(rows[0] - margin, 0), max(cols[0] - margin, 0)
    region = _gaussian_blur(ink[top : rows[1] + margin, left : cols[1] + margin], blur_sigma)
    peak = float(region.max())
    if peak < MIN_INK:  # isolated specks of noise: the blur spreads them to nothing
        raise BlankImage(NO_INK)

    rows, cols = _bounds(region >= BBOX_THRESHOLD * peak)
    side = _longer_side(rows, cols)
    square = side * TILE / (TILE - 2 * BORDER)
    # The square, centred on the bounding box, in the region's coordinates; cut out with the
    # background's 0 wherever it reaches past the region.
    y0 = (rows[0] + rows[1] - square) / 2
    x0 = (cols[0] + cols[1] - square) / 2
    top, left = math.floor(y0), math.floor(x0)
    window = _window(region, top, left, math.ceil(square) + 2)
    y0, x0 = y0 - top, x0 - left
    tile = np.asarray(
        Image.fromarray(window).resize(
            (TILE, TILE),
            Image.Resampling.BICUBIC,
            box=(x0, y0, x0 + square, y0 + square),
            reducing_gap=REDUCING_GAP,
        )
    )
    tile = np.clip(tile, 0.0, None)
    return np.rint(tile * (255.0 / float(tile.max()))).astype(np.uint8)


def preprocess(data: bytes, *, max_pixels: int, budget: DecodeBudget) -> np.ndarray:
    """Upload bytes -> model-ready uint8 ``[28,28]`` tile: decode (reduced to about
    ``REDUCED_SIDE`` or ``WORKING_SIDE``, finer if the character is small), ink map, EMNIST
    normalisation. Every decoding is paid for from ``budget`` first."""
    limits = (max_pixels, budget)
    decoded, side = _decode(data, limits, WORKING_SIDE, reserve=JPEG_RESERVE)
    image = _working(decoded, side)
    ink = _ink(image)
    clear = _clear_ink(ink)
    extent = _longer_side(*clear) if clear else 0
    if 0 < extent < MIN_CHARACTER_SIDE and max(image.size) < side:
        least = min(math.ceil(max(image.size) * MIN_CHARACTER_SIDE / extent), MAX_WORKING_SIDE)
        if max(decoded.size) < least:  # a JPEG decoded at a scale too small for this character
            decoded, side = _decode(data, limits, least)
        finer = _reduce(decoded, least)
        ink, clear = _finer_ink(finer, _around(clear, image.size, finer.size))
        image = finer
    # Sigma 1 is a pixel of the upload: in the working image's pixels it shrinks with it.
    return _normalize(ink, clear, BLUR_SIGMA * max(image.size) / side)


def _around(clear: Bounds, size: tuple[int, int], finer: tuple[int, int]) -> Region:
    """Where the second pass reads ink: the first pass's clear ink (in an image of ``size``,
    width by height) and ``SECOND_PASS_REACH`` times its extent each way, in the pixels of the
    ``finer`` image, within it."""
    reach = SECOND_PASS_REACH * _longer_side(*clear)

    def span(start: int, stop: int, old: int, new: int) -> slice:
        scale = new / old
        return slice(max(math.floor((start - reach) * scale), 0),
                     min(math.ceil((stop + reach) * scale), new))

    (rows, cols), (width, height) = clear, size
    return span(*rows, height, finer[1]), span(*cols, width, finer[0])


def _finer_ink(image: Image.Image, near: Region) -> tuple[np.ndarray | _LevelInk, Bounds | None]:
    """The second pass's ink map and clear ink, read ``near`` the character: the tile is then
    the whole image's. The whole image is read instead where it has clear ink elsewhere too (a
    stroke the first pass could not see), where the character comes closer to the region's edge
    than the blur reaches (unless that edge is the image's own), or where the region holds no
    clear ink."""
    ink = _ink(image, near)
    clear = _clear_ink(ink) if ink is not None else None
    if clear is not None and _holds(near, clear, image.size):
        return ink, clear
    ink = _ink(image)
    return ink, _clear_ink(ink)


def _holds(near: Region, clear: Bounds, size: tuple[int, int]) -> bool:
    """Whether ``clear`` (in ``near``'s coordinates) and the blur's reach around it lie inside
    ``near`` or end only at the edges of the image (``size``, width by height)."""
    margin = _blur_margin(BLUR_SIGMA)  # _normalize's at most: its sigma is never more
    return all(
        (span.start == 0 or start >= margin)
        and (span.stop == full or span.stop - span.start - stop >= margin)
        for span, (start, stop), full in zip(near, clear, (size[1], size[0]), strict=True)
    )


def _decode(
    data: bytes, limits: tuple[int, DecodeBudget], least_side: int, reserve: int = 1
) -> tuple[Image.Image, int]:
    """The upload in grey, and its own longer side; a JPEG scaled while decoding (``draft``).
    ``limits``: pixels of the image, and the budget decoding is paid from."""
    max_pixels, budget = limits
    image = open_image(data, max_pixels=max_pixels)
    side = max(image.size)
    draft(image, least_side, reserve)
    budget.spend(image)
    return _grey(load_image(image, data)), side


def draft(image: Image.Image, least_side: int, reserve: int = 1) -> None:
    """Have an opened JPEG decode at the smallest scale (1/2, 1/4, 1/8) that keeps its longer
    side at least ``least_side``, or ``reserve`` times that where its scale allows (a photo:
    ``JPEG_RESERVE``); a no-op for other formats."""
    side = max(image.size)
    if side < 2 * least_side:
        return
    least_side = min(least_side * reserve, side // 2)
    # At least a pixel each way: Pillow divides by the size asked for (a 640x1 JPEG).
    image.draft("L", (max(image.width * least_side // side, 1),
                      max(image.height * least_side // side, 1)))


def _working(decoded: Image.Image, side: int) -> Image.Image:
    """The image the first pass works on: reduced to about ``REDUCED_SIDE``, unless libjpeg
    has scaled it already (``side``: the upload's own longer side). Such a JPEG lies within 2x
    of ``WORKING_SIDE``, or ``JPEG_RESERVE`` times that (a photo), and is reduced by that much
    at most: reducing it further would only send a photo's small character to a second pass
    (a 1200 px photo: 20 % slower)."""
    longer = max(decoded.size)
    if longer == side:
        return _reduce(decoded, REDUCED_SIDE)
    return _reduce(decoded, max(WORKING_SIDE, longer // JPEG_RESERVE))


def _reduce(image: Image.Image, least_side: int) -> Image.Image:
    """Box-reduced by the largest whole factor that keeps the longer side at least
    ``least_side``."""
    factor = max(image.size) // least_side
    return image.reduce(factor) if factor > 1 else image


def _grey(image: Image.Image) -> Image.Image:
    """8-bit luminance (``L``) of any decoded image, transparency composited away."""
    if image.mode.startswith("I;16"):  # Pillow's own conversion to L clips 16 bits, not scales
        levels = np.asarray(image)
        # The high byte of each 16-bit level, taken in place: one copy of a byte per pixel.
        high = 1 if levels.dtype.byteorder == "<" or (
            levels.dtype.byteorder == "=" and sys.byteorder == "little") else 0
        return Image.fromarray(np.ascontiguousarray(levels.view(np.uint8)[:, high::2]))
    if image.mode == "I":
        return Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
    if not image.has_transparency_data:
        return image if image.mode == "L" else image.convert("L")
    if image.mode in ("RGBA", "LA"):  # the alpha band alone first: cheaper than splitting
        alpha = image.getchannel("A")
        if alpha.getextrema()[0] >= 128:
            return image.convert("L")  # no real transparency: the colours tell it all
        grey = image.convert("L")
    else:
        grey, alpha = image.convert("LA").split()
        if alpha.getextrema()[0] >= 128:
            return grey
    # Strokes on a transparent canvas: put them on the opposite of their mean shade (a fully
    # transparent image comes out uniform, hence blank).
    weights = np.asarray(alpha)[::2, ::2].astype(np.float32)
    shade = float((np.asarray(grey)[::2, ::2] * weights).sum()) / max(float(weights.sum()), 1.0)
    ground = Image.new("L", image.size, 255 if shade < 128 else 0)
    return Image.composite(grey, ground, alpha)


def _percentiles(sample: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """Percentiles, in -1..1 to 1/255, of ink in -1..1 at a sample of the image's pixels
    (``SAMPLE``), by histogram: much faster than sorting, and ample for levels that only have to
    separate ink from background."""
    return _ranked(np.bincount(_bins(sample).ravel()), percents, offset=255)


def _bins(values: np.ndarray) -> np.ndarray:
    """Floats in -1..1 -> histogram bins 0..510 (1/255 wide)."""
    return np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 255).astype(np.intp)


def _ranked(counts: np.ndarray, percents: tuple[float, ...], offset: int = 0) -> list[float]:
    """Percentiles of a histogram of levels (``offset``: the bin of level 0), in 1/255."""
    cumulative = np.cumsum(counts)
    ranks = [max(p / 100 * cumulative[-1], 1) for p in percents]
    return [float(level - offset) / 255 for level in np.searchsorted(cumulative, ranks)]


def _background(grey: Image.Image, *, light: bool) -> _Paper | float:
    """The background's level (0..1), to be read at any pixel, or one level where it is flat.

    A morphological closing (opening, for a dark ground) of a coarse grid of block means, wide
    enough to remove the strokes, interpolated back to full size: it follows the slow fall-off
    of light across a photo and is exact for a flat canvas.
    """
    width, height = grey.size
    cell = max(1, round(max(width, height) / BACKGROUND_CELLS))
    coarse_size = (math.ceil(width / cell), math.ceil(height / cell))
    coarse = np.asarray(grey.resize(coarse_size, Image.Resampling.BOX))
    first, second = (np.maximum, np.minimum) if light else (np.minimum, np.maximum)
    # Continue the edges outwards first (by the reach of both passes) and filter only where the
    # window fits: filtering each pass at the edge on its own would carry the light of one side
    # over to a darker edge.
    half = _extreme_filter(_edge_padded(coarse, 2 * BACKGROUND_RADIUS), first)
    # A drawing's strokes are gone after the first pass, which leaves its paper's one level:
    # the second pass would keep it.
    if half.min() == half.max():
        return float(half[0, 0]) / 255
    closed = _extreme_filter(half, second)
    if closed.min() == closed.max():
        return float(closed[0, 0]) / 255
    return _Paper(closed, height, width)


class _Paper:
    """A photo's background level, kept as its coarse grid: read a region (or a sample) at a
    time, it is interpolated back up only there.

    Interpolated as two small matrix products, straight to floats, without the rounding to
    whole levels after each of Pillow's two bilinear passes. The whole estimate took 0.225 ->
    0.18 ms at 300x225 (a 1200x900 photo's first pass) and 1.33 -> 0.52 ms at 600x800 (a second
    pass); at 167x125 building the matrices costs 0.05 ms more than it saves.
    """

    def __init__(self, grid: np.ndarray, height: int, width: int) -> None:
        self.grid = grid * np.float32(1 / 255)
        self.rows = _bilinear_weights(grid.shape[0], height)
        self.cols = _bilinear_weights(grid.shape[1], width)

    def __getitem__(self, key: Region) -> np.ndarray:
        rows, cols = key
        return self.rows[rows] @ self.grid @ self.cols[cols].T


def _bilinear_weights(size: int, new_size: int) -> np.ndarray:
    """Bilinear up-sampling from ``size`` samples to ``new_size`` as a ``[new_size, size]``
    float32 matrix, with Pillow's geometry: pixel centres aligned, edge samples continued."""
    at = np.clip((np.arange(new_size, dtype=np.float32) + 0.5) * (size / new_size) - 0.5,
                 0, size - 1)
    below = at.astype(np.intp)
    above = at - below
    weights = np.zeros((new_size, size + 1), dtype=np.float32)  # a spare column: see below
    every = np.arange(new_size)
    weights[every, below] = 1 - above
    weights[every, below + 1] = above  # 0 wherever ``below`` is the last sample: the spare
    return weights[:, :size]


def _edge_padded(image: np.ndarray, width: int) -> np.ndarray:
    """The image with its edge pixels continued ``width`` pixels outwards (``np.pad``'s
    ``edge`` mode, without its overhead on a small grid)."""
    height, breadth = image.shape
    padded = np.empty((height + 2 * width, breadth + 2 * width), dtype=image.dtype)
    padded[width:-width, width:-width] = image
    padded[:width, width:-width] = image[0]
    padded[-width:, width:-width] = image[-1]
    padded[:, :width] = padded[:, width : width + 1]
    padded[:, -width:] = padded[:, -width - 1 : -width]
    return padded


def _extreme_filter(image: np.ndarray, extreme: np.ufunc) -> np.ndarray:
    """Sliding max or min over a square window of ``2 * BACKGROUND_RADIUS + 1`` cells, where
    the window fits (the result is ``2 * BACKGROUND_RADIUS`` smaller each way)."""
    window = 2 * BACKGROUND_RADIUS + 1
    for _ in range(2):  # rows, then (transposed) columns
        # By doubling: the extreme over 2, 4, 8, ... rows, then two overlapping spans.
        span = 1
        while 2 * span <= window:
            image = extreme(image[:-span], image[span:])
            span *= 2
        if span < window:
            image = extreme(image[: len(image) - (window - span)], image[window - span :])
        image = image.T
    return np.ascontiguousarray(image)


def _clear_ink(ink: np.ndarray | _LevelInk) -> Bounds | None:
    """The bounds of an ink map's clear ink (at least ``MIN_INK``); None when there is none."""
    strong = _strong(ink)
    return _bounds(strong) if strong is not None and strong.any() else None


def _strong(ink: np.ndarray | _LevelInk) -> np.ndarray | None:
    """Where an ink map's ink is clear (at least ``MIN_INK``); None: nowhere, as a table's
    levels can tell at once."""
    return ink.strong() if isinstance(ink, _LevelInk) else ink >= MIN_INK


def _bounds(mask: np.ndarray) -> Bounds:
    """Half-open ``(start, stop)`` row and column ranges of a non-empty mask's true pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def _blur_margin(sigma: float) -> int:
    """How far from the ink the blur is computed (its kernel's reach, and a pixel)."""
    return math.ceil(3 * sigma) + 1


def _longer_side(rows: tuple[int, int], cols: tuple[int, int]) -> int:
    return max(rows[1] - rows[0], cols[1] - cols[0])


def _window(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` square of an image at ``(top, left)``, 0 where it lies outside."""
    window = np.zeros((size, size), dtype=np.float32)
    height, width = image.shape
    rows = slice(max(top, 0), min(top + size, height))
    cols = slice(max(left, 0), min(left + size, width))
    window[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = image[
        rows, cols
    ]
    return window


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur truncated at 3 sigma, zero (background) outside the array."""
    if sigma < 0.25:  # narrower than a pixel: a no-op, and the kernel would be degenerate
        return np.ascontiguousarray(image)
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    height, width = image.shape
    padded = np.zeros((height + 2 * radius, width + 2 * radius), dtype=np.float32)
    padded[radius:-radius, radius:-radius] = image
    # Tap by tap, accumulated in place; the taps are symmetric, so the pixels either side of
    # the centre are added before they are weighted (one multiplication for two taps).
    middle = taps[radius]
    across = np.multiply(padded[:, radius : radius + width], middle)
    term = np.empty_like(across)
    for i in range(radius):
        np.add(padded[:, i : i + width], padded[:, 2 * radius - i : 2 * radius - i + width],
               out=term)
        term *= taps[i]
        across += term
    blurred = np.multiply(across[radius : radius + height], middle)
    term = term[:height]
    for i in range(radius):
        np.add(across[i : i + height], across[2 * radius - i : 2 * radius - i + height], out=term)
        term *= taps[i]
        blurred += term
    return blurred
