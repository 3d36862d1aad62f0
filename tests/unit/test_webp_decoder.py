"""libwebp decodes simple lossy WebPs to Pillow's grey (within a level), and leaves every other
file to Pillow.

``shared.webp_decoder.decode_webp`` against Pillow's own decoding and conversion to grey on the
same bytes: drawings and noise at odd sizes; then the WebPs it must hand back (``None``), the
buffers libwebp must not overrun, and what ``load_image`` and ``preprocess`` make of them.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.preprocess import pillow_decodes_every_image
from shared import preprocess as pre
from shared.errors import InvalidImage
from shared.preprocess import DecodeBudget, load_image, open_image, preprocess
from shared.webp_decoder import decode_webp
from tests.payloads import PNG_7, WEBP_7, animated, encode, seven, webp_damaged

MAX_PIXELS = 40_000_000


def opened(data: bytes) -> Image.Image:
    return open_image(data, max_pixels=MAX_PIXELS)


def pillow_grey(data: bytes) -> np.ndarray:
    return np.asarray(opened(data).convert("L"), np.int16)


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    levels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return Image.fromarray(levels, "RGB")


def fast_and_pillow(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as a lossy WebP: the grey ``decode_webp`` gives, and Pillow's."""
    data = encode(image, "WEBP", quality=80)
    grey = decode_webp(opened(data), data)
    assert grey is not None and grey.mode == "L" and grey.size == image.size
    return np.asarray(grey, np.int16), pillow_grey(data)


@pytest.mark.parametrize("image", [
    seven(), seven(size=451), seven("L", size=300), seven("RGBA"),  # an opaque canvas
], ids=["drawing", "drawing-odd", "grey-drawing", "opaque-rgba"])
def test_a_drawings_grey_is_pillows_within_a_level(image: Image.Image) -> None:
    fast, pillow = fast_and_pillow(image)
    assert np.abs(fast - pillow).max() <= 1


@pytest.mark.parametrize("image", [noise((281, 193)), noise((1, 1)), noise((17, 2), seed=1)],
                         ids=["odd", "one-pixel", "thin"])
def test_colour_noises_grey_is_pillows_within_a_level_where_pillow_does_not_clip(
        image: Image.Image) -> None:
    """A saturated colour can come out of the conversion to RGB at 0 or 255 in a band, and
    Pillow's grey there is off the luma the file holds (by up to 16 levels in colour noise;
    a drawing has no such pixel): everywhere else the two agree within a level."""
    fast, pillow = fast_and_pillow(image)
    data = encode(image, "WEBP", quality=80)
    rgb = np.asarray(opened(data).convert("RGB"))
    unclipped = ~((rgb == 0) | (rgb == 255)).any(axis=2)
    assert np.abs(fast - pillow)[unclipped].max(initial=0) <= 1


@pytest.mark.parametrize("data", [
    encode(seven(), "WEBP", lossless=True),  # VP8L
    encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "WEBP"),  # alpha: the extended format
    animated("WEBP"),
    PNG_7,
    webp_damaged(WEBP_7, "frame-cut-short"),
    webp_damaged(WEBP_7, "header-zeroed"),
], ids=["lossless", "transparent", "animated", "png", "frame-cut-short", "header-zeroed"])
def test_every_other_file_is_left_to_pillow(data: bytes) -> None:
    assert decode_webp(opened(data), data) is None


@pytest.mark.parametrize("other", [encode(seven(size=200), "WEBP"),
                                   encode(seven(size=400), "WEBP")], ids=["smaller", "larger"])
def test_a_frame_of_another_size_than_pillow_read_is_left_to_pillow(other: bytes) -> None:
    """libwebp decodes into buffers of the size Pillow read (and the budget paid for): a frame
    that does not fit them is refused, never written past them."""
    assert decode_webp(opened(other), WEBP_7) is None


def test_load_image_decodes_a_simple_lossy_webp_to_grey(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(pre, "decode_webp", lambda *a: calls.append(a) or decode_webp(*a))
    image = load_image(opened(WEBP_7), WEBP_7)
    assert calls and image.mode == "L" and image.size == (280, 280)


def test_the_tile_is_the_one_pillow_gives() -> None:
    def tile(data: bytes) -> np.ndarray:
        return preprocess(data, max_pixels=MAX_PIXELS, budget=DecodeBudget(10**9, 10**9))

    fast = tile(WEBP_7)
    with pillow_decodes_every_image():
        slow = tile(WEBP_7)
    assert np.abs(fast.astype(np.int16) - slow).mean() < 0.1


def test_a_frame_libwebp_refuses_is_refused_by_pillow_too() -> None:
    data = webp_damaged(WEBP_7, "frame-cut-short")
    with pytest.raises(InvalidImage):
        preprocess(data, max_pixels=MAX_PIXELS, budget=DecodeBudget(10**9, 10**9))


def test_the_simple_format_is_read_from_the_bytes_not_the_name() -> None:
    """A lossy file in the extended format (here: with an EXIF chunk) goes to Pillow, which
    applies its orientation."""
    image = seven()
    exif = image.getexif()
    exif[0x0112] = 6
    data = encode(image, "WEBP", exif=exif)
    assert data[12:16] == b"VP8X"
    assert decode_webp(opened(data), data) is None
    assert load_image(opened(data), data).size == (280, 280)
    assert io.BytesIO(data).read(4) == b"RIFF"
