"""Inputs built in memory for the tests: archives, arrays, IDX files, images of every mode, and
the hostile variants of each (bombs, lies, corruption). Nothing is read from disk.

The builders that ``python -m bench.hostile`` also measures live in ``bench.payloads`` and are
re-exported here, so that the tests take every input from this module.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

import numpy as np
from PIL import Image

from bench.payloads import PNG_7 as PNG_7
from bench.payloads import PNG_DAMAGES as PNG_DAMAGES
from bench.payloads import WEBP_7 as WEBP_7
from bench.payloads import WEBP_DAMAGES as WEBP_DAMAGES
from bench.payloads import encode as encode
from bench.payloads import flat_png as flat_png
from bench.payloads import grey16_png as grey16_png
from bench.payloads import gzip_bomb as gzip_bomb
from bench.payloads import npy_with_header as npy_with_header
from bench.payloads import png_chunk as png_chunk
from bench.payloads import png_claiming as png_claiming
from bench.payloads import png_damaged as png_damaged
from bench.payloads import png_split_pixels as png_split_pixels
from bench.payloads import seven as seven
from bench.payloads import tar_bytes as tar_bytes
from bench.payloads import thin_jpeg as thin_jpeg
from bench.payloads import webp_damaged as webp_damaged
from bench.payloads import zip_bomb as zip_bomb
from bench.payloads import zip_bytes as zip_bytes
from bench.payloads import zip_of_many_entries as zip_of_many_entries
from bench.payloads import zip_overlapping as zip_overlapping
from loadtests.corpus import STROKES, draw_character
from shared.idx import uint8_header

JPEG_L = draw_character(STROKES["L"], fmt="JPEG")


class NonSeekable(io.RawIOBase):
    """A stream like a blob download: readable once, front to back, and in short reads (at most
    ``piece`` bytes a call, as a network stream returns what has arrived)."""

    def __init__(self, data: bytes, piece: int = 1 << 16) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self._piece]
        return self._data.readinto(view)


# --- archives and arrays ---------------------------------------------------------------------


def tar_of_special_members() -> bytes:
    """A tar with a symlink, a hard link, a device, a FIFO and a traversal name beside one image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        image = tarfile.TarInfo("../../etc/cron.d/seven.png")
        image.size = len(PNG_7)
        archive.addfile(image, io.BytesIO(PNG_7))
        for name, kind in (("link.png", tarfile.SYMTYPE), ("hard.png", tarfile.LNKTYPE),
                           ("dev.png", tarfile.CHRTYPE), ("fifo.png", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def idx_bytes(array: np.ndarray) -> bytes:
    return uint8_header(array.shape) + array.astype(np.uint8).tobytes()


def ink(count: int, seed: int = 0) -> np.ndarray:
    """uint8 tiles, none blank."""
    tiles = np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    tiles[:, 14, 14] = 255
    return tiles


def zip_corrupt_member(compression: int) -> bytes:
    """A zip of two good images and, between them, one whose compressed data is flipped."""
    data = bytearray(zip_bytes({"a.png": PNG_7, "bad.png": PNG_7, "c.png": PNG_7}, compression))
    bad = data.index(b"bad.png") + len(b"bad.png")  # the local header's name, then its data
    for offset in range(bad + 20, bad + 60):
        data[offset] ^= 0x5A
    return bytes(data)


def zip_with_method(method: int) -> bytes:
    """A zip whose second member claims compression ``method`` (one zipfile does not know)."""
    data = bytearray(zip_bytes({"a.png": PNG_7, "b.png": PNG_7}, zipfile.ZIP_STORED))
    struct.pack_into("<H", data, data.index(b"PK\x03\x04", 4) + 8, method)  # local header
    struct.pack_into("<H", data, data.rindex(b"PK\x01\x02") + 10, method)  # directory entry
    return bytes(data)


def zip_encrypted_member() -> bytes:
    """A zip whose second member has the encryption flag set (zipfile then wants a password)."""
    data = bytearray(zip_bytes({"a.png": PNG_7, "b.png": PNG_7}, zipfile.ZIP_STORED))
    local = data.index(b"PK\x03\x04", 4)
    central = data.rindex(b"PK\x01\x02")
    for flags in (local + 6, central + 8):
        data[flags] |= 0x01
    return bytes(data)


def zip_declaring(count: int, data: bytes) -> bytes:
    """``data`` (a zip) with its end record's entry counts replaced by ``count``: a lie."""
    patched = bytearray(data)
    end = patched.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", patched, end + 8, count, count)
    return bytes(patched)


# --- images ----------------------------------------------------------------------------------


def animated(fmt: str, frames: int = 3) -> bytes:
    """An animation whose first frame is the '7' and the others blank."""
    first = seven("P" if fmt == "GIF" else "RGB")
    rest = [Image.new(first.mode, first.size, "white") for _ in range(frames - 1)]
    return encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """The '7' stored rotated by 90 degrees, with EXIF orientation 6 that turns it back."""
    image = seven().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif)


def gif_claiming(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen claims ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)
