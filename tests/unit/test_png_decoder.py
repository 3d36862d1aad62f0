"""libspng decodes the common PNGs to Pillow's very pixels, and leaves every other file to Pillow.

``shared.png_decoder.decode_png`` against Pillow's own ``load`` on the same bytes: drawings and
random noise (which makes the encoder use every row filter) in each mode it takes, at odd sizes;
then the PNGs it must hand back (``None``), the files whose pixel data libspng is handed as it
came rather than inflated by libdeflate, and what ``load_image`` and ``preprocess`` make of
damaged files either way.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shared import png_decoder
from shared.errors import InvalidImage
from shared.png_decoder import decode_png
from shared.preprocess import DecodeBudget, load_image, open_image, preprocess
from tests.payloads import (
    PNG_7,
    PNG_DAMAGES,
    animated,
    encode,
    png_chunk,
    png_damaged,
    png_split_pixels,
    seven,
)

MAX_PIXELS = 40_000_000


def opened(data: bytes) -> Image.Image:
    return open_image(data, max_pixels=MAX_PIXELS)


def pillow_pixels(data: bytes) -> np.ndarray:
    image = opened(data)
    image.load()
    return np.asarray(image)


def noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    bands = len(mode)
    levels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), np.uint8)
    # Half the rows smooth, so the encoder picks Sub, Up, Average and Paeth as well as None.
    levels[::2] = np.cumsum(levels[::2] // 32, axis=1, dtype=np.uint8)
    return Image.fromarray(levels[..., 0] if bands == 1 else levels, mode)


def png_of(header: bytes, scanlines: bytes) -> bytes:
    """A PNG of an IHDR body and its scanlines (each row led by its filter byte), for the kinds
    Pillow does not write."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(scanlines)) + png_chunk(b"IEND", b""))


def rgb16_png(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG (Pillow writes none): Pillow opens it as mode RGB, raw mode RGB;16B."""
    rows = np.random.default_rng(1).integers(0, 65536, (height, width * 3)).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    return png_of(struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0), raw)


def interlaced(image: Image.Image) -> bytes:
    """``image`` (8-bit, L/RGB/RGBA) as an Adam7-interlaced PNG (Pillow writes none), each row
    of each pass unfiltered."""
    pixels = np.asarray(image)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2))
    raw = b"".join(b"\0" + row.tobytes() for x, y, dx, dy in passes
                   for row in pixels[y::dy, x::dx] if row.size)
    colour = {"L": 0, "RGB": 2, "RGBA": 6}[image.mode]
    return png_of(struct.pack(">IIBBBBB", image.width, image.height, 8, colour, 0, 0, 1), raw)


def pixel_blocks(png: bytes) -> tuple[list[bytes], list[int]]:
    """The chunk types of a PNG and the block types (0: stored) of its one IDAT's zlib stream."""
    kinds, at, stream = [], 8, b""
    while at < len(png):
        (length,) = struct.unpack_from(">I", png, at)
        kinds.append(png[at + 4 : at + 8])
        if kinds[-1] == b"IDAT":
            stream += png[at + 8 : at + 8 + length]
        at += 12 + length
    blocks, at = [], 2
    while at < len(stream) - 4:
        blocks.append(stream[at] >> 1 & 3)
        at += 5 + struct.unpack_from("<H", stream, at + 1)[0]
    return kinds, blocks


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (3, 7), (280, 280), (451, 333)])
def test_libspng_gives_pillows_pixels(mode: str, size: tuple[int, int]) -> None:
    for image in (noise(mode, size), seven(mode, max(size)).resize(size)):
        data = encode(image)
        fast = decode_png(opened(data), data)
        assert fast is not None
        assert fast.size == size
        assert np.array_equal(np.asarray(fast.convert(mode)), pillow_pixels(data))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("chunks", [1, 5])
def test_libspng_is_handed_the_pixels_inflated_and_stored(spng_calls, mode: str,
                                                          chunks: int) -> None:
    """libdeflate inflates the pixel data (whatever its chunks), and libspng gets the header and
    the scanlines in stored blocks: one per 64 KiB of a 451x333 RGBA image's 600 KB."""
    data = png_split_pixels(encode(noise(mode, (451, 333))), chunks)
    fast = decode_png(opened(data), data)
    assert fast is not None
    assert np.array_equal(np.asarray(fast.convert(mode)), pillow_pixels(data))
    [(given, _)] = spng_calls
    kinds, blocks = pixel_blocks(given)
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    assert blocks == [0] * -(-333 * (1 + 451 * len(mode)) // 65535)


@pytest.mark.parametrize(("make", "pillow_decodes"), [
    (lambda: interlaced(seven("RGB", 97)), True),
    (lambda: png_damaged(PNG_7, "zlib-checksum"), False),
    (lambda: png_damaged(PNG_7, "rows-then-bomb"), True),
    (lambda: png_damaged(PNG_7, "pixels-in-tiny-chunks"), True),
    (lambda: encode(Image.new("L", (4200, 4000), 255)), True),
], ids=["interlaced", "bad-adler-32", "rows-then-bomb", "tiny-chunks", "over-16-mib"])
def test_libspng_inflates_what_libdeflate_does_not_take(spng_calls, make,
                                                        pillow_decodes: bool) -> None:
    """Interlaced rows, a stream libdeflate refuses or that holds more than the header's rows,
    over ``MAX_PIXEL_CHUNKS`` chunks or ``MAX_SCANLINE_BYTES``: libspng gets the file as it came,
    and gives what it gave before libdeflate (Pillow's pixels, where Pillow decodes)."""
    data = make()
    fast = decode_png(opened(data), data)
    assert fast is not None
    assert [given for given, _ in spng_calls] == [data]
    if pillow_decodes:
        assert np.array_equal(np.asarray(fast.convert(opened(data).mode)), pillow_pixels(data))


def test_the_limits_keep_a_drawing_on_the_fast_path() -> None:
    """A 2000x2000 RGBA scan and a PNG of ``MAX_PIXEL_CHUNKS`` pixel chunks are still inflated by
    libdeflate: the limits stop only what no drawing is."""
    for data in (encode(Image.new("RGBA", (2000, 2000), "white")),
                 png_split_pixels(PNG_7, png_decoder.MAX_PIXEL_CHUNKS)):
        assert png_decoder._with_stored_pixels(opened(data), data) is not None


@pytest.mark.parametrize(("alpha", "mode"), [(255, "RGBX"), (254, "RGBA"), (0, "RGBA")])
def test_an_rgba_png_opaque_everywhere_comes_out_as_rgbx(alpha: int, mode: str) -> None:
    """Alpha 255 in every pixel is no alpha at all: the image comes out without the band (the
    same colours); one pixel below that keeps it."""
    image = seven("RGBA", 57)
    image.putpixel((56, 56), (255, 255, 255, alpha))
    data = encode(image)
    fast = decode_png(opened(data), data)
    assert fast is not None and fast.mode == mode
    assert np.array_equal(np.asarray(fast.convert("RGBA")), pillow_pixels(data))


def test_an_rgb_png_comes_out_as_rgb() -> None:
    fast = decode_png(opened(PNG_7), PNG_7)
    assert fast is not None and fast.mode == "RGB"
    assert np.array_equal(np.asarray(fast.convert("L")), np.asarray(seven().convert("L")))


@pytest.mark.parametrize("make", [
    lambda: encode(seven("P")),
    lambda: encode(seven("1")),
    lambda: encode(seven("LA")),
    lambda: encode(seven("I;16")),
    lambda: rgb16_png(40, 30),
    lambda: encode(seven("RGB"), transparency=(255, 255, 255)),
    lambda: animated("PNG"),
    lambda: encode(seven(), exif=exif_orientation(1)),
    lambda: encode(seven(), "JPEG"),
    lambda: png_damaged(PNG_7, "zlib-stream"),
], ids=["palette", "bilevel", "grey-alpha", "16-bit-grey", "16-bit-rgb", "colour-key",
        "animation", "exif", "jpeg", "corrupt-stream"])
def test_the_rest_is_left_to_pillow(make) -> None:
    data = make()
    assert decode_png(opened(data), data) is None


def test_load_image_decodes_a_common_png_with_libspng(spng_calls) -> None:
    load_image(opened(PNG_7), PNG_7)
    assert [fmt for _, fmt in spng_calls] == ["RGB"]


def test_a_sixteen_bit_rgb_png_is_still_decoded_by_pillow() -> None:
    data = rgb16_png(40, 30)
    image = load_image(opened(data), data)
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("damage", PNG_DAMAGES)
def test_a_damaged_png_gives_the_seven_or_a_clear_error(damage: str) -> None:
    """Whole pixels are classified whatever is damaged around them; damaged pixels are an
    ``InvalidImage``, never another exception."""
    data = png_damaged(PNG_7, damage)
    budget = DecodeBudget(10**9, 10**9)
    if damage in ("zlib-stream", "rows-missing"):
        with pytest.raises(InvalidImage, match="truncated or corrupt"):
            preprocess(data, max_pixels=MAX_PIXELS, budget=budget)
    else:
        whole = preprocess(PNG_7, max_pixels=MAX_PIXELS, budget=budget)
        assert np.array_equal(preprocess(data, max_pixels=MAX_PIXELS, budget=budget), whole)


def test_the_text_after_the_pixels_is_never_inflated() -> None:
    """Pillow inflates a zTXt chunk after the pixels (and refuses one over its limit); libspng
    stops at the pixels, so a 64 MiB text bomb costs nothing."""
    data = png_damaged(PNG_7, "text-bomb-after-pixels")
    with pytest.raises(ValueError, match="too large"):
        image = Image.open(io.BytesIO(data))
        image.load()
    assert decode_png(opened(data), data) is not None
