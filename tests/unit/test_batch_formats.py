"""Batch formats: each input recognised by content and read in chunks, and each bad input
refused whole or failing alone. All inputs are built here, in memory."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest

from shared.batch_formats import BatchReader, Limits, safe_text
from shared.errors import BatchTooLarge, InvalidBatch
from shared.idx import uint8_header
from tests.conftest import STROKES, draw_character
from tests.payloads import (
    JPEG_L,
    PNG_7,
    NonSeekable,
    idx_bytes,
    ink,
    npy_bytes,
    npz_bytes,
    tar_bytes,
    zip_bytes,
)

LIMITS = Limits(max_items=1000, max_bytes=64 * 1024 * 1024, max_ratio=100,
                max_image_pixels=4_000_000, max_image_bytes=1024 * 1024,
                max_decoded_bytes=16 * 1024 * 1024, max_item_decoded_bytes=32 * 1024 * 1024)


def read(data: bytes, *, limits: Limits = LIMITS, seekable: bool = True, chunk_items: int = 64,
         name: str = "batch"):
    """(reader, ids, tiles, {index: error code}) after reading the whole batch."""
    stream = io.BytesIO(data) if seekable else NonSeekable(data)
    reader = BatchReader(stream, name=name, size=len(data), limits=limits,
                         chunk_items=chunk_items)
    ids, tiles, errors = [], [], {}
    for chunk in reader.chunks():
        for position, error in chunk.errors.items():
            errors[len(ids) + position] = error.code
        ids += list(chunk.ids)
        tiles.append(chunk.tiles.copy())
    stacked = np.concatenate(tiles) if tiles else np.zeros((0, 28, 28), np.uint8)
    return reader, ids, stacked, errors


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seekable", [True, False])
def test_zip_in_any_folder_layout_keeps_archive_order(seekable):
    data = zip_bytes({
        "forms/": b"",
        "forms/a/seven.png": PNG_7,
        "forms/b/deeper/ell.JPG": JPEG_L,
        "forms/readme.txt": b"not an image",
        "__MACOSX/forms/._seven.png": b"\x00\x05\x16\x07 AppleDouble",
        "no-extension": PNG_7,  # an image by content
        "top.png": PNG_7,
    })
    reader, ids, tiles, errors = read(data, seekable=seekable)
    assert reader.format == "zip"
    assert ids == ["forms/a/seven.png", "forms/b/deeper/ell.JPG", "no-extension", "top.png"]
    assert errors == {}
    assert reader.skipped == 2  # the text file and the macOS metadata twin; folders don't count
    assert tiles.shape == (4, 28, 28) and tiles.dtype == np.uint8
    assert (tiles.reshape(4, -1).max(axis=1) == 255).all()  # white ink on black


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("seekable", [True, False])
def test_tar_plain_and_gzip(compress, seekable):
    data = tar_bytes({"x/seven.png": PNG_7, "notes.md": b"# hi", "y/ell.jpeg": JPEG_L}, compress)
    reader, ids, _, errors = read(data, seekable=seekable)
    assert reader.format == ("tar.gz" if compress else "tar")
    assert ids == ["x/seven.png", "y/ell.jpeg"]
    assert (reader.skipped, errors) == (1, {})


def test_zip_and_tar_give_the_same_tiles():
    members = {"a.png": PNG_7, "b.jpg": JPEG_L}
    _, _, from_zip, _ = read(zip_bytes(members))
    _, _, from_tar, _ = read(tar_bytes(members))
    np.testing.assert_array_equal(from_zip, from_tar)


def test_npy_uint8_is_taken_as_upright_tiles():
    array = ink(5)
    reader, ids, tiles, errors = read(npy_bytes(array))
    assert (reader.format, ids, errors) == ("npy", [0, 1, 2, 3, 4], {})
    np.testing.assert_array_equal(tiles, array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_npy_float_0_to_1_is_scaled_to_0_255(dtype):
    array = ink(3)
    _, _, tiles, _ = read(npy_bytes((array / 255.0).astype(dtype)))
    assert np.abs(tiles.astype(int) - array).max() <= (1 if dtype == np.float16 else 0)


def test_npy_with_a_channel_axis_is_squeezed():
    array = ink(4)
    _, ids, tiles, _ = read(npy_bytes(array[:, None]))
    assert ids == [0, 1, 2, 3]
    np.testing.assert_array_equal(tiles, array)


def test_npz_of_one_array_or_an_images_array():
    array = ink(3)
    reader, ids, tiles, _ = read(npz_bytes(x=array))
    assert (reader.format, ids) == ("npz", [0, 1, 2])
    np.testing.assert_array_equal(tiles, array)
    _, _, tiles, _ = read(npz_bytes(images=array, labels=np.arange(3)))
    np.testing.assert_array_equal(tiles, array)
    with pytest.raises(InvalidBatch, match="name the images array 'images'"):
        read(npz_bytes(x_train=array, y_train=np.arange(3)))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_is_turned_upright(compress):
    raw = ink(6)
    data = idx_bytes(raw)
    reader, ids, tiles, _ = read(gzip.compress(data) if compress else data, seekable=not compress)
    assert reader.format == ("idx.gz" if compress else "idx")
    assert ids == list(range(6))
    np.testing.assert_array_equal(tiles, raw.transpose(0, 2, 1))


def test_a_single_image_is_one_item_named_after_the_batch():
    reader, ids, tiles, errors = read(PNG_7, name="scan.png")
    assert (reader.format, ids, errors) == ("image", ["scan.png"], {})
    assert tiles.shape == (1, 28, 28)


def test_chunks_are_bounded_and_ids_continue():
    stream = io.BytesIO(npy_bytes(ink(7)))
    reader = BatchReader(stream, name="a", size=len(stream.getvalue()), limits=LIMITS,
                         chunk_items=3)
    chunks = list(reader.chunks())
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [list(c.ids) for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]


def test_blank_array_items_fail_alone():
    array = ink(3)
    array[1] = 0
    _, _, _, errors = read(npy_bytes(array))
    assert errors == {1: "blank_image"}


# --- bad items: they fail alone --------------------------------------------------------------


def test_corrupt_members_fail_alone():
    data = bytearray(zip_bytes({"good.png": PNG_7, "crc.png": PNG_7, "text.png": b"hello",
                                "cut.png": PNG_7[:60], "last.png": PNG_7},
                               compression=zipfile.ZIP_STORED))
    # Damage the stored bytes of crc.png: the zip's CRC check catches it when it is read.
    second = data.find(PNG_7, data.find(PNG_7) + 1)
    data[second + 100] ^= 0xFF
    _, ids, _, errors = read(bytes(data))
    assert ids == ["good.png", "crc.png", "text.png", "cut.png", "last.png"]
    assert errors == {1: "invalid_image", 2: "invalid_image", 3: "invalid_image"}


def test_an_oversized_member_fails_alone():
    small = draw_character(STROKES["L"], size=28, width=3)
    limits = Limits(**{**LIMITS.__dict__, "max_image_bytes": len(small)})
    _, _, _, errors = read(zip_bytes({"big.png": PNG_7, "small.png": small}), limits=limits)
    assert errors == {0: "image_too_large"}


# --- bad batches: refused whole --------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: zip_bytes({"a.png": PNG_7, "b.png": PNG_7})[:-30], "zip archive is truncated"),
        (lambda: tar_bytes({"a.png": PNG_7, "b.png": PNG_7})[:1200], "tar archive is truncated"),
        (lambda: tar_bytes({"a.png": PNG_7}, compress=True)[:-40], "gzip stream is truncated"),
        (lambda: npy_bytes(ink(4))[:-100], "header lies"),
        (lambda: gzip.compress(npy_bytes(ink(4))[:-100]), "ends after 3 of the 4 images"),
    ],
    ids=["zip", "tar", "tar.gz", "npy", "npy.gz"],
)
def test_truncated_batches(make, message):
    with pytest.raises(InvalidBatch, match=message):
        read(make(), seekable=False)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 28, 28), np.int64), "element type int64"),
        (np.zeros((2, 28, 28), np.uint16), "element type uint16"),
        (np.zeros((2, 28, 28), bool), "element type bool"),
        (np.zeros((2, 32, 32), np.uint8), r"shape \[2, 32, 32\]"),
        (np.zeros((2, 28, 28, 3), np.uint8), r"shape \[2, 28, 28, 3\]"),
        (np.zeros((28, 28), np.uint8), r"shape \[28, 28\]"),
        (np.full((2, 28, 28), 255.0, np.float32), "within 0..1"),
        (np.full((2, 28, 28), np.nan, np.float32), "within 0..1"),
        (np.asfortranarray(np.ones((2, 28, 28), np.uint8)), "Fortran order"),
    ],
)
def test_arrays_of_the_wrong_dtype_or_shape(array, message):
    with pytest.raises(InvalidBatch, match=message):
        read(npy_bytes(array))


def test_object_arrays_are_refused_without_unpickling():
    data = npy_bytes(np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(InvalidBatch):
        read(data)


@pytest.mark.parametrize("delta", [-784, -1, 5])
def test_idx_header_that_lies_about_its_size(delta):
    data = idx_bytes(ink(3))
    data = data[:delta] if delta < 0 else data + b"\x00" * delta
    with pytest.raises(InvalidBatch, match="header lies about its size"):
        read(data)


@pytest.mark.parametrize(("delta", "message"), [(-784, "truncated"), (5, "more data")])
def test_gzip_idx_that_lies_about_its_size(delta, message):
    data = idx_bytes(ink(3))
    data = data[:delta] if delta < 0 else data + b"\x01" * delta
    with pytest.raises(InvalidBatch, match=message):
        read(gzip.compress(data), seekable=False)


def test_an_idx_labels_file_is_no_image_batch():
    with pytest.raises(InvalidBatch, match=r"shape \[5\]"):
        read(idx_bytes(np.arange(5, dtype=np.uint8)))


BOMB_LIMITS = Limits(**{**LIMITS.__dict__, "max_items": 10**6, "max_image_bytes": 64 << 20})


def test_zip_bomb_is_refused_while_decompressing():
    bomb = zip_bytes({"fine.png": PNG_7, "bomb.png": b"\x00" * (16 << 20)})
    assert len(bomb) < 64 * 1024
    with pytest.raises(BatchTooLarge, match="100:1"):
        read(bomb, limits=BOMB_LIMITS)


def test_npz_bomb_is_refused_while_decompressing():
    bomb = npz_bytes(images=np.zeros((30_000, 28, 28), np.uint8))
    with pytest.raises(BatchTooLarge, match="compression bomb"):
        read(bomb, limits=BOMB_LIMITS, seekable=False)


def test_gzip_bomb_is_refused_while_decompressing():
    header = uint8_header((30_000, 28, 28))
    bomb = gzip.compress(header + b"\x00" * (30_000 * 784))
    with pytest.raises(BatchTooLarge, match="compression bomb"):
        read(bomb, limits=BOMB_LIMITS, seekable=False)


def test_uncompressed_bytes_are_bounded():
    sparse = np.zeros((200, 28, 28), np.uint8)
    sparse[:, 14, 14] = 255
    limits = Limits(**{**LIMITS.__dict__, "max_bytes": 100_000, "max_ratio": 10**6})
    with pytest.raises(BatchTooLarge, match="decompresses to more than"):
        read(gzip.compress(idx_bytes(sparse)), limits=limits, seekable=False)
    with pytest.raises(BatchTooLarge, match="more than the 100000 allowed"):
        read(idx_bytes(sparse), limits=limits)


@pytest.mark.parametrize(
    "data",
    [zip_bytes({}), tar_bytes({})],
    ids=["zip", "tar"],
)
def test_empty_archives_hold_no_items(data):
    try:
        reader, ids, _, _ = read(data)
    except InvalidBatch as error:  # an empty tar is only zero bytes: no format to recognise
        assert "empty tar" in error.message
    else:
        assert (ids, reader.skipped) == ([], 0)


def test_archive_of_only_non_images():
    reader, ids, _, _ = read(zip_bytes({"a.txt": b"x", "b/c.csv": b"1,2", "d.json": b"{}"}))
    assert (ids, reader.skipped) == ([], 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: zip_bytes({f"{i}.png": PNG_7 for i in range(4)}),
        lambda: tar_bytes({f"{i}.txt": b"x" for i in range(4)}),
        lambda: npy_bytes(ink(4)),
        lambda: idx_bytes(ink(4)),
    ],
    ids=["zip", "tar", "npy", "idx"],
)
def test_too_many_items(make):
    limits = Limits(**{**LIMITS.__dict__, "max_items": 3})
    with pytest.raises(BatchTooLarge, match="3"):
        read(make(), limits=limits)


@pytest.mark.parametrize("data", [b"", b"plain text, not a batch", b"PK\x01\x02"])
def test_unknown_or_empty_content(data):
    with pytest.raises(InvalidBatch):
        read(data)


def test_names_are_untrusted_text():
    assert safe_text("a\nb\x00c\x1b[31m.png") == "a\ufffdb\ufffdc\ufffd[31m.png"
    assert safe_text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert safe_text("bad\udcffbyte.png") == "bad\ufffdbyte.png"
    assert len(safe_text("x" * 5000)) == 512
    _, ids, _, _ = read(zip_bytes({"../../etc/\tpasswd.png": PNG_7}))
    assert ids == ["../../etc/\ufffdpasswd.png"]  # a name, never a path on disk


@pytest.mark.parametrize("lie", [False, True])
def test_too_many_zip_entries_are_refused_before_zipfile_parses_the_directory(monkeypatch, lie):
    from tests.payloads import zip_declaring, zip_of_many_entries

    data = zip_of_many_entries(LIMITS.max_items + 1)
    if lie:  # the end record says 1: the directory is walked and counted instead
        data = zip_declaring(1, data)

    def parse(*_args, **_kwargs):
        raise AssertionError("zipfile parsed a directory that is over the limit")

    monkeypatch.setattr(zipfile, "ZipFile", parse)
    with pytest.raises(BatchTooLarge, match="entries"):
        read(data)
