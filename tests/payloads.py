"""Inputs built in memory for the tests: archives, arrays, IDX files, images of every mode, and
the hostile variants of each (bombs, lies, corruption). Nothing is read from disk.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageDraw

from loadtests.corpus import STROKES, draw_character
from shared.idx import uint8_header

PNG_7 = draw_character(STROKES["7"])
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


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            if name.endswith("/"):
                archive.mkdir(name.rstrip("/"))
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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


def npy_with_header(header: str, payload: bytes = b"") -> bytes:
    """An .npy of version 1.0 whose header dictionary is ``header``, verbatim."""
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


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


def zip_of_many_entries(count: int) -> bytes:
    """A zip of ``count`` empty stored entries (small file, a large directory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"{i}", b"")
    return buffer.getvalue()


def zip_declaring(count: int, data: bytes) -> bytes:
    """``data`` (a zip) with its end record's entry counts replaced by ``count``: a lie."""
    patched = bytearray(data)
    end = patched.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", patched, end + 8, count, count)
    return bytes(patched)


def zip_overlapping(copies: int) -> bytes:
    """One member's data under ``copies`` directory entries (the overlapping zip bomb)."""
    data = bytearray(zip_bytes({"a.png": PNG_7}))
    central = data.rindex(b"PK\x01\x02")
    end = data.rindex(b"PK\x05\x06")
    entry = bytes(data[central:end])
    directory = b"".join(entry.replace(b"a.png", f"{i:05d}".encode()[:5]) for i in range(copies))
    record = bytearray(data[end:])
    struct.pack_into("<HHLL", record, 8, copies, copies, len(directory), central)
    return bytes(data[:central]) + directory + bytes(record)


def zip_bomb(size: int) -> bytes:
    """A member of ``size`` zero bytes named like an image: about 1000:1."""
    return zip_bytes({"bomb.png": bytes(size)})


def gzip_bomb(size: int = 32 * 1024 * 1024) -> bytes:
    """A tar.gz whose one member is ``size`` zero bytes: read through (it is skipped as no
    image), the stream inflates about 1000:1."""
    return tar_bytes({"big.bin": bytes(size)}, compress=True)


# --- images ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def seven(mode: str = "RGB", size: int = 280) -> Image.Image:
    """The test's '7', drawn in ``mode`` (dark ink on light paper; 16-bit grey spans 0-65535)."""
    image = Image.open(io.BytesIO(draw_character(STROKES["7"], size=size)))
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    return image.convert(mode)


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims another size (CRC fixed up): what a decompression bomb
    looks like to a size check."""
    data = bytearray(encode(Image.new("L", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def grey16_png(side: int) -> bytes:
    """A 16-bit grey PNG of ``side`` x ``side`` with a bar: tiny on the wire, costly to decode."""
    levels = np.full((side, side), 60000, np.uint16)
    levels[side // 3 : 2 * side // 3, side // 2 - side // 20 : side // 2 + side // 20] = 1000
    return encode(Image.fromarray(levels))


def flat_png(mode: str, side: int) -> bytes:
    """A large, almost flat image of ``mode`` with a bar: compresses to almost nothing."""
    image = Image.new(mode, (side, side), "white")
    ImageDraw.Draw(image).rectangle(
        [side // 2 - side // 20, side // 3, side // 2 + side // 20, 2 * side // 3], fill="black")
    return encode(image)


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
