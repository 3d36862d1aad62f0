"""The cheap ways ``shared.preprocess`` computes its stages give what the plain ways give.

Each fast path (the ink of a flat background looked up per level, the background's sliding
extreme by doubling over an edge-padded grid, its interpolation by matrices, the blur
accumulated in place from symmetric taps) is checked here against the straightforward
computation it replaces, written out in the test, on drawings, photos and random arrays.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared import preprocess as pre
from shared.preprocess import BACKGROUND_RADIUS, MIN_INK, NOISE_PERCENTILE


def plain_ink_map(image: Image.Image) -> np.ndarray:
    """``ink_map`` pixel by pixel, as it was written before the per-level table."""
    grey = pre._grey(image)
    levels = np.asarray(grey)
    light = np.median(levels[pre.SAMPLE]) >= 127.5
    background = pre._background(grey, light=light)
    if not isinstance(background, float):
        background = background[pre.EVERYWHERE]
    ink = levels.astype(np.float32)
    ink *= 1 / 255
    if light:
        ink = np.subtract(background, ink, out=ink)
        ink /= np.maximum(background, 1e-3)
    else:
        ink -= background
        ink /= np.maximum(1.0 - background, 1e-3)
    low, middle = pre._percentiles(ink[pre.SAMPLE], (100 - NOISE_PERCENTILE, 50))
    floor = min(max(middle + (middle - low), 0.0), 0.5)
    ink -= floor
    ink /= 1.0 - floor
    return np.clip(ink, 0.0, 1.0, out=ink)


def plain_extreme(grid: np.ndarray, extreme: np.ufunc) -> np.ndarray:
    """The extreme over every full (2r+1)-square window, window by window."""
    window = 2 * BACKGROUND_RADIUS + 1
    height, width = grid.shape[0] - window + 1, grid.shape[1] - window + 1
    out = np.empty((height, width), dtype=grid.dtype)
    for y in range(height):
        for x in range(width):
            out[y, x] = extreme.reduce(grid[y : y + window, x : x + window], axis=None)
    return out


def plain_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian truncated at 3 sigma, zero outside, summed tap by tap."""
    radius = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    height, width = image.shape
    padded = np.pad(image.astype(np.float64), radius)
    across = sum(w * padded[:, i : i + width] for i, w in enumerate(taps))
    return sum(w * across[i : i + height] for i, w in enumerate(taps))


def drawing(mode: str, paper: object, ink: object, size: int = 280) -> Image.Image:
    image = Image.new("RGB", (size, size), paper)
    pen = ImageDraw.Draw(image)
    pen.line([(70, 60), (210, 60), (120, 230)], fill=ink, width=18, joint="curve")
    pen.ellipse([150, 150, 200, 200], outline=ink, width=9)
    image = image.resize((size // 2, size // 2), Image.Resampling.LANCZOS)  # anti-aliased
    return image.resize((size, size), Image.Resampling.BICUBIC).convert(mode)


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    strokes = np.asarray(drawing("L", "white", "black", 300), dtype=np.float32) / 255
    shade = np.linspace(0.9, 0.55, 300, dtype=np.float32)[None, :].repeat(300, axis=0)
    levels = shade * (0.3 + 0.7 * strokes) + rng.normal(0, 0.02, (300, 300))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(levels, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                          quality=85)
    return Image.open(io.BytesIO(buffer.getvalue()))


IMAGES = {
    "black on white": drawing("RGB", "white", "#111"),
    "white on black": drawing("RGB", "black", "white"),
    "grey on grey": drawing("L", (180, 180, 180), (90, 90, 90)),
    "blue on cream": drawing("RGB", (240, 230, 200), (30, 50, 160)),
    "opaque RGBA": drawing("RGBA", "white", "black"),
    "photo 0": photo(0),
    "photo 1": photo(1),
}


@pytest.mark.parametrize("name", IMAGES)
def test_ink_map_is_the_per_pixel_arithmetic(name: str) -> None:
    image = IMAGES[name]
    assert np.array_equal(pre.ink_map(image), plain_ink_map(image))


@pytest.mark.parametrize("name", IMAGES)
def test_ink_kept_as_levels_reads_like_the_full_map(name: str) -> None:
    """Drawings keep their ink as levels and a table: its regions and its clear ink are the
    full map's."""
    image = IMAGES[name]
    ink = pre._ink(image)
    full = plain_ink_map(image)
    if not name.startswith("photo"):
        assert isinstance(ink, pre._LevelInk)
    assert np.array_equal(ink[20:200, 35:260], full[20:200, 35:260])
    assert pre._clear_ink(ink) == pre._bounds(full >= MIN_INK)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("margin", [2, 15, 400])
def test_ink_near_a_region_is_the_full_maps_there(name: str, margin: int) -> None:
    """The second pass reads ink near the character alone: the same values as the full map's
    there, the paper's level and noise still the whole image's (to float rounding: a photo's
    background is interpolated by a matrix product of another shape)."""
    image = IMAGES[name]
    full = plain_ink_map(image)
    (top, bottom), (left, right) = pre._bounds(full >= MIN_INK)
    near = (slice(max(top - margin, 0), bottom + margin), slice(max(left - margin, 0),
                                                               right + margin))
    near_ink = pre._ink(image, near)[pre.EVERYWHERE]
    np.testing.assert_allclose(near_ink, full[near], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", IMAGES)
def test_ink_near_a_region_is_refused_where_clear_ink_lies_outside_it(name: str) -> None:
    """A region that leaves out some of the clear ink (the half of it below its middle row)
    gets none: the sampled pixels show the ink outside."""
    image = IMAGES[name]
    (top, bottom), _ = pre._bounds(plain_ink_map(image) >= MIN_INK)
    assert pre._ink(image, (slice(0, (top + bottom) // 2), slice(0, image.width))) is None


@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (32, 32), (24, 32), (17, 9)])
@pytest.mark.parametrize("extreme", [np.maximum, np.minimum])
def test_background_filter_is_the_windowed_extreme(shape: tuple[int, int], extreme) -> None:
    grid = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    padded = pre._edge_padded(grid, 2 * BACKGROUND_RADIUS)
    assert np.array_equal(padded, np.pad(grid, 2 * BACKGROUND_RADIUS, mode="edge"))
    assert np.array_equal(pre._extreme_filter(padded, extreme), plain_extreme(padded, extreme))


@pytest.mark.parametrize(("grid", "size"), [((25, 34), (300, 225)), ((32, 24), (150, 200)),
                                            ((1, 5), (40, 3)), ((7, 7), (7, 7))])
def test_background_interpolation_is_pillows_bilinear_resize(grid, size) -> None:
    """The matrices put the samples where Pillow's bilinear resize does (of floats: no
    rounding), edges included."""
    coarse = np.random.default_rng(5).random(grid, dtype=np.float32)
    width, height = size
    ours = pre._bilinear_weights(grid[0], height) @ coarse @ pre._bilinear_weights(grid[1],
                                                                                   width).T
    pillows = np.asarray(Image.fromarray(coarse, "F").resize(size, Image.Resampling.BILINEAR))
    assert ours.dtype == np.float32 and ours.shape == (height, width)
    assert np.abs(ours - pillows).max() < 1e-5


@pytest.mark.parametrize("sigma", [0.3, 0.36, 1.0, 1.7])
def test_blur_is_the_plain_separable_sum(sigma: float) -> None:
    rng = np.random.default_rng(3)
    image = (rng.random((61, 47)) * (rng.random((61, 47)) < 0.3)).astype(np.float32)
    blurred = pre._gaussian_blur(image, sigma)
    assert blurred.dtype == np.float32
    assert np.abs(blurred - plain_blur(image, sigma)).max() < 1e-6


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
@pytest.mark.parametrize("alpha", [255, 128, 127, 0])
def test_grey_of_an_alpha_image_is_its_luminance_or_composited(mode: str, alpha: int) -> None:
    """Opaque enough (alpha >= 128 everywhere): the luminance band, as ``convert("LA")`` has
    it; else the strokes composited onto a contrasting ground, as before."""
    image = drawing("RGBA", "white", (30, 60, 200)).convert(mode)
    image.putalpha(alpha)
    luminance, alphas = image.convert("LA").split()
    grey = pre._grey(image)
    if alpha >= 128:
        assert np.array_equal(np.asarray(grey), np.asarray(luminance))
    else:
        # Mostly white: a dark ground; nothing visible at all: the mean shade counts as 0.
        ground = Image.new("L", image.size, 0 if alpha else 255)
        expected = Image.composite(luminance, ground, alphas)
        assert np.array_equal(np.asarray(grey), np.asarray(expected))
