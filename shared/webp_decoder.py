"""Simple lossy WebPs decoded by libwebp (the ``webp`` package) straight to their luma, instead
of Pillow's decoder and conversion to grey: the same grey levels (within one), in a fifth of the
time.

Where the time goes: a lossy WebP stores luma and chroma (YUV, BT.601 studio range). Pillow
decodes every WebP through libwebp's animation decoder into RGBA, then its conversion to grey
weighs the colours back into luma: 1.1-1.2 ms for a 300 px drawing, against 0.25 ms for libwebp
decoding the same file into its planes here. Preprocessing needs only the grey, so the luma
plane is stretched from studio range (16-235) to full range (a table of 256 levels): within one
level of Pillow's grey, except where a saturated colour came out of Pillow's conversion to RGB
clipped at 0 or 255 in a band (then the luma is the file's own; a drawing has no such pixel).

Only the simple format is taken: a ``VP8 `` (lossy) bitstream alone after the RIFF header. It
has no alpha, animation, EXIF orientation or colour profile (all need the extended format), so
its grey is all there is to it; every other WebP (lossless, extended) is left to Pillow. So is
a file libwebp refuses (corrupt, truncated) and one whose frame is not the size Pillow read
from its header: Pillow has opened the file and checked its size and decoding budget before
this module sees it, and libwebp decodes into buffers of that size (``is_external_memory``),
which it refuses to overrun. The package bundles libwebp 1.3.2 (Pillow's wheels: 1.6.0); the
lossy decoder is the only part of it an upload reaches. ``tests/unit/test_webp_decoder.py``
holds the two decoders to the same grey; the hostile-input suite has rows for damaged WebPs and
holds the fast path to Pillow's answers on randomly damaged files
(``tests/hostile/test_webp_mutations.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from webp import _webp

_SIMPLE_LOSSY = b"VP8 "  # the first chunk's type, right after ``RIFF<size>WEBP``
# Studio-range luma (black 16, white 235) -> full-range grey, as Pillow's conversion gives it:
# a table for Pillow's ``point``, which maps a 300 px image in a tenth of numpy's time.
_FULL_RANGE = [min(max(round((level - 16) * 255 / 219), 0), 255) for level in range(256)]


def decode_webp(image: Image.Image, data: bytes) -> Image.Image | None:
    """``data``'s grey (mode ``L``), if ``image`` (``data`` opened by Pillow, not yet loaded)
    is a simple lossy WebP that libwebp decodes; ``None`` leaves it to Pillow."""
    if image.format != "WEBP" or data[:4] != b"RIFF" or data[8:16] != b"WEBP" + _SIMPLE_LOSSY:
        return None
    width, height = image.size
    luma = np.empty((height, width), np.uint8)
    chroma = [np.empty(((height + 1) // 2, (width + 1) // 2), np.uint8) for _ in range(2)]
    ffi, lib = _webp.ffi, _webp.lib
    config = ffi.new("WebPDecoderConfig*")
    if not lib.WebPInitDecoderConfig(config):
        return None
    output = config.output
    output.colorspace = lib.MODE_YUV
    output.is_external_memory = 1
    planes = output.u.YUVA
    planes.y, planes.y_stride, planes.y_size = ffi.from_buffer(luma), width, luma.nbytes
    planes.u, planes.u_stride, planes.u_size = (ffi.from_buffer(chroma[0]), chroma[0].shape[1],
                                                chroma[0].nbytes)
    planes.v, planes.v_stride, planes.v_size = (ffi.from_buffer(chroma[1]), chroma[1].shape[1],
                                                chroma[1].nbytes)
    status = lib.WebPDecode(ffi.from_buffer(data), len(data), config)
    if status != lib.VP8_STATUS_OK or (output.width, output.height) != (width, height):
        return None
    return Image.fromarray(luma).point(_FULL_RANGE)
