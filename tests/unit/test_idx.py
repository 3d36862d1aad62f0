import gzip
import struct

import numpy as np
import pytest

from shared.errors import InvalidBatch
from shared.idx import read_idx


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + (
        array.astype(array.dtype.newbyteorder(">")).tobytes()
    )


@pytest.mark.parametrize("compress", [False, True])
def test_reads_plain_and_gzip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    np.testing.assert_array_equal(read_idx(path), array)


def test_reads_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70000], dtype=np.int32)
    path = tmp_path / "b.idx"
    path.write_bytes(idx_bytes(array, code=0x0C))
    result = read_idx(path)
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01", "unknown element type"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"", "not an IDX file"),
    ],
)
def test_bad_headers_raise_typed_errors(tmp_path, payload, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(InvalidBatch, match=message):
        read_idx(path)


@pytest.mark.parametrize("delta", [-5, 3])
def test_header_that_lies_about_size(tmp_path, delta):
    array = np.zeros((4, 28, 28), dtype=np.uint8)
    data = idx_bytes(array)
    path = tmp_path / "liar.idx"
    path.write_bytes(data[:delta] if delta < 0 else data + b"\x00" * delta)
    with pytest.raises(InvalidBatch, match="declares shape"):
        read_idx(path)
