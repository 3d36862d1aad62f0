"""IDX files (the MNIST/EMNIST container format), plain or gzip-compressed: reader, and the
header writer that tests and benchmarks build their files with.

The header is validated against the payload so that a file that lies about its size fails
with a clear error instead of a short or garbled array.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from shared.errors import InvalidBatch

GZIP_MAGIC = b"\x1f\x8b"
# IDX type codes (third header byte) -> numpy big-endian dtype.
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def open_maybe_gzip(path: str | Path) -> BinaryIO:
    """Open a file for binary reading, transparently decompressing gzip by its magic bytes."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def read_header(stream: BinaryIO) -> tuple[np.dtype, tuple[int, ...]]:
    """Read and check an IDX header; return the element dtype and the array shape."""
    head = stream.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise InvalidBatch("not an IDX file: the header does not start with two zero bytes")
    dtype = _DTYPES.get(head[2])
    if dtype is None:
        raise InvalidBatch(f"IDX file has unknown element type 0x{head[2]:02x}")
    ndim = head[3]
    if ndim == 0:
        raise InvalidBatch("IDX file declares zero dimensions")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise InvalidBatch("IDX header is truncated")
    return dtype, struct.unpack(f">{ndim}I", dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a whole IDX file into memory as a native-endian array."""
    with open_maybe_gzip(path) as stream:
        dtype, shape = read_header(stream)
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        payload = stream.read(expected + 1)
    if len(payload) != expected:
        raise InvalidBatch(
            f"IDX header of {path} declares shape {shape} ({expected} bytes) "
            f"but the file holds {'more' if len(payload) > expected else len(payload)} bytes"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def uint8_header(shape: tuple[int, ...]) -> bytes:
    """The header of an unsigned-byte IDX array of ``shape`` (what EMNIST's image files use)."""
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def header_size(shape: tuple[int, ...]) -> int:
    """Bytes of the header before the payload: magic (4) plus one big-endian uint32 per dim."""
    return 4 + 4 * len(shape)


def payload_size(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes of payload that a header with this dtype and shape promises."""
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def looks_like_idx(head: bytes) -> bool:
    """Whether the first bytes of a file are a complete, plausible IDX header.

    Two zero bytes alone are common in binary files, so a known element type, a non-zero
    dimension count and the whole header being present are all required before a caller treats
    the data as IDX (and then reports a size mismatch as a lying header, not an unknown format).
    """
    return (
        len(head) >= 4
        and head[0] == 0
        and head[1] == 0
        and head[2] in _DTYPES
        and 0 < head[3] <= 4
        and len(head) >= 4 + 4 * head[3]
    )
