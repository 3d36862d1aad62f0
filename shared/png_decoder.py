"""The common PNGs (8-bit grey, RGB and RGBA: what canvases, phones and scanners send) decoded
by libspng (``pyspng``) instead of Pillow's decoder: the same pixels, in about half the time.

Measured on this project's machine (``python -m bench.preprocess``, decode stage): a 450 px RGB
drawing 2.2 ms with Pillow against about 1.2 ms with libspng; decoding is most of what such an
upload costs. Pillow stays the reference and the fallback: it has opened the file and checked
its size and decoding budget before this module sees it, and everything else (palettes, 16 bits,
colour-key transparency, animations, EXIF orientation) and any file libspng refuses (corrupt
or truncated pixel data) is left to Pillow, so an upload gets Pillow's pixels and, almost
always, Pillow's errors. The exceptions are two damaged files whose pixels are whole, which
libspng decodes and Pillow refuses: a wrong checksum at the end of the compressed pixels, and
text over Pillow's limit after them (libspng never reads it). ``tests/unit/test_png_decoder.py``
holds the two decoders to the same pixels; the hostile-input suite has a row for each case.
"""

from __future__ import annotations

import numpy as np
import pyspng
from PIL import Image

# Pillow mode of the opened PNG -> libspng's output format, and the Pillow mode that maps it
# without a copy (``Image.frombuffer``). RGB comes out padded to four bytes a pixel, the layout
# Pillow keeps RGB in: mapping it is free, while Pillow would copy packed RGB into that layout.
_FORMATS = {"L": ("L", "L"), "RGB": ("RGBA", "RGBX"), "RGBA": ("RGBA", "RGBA")}


def decode_png(image: Image.Image, data: bytes) -> Image.Image | None:
    """``data`` decoded, if ``image`` (``data`` opened by Pillow, not yet loaded) is a PNG
    libspng decodes to the very pixels Pillow would; ``None`` leaves it to Pillow."""
    if image.format != "PNG" or image.mode not in _FORMATS or not _eight_bit(image):
        return None
    # A colour key (tRNS) is applied by Pillow alone, and so is the choice of an animation's
    # first frame; an eXIf chunk may rotate the image, and Pillow reads one placed after the
    # pixels only by decoding them (a false match in the compressed bytes merely sends the file
    # to Pillow).
    if "transparency" in image.info or getattr(image, "n_frames", 1) > 1 or b"eXIf" in data:
        return None
    spng_format, mode = _FORMATS[image.mode]
    try:
        pixels = pyspng.load(data, spng_format)
    except RuntimeError:  # refused by libspng (corrupt, truncated, over its chunk limits)
        return None
    if pixels.shape[:2] != (image.height, image.width):
        return None
    return Image.frombuffer(mode, image.size, np.ascontiguousarray(pixels), "raw", mode, 0, 1)


def _eight_bit(image: Image.Image) -> bool:
    """Whether the PNG stores 8 bits a sample: Pillow opens 16-bit RGB as mode RGB too, and only
    its raw mode (``RGB;16B``) tells."""
    return len(image.tile) == 1 and image.tile[0].args == image.mode
