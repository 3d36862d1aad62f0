"""Hostile inputs built in memory: bombs, lies and images at the decoding limits.

What the hostile-input tests (``tests/hostile``, ``tests/unit``) attack the service with and
what ``python -m bench.hostile`` measures the cost of, built in one place so that the benchmark
measures exactly the inputs the tests refuse or bound. The characters come from the load test's
corpus (``loadtests.corpus``). Nothing is read from disk.
"""

from __future__ import annotations

import io
import itertools
import struct
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageDraw

from loadtests.corpus import STROKES, draw_character

PNG_7 = draw_character(STROKES["7"])


# --- archives --------------------------------------------------------------------------------


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


def zip_of_many_entries(count: int) -> bytes:
    """A zip of ``count`` empty stored entries (small file, a large directory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"{i}", b"")
    return buffer.getvalue()


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



# --- arrays ----------------------------------------------------------------------------------


def npy_with_header(header: str, payload: bytes = b"") -> bytes:
    """An .npy of version 1.0 whose header dictionary is ``header``, verbatim."""
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload



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
    data = encode(Image.new("L", (1, 1)))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", ihdr) + data[33:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# How each damaged PNG is made from a whole one holding a single IDAT chunk (``png_damaged``).
PNG_DAMAGES = ("pixels-crc", "zlib-checksum", "zlib-stream", "text-bomb-after-pixels", "no-end",
               "rows-missing", "rows-then-bomb", "pixels-in-tiny-chunks")


def _pixel_chunk(png: bytes) -> tuple[int, int]:
    """Where the (first) IDAT chunk of ``png`` starts and ends, its length and CRC included."""
    start = png.index(b"IDAT") - 4
    return start, start + 12 + struct.unpack_from(">I", png, start)[0]


def png_split_pixels(png: bytes, parts: int) -> bytes:
    """``png`` (one IDAT chunk) with its pixel data split into ``parts`` chunks, as even as they
    come (empty ones where there are fewer bytes than parts: the format allows them)."""
    start, end = _pixel_chunk(png)
    data = png[start + 8 : end - 4]
    bounds = [len(data) * part // parts for part in range(parts + 1)]
    return png[:start] + b"".join(png_chunk(b"IDAT", data[a:b])
                                  for a, b in itertools.pairwise(bounds)) + png[end:]


def png_damaged(png: bytes, damage: str) -> bytes:
    """``png`` damaged one way (``PNG_DAMAGES``): the pixel chunk's CRC zeroed; the Adler-32
    checksum that ends its zlib stream zeroed; ten bytes of that stream zeroed; a zTXt chunk
    inflating to 64 MiB placed after the pixels; the file cut just before its end chunk; the
    pixel data without its last row, or with 64 MiB of zeros after its rows (a bomb in the pixel
    stream itself); or the pixel data split into 2,000 chunks (a byte or none each)."""
    start, end = _pixel_chunk(png)
    closing = png.rindex(b"IEND") - 4
    if damage == "rows-missing" or damage == "rows-then-bomb":
        scanlines = zlib.decompress(png[start + 8 : end - 4])
        compressed = (zlib.compress(scanlines[: len(scanlines) * 99 // 100])
                      if damage == "rows-missing" else
                      zlib.compress(scanlines + bytes(64 * 2**20), 9))
        return png[:start] + png_chunk(b"IDAT", compressed) + png[end:]
    if damage == "pixels-in-tiny-chunks":
        return png_split_pixels(png, 2000)
    if damage == "pixels-crc":
        return png[: end - 4] + bytes(4) + png[end:]
    if damage == "zlib-checksum":
        return png[: end - 8] + bytes(4) + png[end - 4 :]
    if damage == "zlib-stream":
        return png[: start + 28] + bytes(10) + png[start + 38 :]
    if damage == "text-bomb-after-pixels":
        text = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(64 * 2**20), 9))
        return png[:closing] + text + png[closing:]
    if damage == "no-end":
        return png[:closing]
    raise ValueError(f"unknown damage {damage!r}: one of {', '.join(PNG_DAMAGES)}")


WEBP_7 = encode(seven(), "WEBP")  # lossy, simple format: libwebp's fast path
WEBP_DAMAGES = ("frame-cut-short", "frame-zeroed", "header-zeroed", "riff-size-lies",
                "junk-after")


def webp_damaged(webp: bytes, damage: str) -> bytes:
    """A simple lossy ``webp`` damaged one way (``WEBP_DAMAGES``): the last tenth of its frame
    cut off, its RIFF and chunk sizes made to match (so it opens); 16 bytes in the middle of its
    frame zeroed; 8 bytes of the frame's header zeroed (the first partition's start); its RIFF
    size claiming 64 MiB; or 64 KiB of random bytes after it."""
    if damage == "frame-cut-short":
        body = webp[: len(webp) - (len(webp) - 20) // 10]
        return (body[:4] + struct.pack("<I", len(body) - 8) + body[8:16]
                + struct.pack("<I", len(body) - 20) + body[20:])
    if damage == "frame-zeroed":
        middle = len(webp) // 2
        return webp[:middle] + bytes(16) + webp[middle + 16 :]
    if damage == "header-zeroed":
        return webp[:30] + bytes(8) + webp[38:]
    if damage == "riff-size-lies":
        return webp[:4] + struct.pack("<I", 64 * 2**20) + webp[8:]
    if damage == "junk-after":
        return webp + np.random.default_rng(0).bytes(2**16)
    raise ValueError(f"unknown damage {damage!r}: one of {', '.join(WEBP_DAMAGES)}")


def grey16_png(side: int) -> bytes:
    """A 16-bit grey PNG of ``side`` x ``side`` with a bar: tiny on the wire, costly to decode."""
    levels = np.full((side, side), 60000, np.uint16)
    levels[side // 3 : 2 * side // 3, side // 2 - side // 20 : side // 2 + side // 20] = 1000
    return encode(Image.fromarray(levels))


def thin_jpeg(width: int, height: int) -> bytes:
    """A blank JPEG a pixel or so thin one way and long enough the other to be decoded at a
    fraction of its size."""
    return encode(Image.new("L", (width, height), 255), "JPEG")


def flat_png(mode: str, side: int) -> bytes:
    """A large, almost flat image of ``mode`` with a bar: compresses to almost nothing."""
    image = Image.new(mode, (side, side), "white")
    ImageDraw.Draw(image).rectangle(
        [side // 2 - side // 20, side // 3, side // 2 + side // 20, 2 * side // 3], fill="black")
    return encode(image)

