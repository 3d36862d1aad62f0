"""The common PNGs (8-bit grey, RGB and RGBA: what canvases, phones and scanners send) decoded
by libspng (``pyspng``) instead of Pillow's decoder, their pixel data inflated by libdeflate
(``deflate``): the same pixels, in a third to a half of the time.

Where the time goes (``python -m bench.preprocess``, decode stage, this project's machine): a
450 px RGB drawing took 2.2 ms with Pillow and 1.15 ms with libspng, of which inflating its
2.5 KB of pixel data to 600 KB of scanlines was 1.1 ms. Both decoders inflate with zlib, which
copies a drawing's long runs of paper a few bytes at a time; libdeflate inflates the same data in
0.06 ms. libspng has no way to take another inflater, so it is handed the same PNG with its
scanlines already inflated, in deflate's stored (uncompressed) blocks, which it merely copies
before unfiltering them (``_with_stored_pixels``): about 0.5 ms for that drawing in all. An
RGBA image opaque everywhere comes out as RGBX, the same pixels with no alpha left to check.

Pillow stays the reference and the fallback: it has opened the file and checked its size and
decoding budget before this module sees it, and everything else (palettes, 16 bits, colour-key
transparency, animations, EXIF orientation, interlacing) and any file libspng refuses (corrupt
or truncated pixel data) is left to Pillow, so an upload gets Pillow's pixels and, almost
always, Pillow's errors. The exceptions are two damaged files whose pixels are whole, which
libspng decodes and Pillow refuses: a wrong checksum at the end of the compressed pixels, and
text over Pillow's limit after them (libspng never reads it). A file libdeflate refuses, or
whose pixel data is not the one stream of scanlines its header promises, goes to libspng as it
came, so the fast path changes no verdict. ``tests/unit/test_png_decoder.py`` holds the decoders
to the same pixels; the hostile-input suite has a row for each case, and holds the fast path to
libspng's own answers on randomly damaged files (``tests/hostile/test_png_mutations.py``).
"""

from __future__ import annotations

import struct

import deflate
import numpy as np
import pyspng
from PIL import Image

# The Pillow modes of the PNGs decoded here, each libspng's output format of the same name.
# Grey and RGBA are mapped without a copy (``Image.frombuffer``); packed RGB is copied into the
# four bytes a pixel Pillow keeps RGB in, which takes less than libspng's own padding to RGBA
# (a 450 px drawing: 0.21 against 0.26 ms, decoding included).
_MODES = ("L", "RGB", "RGBA")

# The signature and the IHDR chunk (length, type, 13 bytes, CRC), which must come first.
_HEADER = 8 + 4 + 4 + 13 + 4
_IHDR_START = struct.pack(">I", 13) + b"IHDR"  # the chunk's length and type, after the signature
_INTERLACE = _HEADER - 5  # IHDR's last byte: 0 none, 1 Adam7
_END = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", 0xAE426082)
# A zlib header (deflate, 32 KiB window, no dictionary, a multiple of 31) and the largest block
# deflate stores.
_ZLIB_HEADER = b"\x78\x01"
_STORED_BLOCK = 65535
# pyspng has libspng use every chunk whatever its CRC says (``SPNG_CRC_USE`` for critical and
# ancillary chunks, pyspng's main.cpp), which skips the zlib stream's Adler-32 too: so the file
# made here carries zeros for both, rather than checksums nobody reads (0.06 ms for 600 KB).
_UNCHECKED = bytes(4)
# Beyond these, libspng inflates the file itself: its scanlines would be held twice over
# (inflated, then in the new file) beside what it decodes, and a file of many small pixel chunks
# (each walked here in Python) is no drawing.
MAX_SCANLINE_BYTES = 16 * 2**20
MAX_PIXEL_CHUNKS = 1024


def decode_png(image: Image.Image, data: bytes) -> Image.Image | None:
    """``data`` decoded, if ``image`` (``data`` opened by Pillow, not yet loaded) is a PNG
    libspng decodes to the very pixels Pillow would; ``None`` leaves it to Pillow."""
    if image.format != "PNG" or image.mode not in _MODES or not _eight_bit(image):
        return None
    # A colour key (tRNS) is applied by Pillow alone, and so is the choice of an animation's
    # first frame; an eXIf chunk may rotate the image, and Pillow reads one placed after the
    # pixels only by decoding them (a false match in the compressed bytes merely sends the file
    # to Pillow).
    if "transparency" in image.info or getattr(image, "n_frames", 1) > 1 or b"eXIf" in data:
        return None
    mode = image.mode
    try:
        pixels = pyspng.load(_with_stored_pixels(image, data) or data, mode)
    except RuntimeError:  # refused by libspng (corrupt, truncated, over its chunk limits)
        return None
    if pixels.shape[:2] != (image.height, image.width):
        return None
    pixels = np.ascontiguousarray(pixels)
    if mode == "RGBA" and _opaque(pixels):
        # What a canvas's toBlob makes of an opaque canvas: the same pixels as RGBX, which spares
        # the caller a pass over the alpha band to learn that it is transparent nowhere (the
        # check takes 7 us here on the array, 70 us in Pillow for a 280 px image).
        mode = "RGBX"
    return Image.frombuffer(mode, image.size, pixels, "raw", mode, 0, 1)


def _opaque(rgba: np.ndarray) -> bool:
    """Whether every pixel of a contiguous RGBA array has alpha 255: read as little-endian
    32-bit words, alpha is the high byte."""
    return int(rgba.view("<u4").min()) >= 0xFF000000


def _eight_bit(image: Image.Image) -> bool:
    """Whether the PNG stores 8 bits a sample: Pillow opens 16-bit RGB as mode RGB too, and only
    its raw mode (``RGB;16B``) tells."""
    return len(image.tile) == 1 and image.tile[0].args == image.mode


def _with_stored_pixels(image: Image.Image, data: bytes) -> bytes | None:
    """A PNG of ``data``'s header and pixels alone, the pixels inflated by libdeflate and stored
    uncompressed; ``None`` where that does not apply (the caller decodes ``data`` itself).

    Only what libspng decodes of an 8-bit L/RGB/RGBA file without transparency is kept: the
    header and the pixels. The chunks' CRCs are not checked (neither pyspng nor Pillow checks
    a pixel chunk's); the zlib stream's Adler-32 over the scanlines is, by libdeflate.
    """
    size = image.height * (1 + image.width * len(image.mode))  # a filter byte a row
    if (size > MAX_SCANLINE_BYTES or data[8:16] != _IHDR_START
            or data[_INTERLACE : _INTERLACE + 1] != b"\0"):
        return None
    compressed = _pixel_data(data, image.tile[0].offset - 8)  # Pillow: where the first's data is
    if compressed is None:
        return None
    try:
        scanlines = deflate.zlib_decompress(compressed, size)  # never more than ``size``
    except deflate.DeflateError:
        return None
    if len(scanlines) != size:
        return None
    view = memoryview(scanlines)
    blocks = range(0, size, _STORED_BLOCK)
    stream = len(_ZLIB_HEADER) + 5 * len(blocks) + size + len(_UNCHECKED)
    parts = [data[:_HEADER], struct.pack(">I", stream), b"IDAT", _ZLIB_HEADER]
    for start in blocks:
        length = min(_STORED_BLOCK, size - start)
        parts += [struct.pack("<BHH", start + length == size, length, length ^ 0xFFFF),
                  view[start : start + length]]
    return b"".join([*parts, _UNCHECKED, _UNCHECKED, _END])  # Adler-32, then the chunk's CRC


def _pixel_data(data: bytes, start: int) -> bytes | None:
    """The joined contents of the run of IDAT chunks at ``start``; ``None`` if one is cut short
    or there are more than ``MAX_PIXEL_CHUNKS``."""
    view = memoryview(data)
    parts = []
    while data[start + 4 : start + 8] == b"IDAT":
        (length,) = struct.unpack_from(">I", data, start)
        end = start + 8 + length
        if end + 4 > len(data) or len(parts) == MAX_PIXEL_CHUNKS:
            return None
        parts.append(view[start + 8 : end])
        start = end + 4
    return b"".join(parts) if parts else None
