"""Uploads as people make them (formats, transparency, polarity, colour, EXIF rotation, position)
all come back as the same upright EMNIST-style tile; bad uploads fail with the typed errors.

Every image is drawn here at run time, so the tests need no data set.
"""

from __future__ import annotations

import io
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageDraw

from shared import preprocess as pre
from shared.errors import BlankImage, ImageTooLarge, InvalidImage
from shared.preprocess import (
    DecodeBudget,
    _working,
    ink_map,
    load_image,
    normalize_character,
    open_image,
    preprocess,
)
from tests.payloads import png_claiming

MAX_PIXELS = 4_000_000


def budget() -> DecodeBudget:
    return DecodeBudget(per_image=16 * 1024 * 1024, left=32 * 1024 * 1024)
# Mean absolute difference (grey levels) under which two tiles show the same character;
# re-encoding and re-drawing alone move a tile by 1-5 levels, a different glyph by 25 or more.
SAME = 8.0


def f_glyph(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], ink: object) -> None:
    """An 'F': no rotation or mirror image of it looks like it, so orientation errors show."""
    x0, y0, x1, y1 = box
    width = max((x1 - x0) // 7, 1)
    draw.line([(x0, y1), (x0, y0), (x1, y0)], fill=ink, width=width, joint="curve")
    draw.line([(x0, (y0 + y1) // 2), (x0 + 2 * (x1 - x0) // 3, (y0 + y1) // 2)], ink, width)


def bar_glyph(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], ink: object) -> None:
    """A flat bar: a character that looks nothing like the 'F'."""
    x0, y0, x1, y1 = box
    draw.ellipse([x0, (y0 + y1) // 2 - 15, x1, (y0 + y1) // 2 + 15], fill=ink)


def canvas(
    *,
    size: tuple[int, int] = (240, 200),
    box: tuple[int, int, int, int] = (85, 40, 155, 160),
    mode: str = "RGB",
    paper: object = "white",
    ink: object = "black",
    glyph=f_glyph,
) -> Image.Image:
    image = Image.new(mode, size, paper)
    glyph(ImageDraw.Draw(image), box, ink)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def tile_of(image: Image.Image, fmt: str = "PNG", **options: object) -> np.ndarray:
    return preprocess(encode(image, fmt, **options), max_pixels=MAX_PIXELS,
                      budget=budget())


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def ink_bounds(tile: np.ndarray, level: int = 128) -> tuple[int, int, int, int]:
    """First and last row, first and last column holding ink brighter than ``level``."""
    rows = np.flatnonzero((tile > level).any(axis=1))
    cols = np.flatnonzero((tile > level).any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The 'F' in black on white, lossless: what every other rendering should come back as."""
    return tile_of(canvas())


# --- output contract -------------------------------------------------------------------------


def test_tile_is_28x28_uint8_white_ink_on_black(reference: np.ndarray) -> None:
    assert reference.shape == (28, 28)
    assert reference.dtype == np.uint8
    assert reference.max() == 255
    assert reference.min() == 0
    # Background black, ink white: the border is empty and the F's stem is lit.
    assert reference[0].max() == 0 and reference[-1].max() == 0
    assert reference[:, 0].max() == 0 and reference[:, -1].max() == 0
    assert reference[14, 2:8].max() > 200


def test_tile_is_upright(reference: np.ndarray) -> None:
    """The F's bar is at the top and its stem on the left, as a person reads it."""
    top, bottom, left, right = ink_bounds(reference)
    columns, rows = slice(left, right + 1), slice(top + 4, bottom + 1)
    assert (
        reference[top : top + 3, columns].mean()
        > reference[bottom - 2 : bottom + 1, columns].mean() + 100
    )
    assert (
        reference[rows, left : left + 3].mean()
        > reference[rows, right - 2 : right + 1].mean() + 100
    )


def test_character_spans_24_pixels_with_2_pixel_border(reference: np.ndarray) -> None:
    """EMNIST's framing: the longer side fills 24 of 28 pixels, centred."""
    top, bottom, left, right = ink_bounds(reference, level=64)
    assert (top, bottom) in {(2, 25), (1, 26), (2, 26), (1, 25)}
    assert abs((left + right) / 2 - 13.5) <= 1.0


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {"quality": 85}),
        ("WEBP", {"quality": 80}),
        ("BMP", {}),
        ("GIF", {}),
        ("PNG", {"bits": 4}),
    ],
)
def test_every_format_gives_the_same_tile(
    reference: np.ndarray, fmt: str, options: dict[str, object]
) -> None:
    assert distance(tile_of(canvas(), fmt, **options), reference) < SAME


def test_animated_gif_uses_its_first_frame(reference: np.ndarray) -> None:
    first, second = canvas(), canvas(glyph=bar_glyph)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    tile = preprocess(data, max_pixels=MAX_PIXELS, budget=budget())
    assert distance(tile, reference) < SAME
    assert distance(tile, tile_of(second)) > 3 * SAME


def test_16_bit_grey_png_is_scaled_not_clipped(reference: np.ndarray) -> None:
    levels = np.asarray(canvas().convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(levels)
    assert image.mode.startswith("I;16")
    assert distance(tile_of(image), reference) < SAME


# --- colours, transparency, polarity ---------------------------------------------------------


@pytest.mark.parametrize(
    "stroke", [(0, 0, 0, 255), (255, 255, 255, 255), (30, 60, 200, 255), (250, 230, 40, 255)]
)
def test_transparent_canvas_works_whatever_the_stroke_colour(
    reference: np.ndarray, stroke: tuple[int, int, int, int]
) -> None:
    """Black, white, blue or yellow strokes on a fully transparent canvas (its hidden colour
    is black, as browsers' canvases export it)."""
    image = canvas(mode="RGBA", paper=(0, 0, 0, 0), ink=stroke)
    assert distance(tile_of(image), reference) < SAME


def test_light_on_dark_gives_the_same_tile_as_dark_on_light(reference: np.ndarray) -> None:
    inverted = canvas(paper="black", ink="white")
    assert distance(tile_of(inverted), reference) < SAME


def test_coloured_ink_on_tinted_paper(reference: np.ndarray) -> None:
    image = canvas(paper=(235, 225, 190), ink=(20, 40, 150))
    assert distance(tile_of(image, "JPEG", quality=85), reference) < SAME


def test_photo_with_uneven_light_and_grey_paper(reference: np.ndarray) -> None:
    """Paper that darkens from 90 % to 60 % across the frame, pencil-grey ink, sensor noise:
    the shading must not read as ink (it would widen the bounding box and shrink the F)."""
    width, height = 240, 200
    shade = np.linspace(0.9, 0.6, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    strokes = np.asarray(canvas().convert("L"), dtype=np.float32) / 255
    noise = np.random.default_rng(0).normal(0, 0.015, (height, width))
    photo = shade * (0.35 + 0.65 * strokes) + noise
    image = Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8))
    assert distance(tile_of(image, "JPEG", quality=85), reference) < SAME


# --- orientation and position ----------------------------------------------------------------


def test_exif_orientation_is_applied(reference: np.ndarray) -> None:
    """Stored rotated 90 degrees anticlockwise with Orientation 6 ("rotate 90 clockwise to
    view"), as a phone held upright writes it: the tile comes back upright."""
    stored = canvas().transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6
    assert distance(tile_of(stored, "JPEG", quality=90, exif=exif), reference) < SAME
    assert distance(tile_of(stored, "JPEG", quality=90), reference) > 3 * SAME


def test_off_centre_character_is_centred(reference: np.ndarray) -> None:
    corner = canvas(size=(500, 400), box=(10, 250, 80, 370))
    tile = tile_of(corner)
    assert distance(tile, reference) < SAME
    top, bottom, left, right = ink_bounds(tile, level=64)
    assert abs((top + bottom) / 2 - 13.5) <= 1.0
    assert abs((left + right) / 2 - 13.5) <= 1.0


def test_tall_thin_stroke_keeps_its_aspect_ratio() -> None:
    """A '1' is not stretched to fill the square: it stays a thin upright stroke, centred."""
    image = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(image).line([(70, 40), (70, 260)], fill=0, width=12)
    tile = preprocess(encode(image), max_pixels=MAX_PIXELS, budget=budget())
    top, bottom, left, right = ink_bounds(tile, level=64)
    assert bottom - top + 1 >= 23
    assert right - left + 1 <= 4
    assert abs((left + right) / 2 - 13.5) <= 1.0


def test_size_of_the_drawing_does_not_matter(reference: np.ndarray) -> None:
    """A large photo (reduced before processing) and a small drawing give the same tile."""
    large = encode(canvas(size=(2400, 2000), box=(850, 400, 1550, 1600)), "JPEG", quality=85)
    small = canvas(size=(60, 50), box=(20, 7, 41, 43))
    tile = preprocess(large, max_pixels=2400 * 2000, budget=budget())
    assert distance(tile, reference) < SAME
    assert distance(tile_of(small), reference) < SAME



@pytest.mark.parametrize(("decoded", "side", "working"), [
    ((280, 280), 280, (140, 140)),  # a page's drawing: a quarter of its pixels
    ((450, 300), 450, (113, 75)),  # by 4: a partial block at the edge is a pixel too
    ((199, 150), 199, (199, 150)),  # small already
    ((99, 80), 99, (99, 80)),
    ((300, 225), 1200, (300, 225)),  # a 1200 px JPEG libjpeg scaled by 1/4: not halved again
    ((600, 450), 1200, (300, 225)),  # ... or by 1/2 (JPEG_RESERVE): halved back to that
    ((500, 375), 4000, (250, 188)),  # scaled by 1/8 and still large: halved at most
    ((225, 225), 450, (225, 225)),  # a drawing libjpeg scaled by 1/2
])
def test_the_scale_the_first_pass_works_at(decoded, side, working) -> None:
    assert _working(Image.new("L", decoded), side).size == working


@pytest.mark.parametrize(("size", "reserve", "decoded"), [
    ((1200, 900), 1, (300, 225)),  # the first pass's scale: 1/4
    ((1200, 900), 2, (600, 450)),  # a photo: one scale finer, for a second pass
    ((700, 500), 2, (350, 250)),
    ((639, 400), 2, (320, 200)),  # a drawing's: 1/2 either way
    ((450, 450), 2, (225, 225)),
    ((319, 300), 2, (319, 300)),  # small: decoded whole
    ((4000, 3000), 2, (500, 375)),  # 1/8 is libjpeg's smallest scale
    ((640, 1), 2, (640, 1)),  # a pixel thin: not scaled, and Pillow never asked for 0 pixels
    ((1, 4000), 2, (1, 4000)),
])
def test_the_scale_a_jpeg_decodes_at(size, reserve, decoded) -> None:
    image = open_image(encode(Image.new("L", size, 255), "JPEG"), max_pixels=4000 * 3000)
    pre.draft(image, pre.WORKING_SIDE, reserve)
    assert image.size == decoded


@pytest.mark.parametrize("height", [120, 150, 180])
def test_small_character_in_a_large_photo(reference: np.ndarray, height: int) -> None:
    """A character a tenth to a seventh of a photo's side: reduced as far as a frame-filling
    one, it would come out 17-26 px tall and blurred (distance 7-11); it is worked on again at
    a finer scale, 48-96 px tall, and comes out within 6 (1.3-5.3 here: at 48 px a working pixel
    is half a tile pixel, so the crop can place this hard-edged glyph's strokes up to a quarter
    of a tile pixel from where a large drawing's does)."""
    photo = canvas(size=(1200, 1200), box=(300, 300, 300 + height * 7 // 12, 300 + height))
    assert distance(tile_of(photo), reference) < 0.75 * SAME
    with mock.patch.object(pre, "MIN_CHARACTER_SIDE", 0):  # the first pass alone
        assert distance(tile_of(photo), reference) > 0.75 * SAME

@pytest.mark.parametrize("height", [100, 120, 150])
def test_the_second_pass_reads_ink_near_the_character_alone(height: int) -> None:
    """Read near the first pass's character only, the second pass gives the tile that reading
    the whole finer image gives: on a photo's uneven paper, whose level is interpolated there
    alone, and on a drawing's flat paper."""
    drawn = canvas(size=(1200, 1200), box=(300, 300, 300 + height * 7 // 12, 300 + height),
                   mode="L")
    shade = np.linspace(0.95, 0.5, 1200, dtype=np.float32)[None, :]
    noise = np.random.default_rng(height).normal(0, 0.02, (1200, 1200))
    lit = Image.fromarray(np.clip(np.asarray(drawn) * shade + 255 * noise, 0, 255)
                          .astype(np.uint8))
    assert not isinstance(pre._ink(lit), pre._LevelInk)  # the photo's way
    for photo in (lit, drawn):
        with mock.patch.object(pre, "_ink", wraps=pre._ink) as inks:
            near = tile_of(photo, "JPEG", quality=90)
        # The first pass's whole image, then the finer one's region around the character.
        first, finer = (call.args[1:] for call in inks.call_args_list)
        assert first == () and len(finer) == 1 and finer[0] != pre.EVERYWHERE
        with mock.patch.object(pre, "SECOND_PASS_REACH", 100.0):  # as far as the whole image
            assert np.array_equal(tile_of(photo, "JPEG", quality=90), near)


def test_where_the_second_pass_reads_ink() -> None:
    """The first pass's character (rows 10-20, columns 30-34 of a 100x50 image) and once its
    extent each way, in a finer image of 400x200, within it; the region has room for the
    blur around the ink unless it ends at the image's own edge."""
    near = pre._around(((10, 20), (30, 34)), (100, 50), (400, 200))
    assert near == (slice(0, 120), slice(80, 176))
    margin = pre._blur_margin(pre.BLUR_SIGMA)
    assert pre._holds(near, ((0, 50), (margin, 96 - margin)), (400, 200))
    assert not pre._holds(near, ((0, 50), (margin - 1, 50)), (400, 200))
    assert not pre._holds(near, ((0, 50), (10, 96 - margin + 1)), (400, 200))
    assert not pre._holds((slice(5, 120), near[1]), ((0, 50), (10, 50)), (400, 200))


@pytest.mark.parametrize("near", [(slice(250, 400), slice(0, 600)),
                                  (slice(150, 350), slice(150, 310))])
def test_ink_beyond_the_region_is_read_from_the_whole_image(near) -> None:
    """A region that cuts the character, or leaves out a stroke too faint for the first pass
    (here a grey one, far off), is not trusted: the second pass reads the whole image."""
    drawn = canvas(size=(600, 600), box=(200, 200, 260, 300))
    ImageDraw.Draw(drawn).line([(500, 40), (560, 90)], fill=(150, 150, 150), width=3)
    photo = pre._grey(drawn)
    whole = pre._ink(photo)
    ink, clear = pre._finer_ink(photo, near)
    assert clear == pre._clear_ink(whole) and clear[1][1] > 550
    assert np.array_equal(ink[pre.EVERYWHERE], whole[pre.EVERYWHERE])


# --- the three stages on their own -----------------------------------------------------------


def test_ink_map_measures_ink_from_the_paper_towards_black() -> None:
    """Grey 50 on paper 200 is 150/200 of the way from the paper to black: 0.75."""
    ink = ink_map(canvas(paper=(200, 200, 200), ink=(50, 50, 50)))
    assert ink.dtype == np.float32
    assert ink.shape == (200, 240)
    assert ink.min() == 0.0 and ink.max() <= 1.0
    assert ink[100, 80] == pytest.approx(0.75, abs=0.01)  # on the stem
    assert ink[190, 230] == 0.0  # the paper


def test_load_image_returns_first_frame_upright() -> None:
    stored = canvas().transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6
    data = encode(stored, "PNG", exif=exif)
    image = load_image(open_image(data, max_pixels=MAX_PIXELS), data)
    assert image.size == (240, 200)


def test_normalize_character_refuses_an_empty_ink_map() -> None:
    with pytest.raises(BlankImage):
        normalize_character(np.zeros((50, 50), dtype=np.float32))


# --- bad uploads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        np.random.default_rng(1).bytes(5000),
        b"GIF89a but not really",
        encode(canvas(), "TIFF"),  # a real image, but not a format uploads may use
    ],
    ids=["empty", "random", "bad-header", "tiff"],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        preprocess(data, max_pixels=MAX_PIXELS, budget=budget())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(fmt: str) -> None:
    data = encode(canvas(), fmt)
    with pytest.raises(InvalidImage, match="truncated"):
        preprocess(data[: len(data) * 2 // 3], max_pixels=MAX_PIXELS, budget=budget())


def test_over_the_pixel_limit() -> None:
    with pytest.raises(ImageTooLarge):
        preprocess(encode(canvas()), max_pixels=240 * 200 - 1, budget=budget())
    assert preprocess(encode(canvas()), max_pixels=240 * 200,
                      budget=budget()).shape == (28, 28)


def test_pixel_limit_is_checked_before_decoding() -> None:
    """A tiny file claiming 30000x30000 pixels is refused by its size, not decoded (nor
    reported as corrupt)."""
    with pytest.raises(ImageTooLarge):
        open_image(png_claiming(30_000, 30_000), max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("side", [10_000, 30_000], ids=["bomb-warning", "bomb-error"])
def test_pillows_own_bomb_guard_is_image_too_large(side: int) -> None:
    """Past Pillow's limit (a warning, then an error at twice it) the answer is the same, even
    where our own limit is generous."""
    with pytest.raises(ImageTooLarge):
        open_image(png_claiming(side, side), max_pixels=10**10)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (200, 150), "white"),
        Image.new("L", (200, 150), 128),
        Image.new("RGBA", (200, 150), (0, 0, 0, 0)),
    ],
    ids=["white", "grey", "transparent"],
)
def test_blank_image(image: Image.Image) -> None:
    with pytest.raises(BlankImage):
        tile_of(image, "PNG")


def test_blank_photo_of_noisy_paper() -> None:
    paper = np.random.default_rng(2).normal(200, 4, (300, 400))
    image = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    with pytest.raises(BlankImage):
        tile_of(image, "JPEG", quality=85)
