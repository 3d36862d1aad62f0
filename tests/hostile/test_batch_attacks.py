"""The batch side attacked: one row per hostile batch, each processed end to end by
``process_batch`` from a non-seekable stream of short reads (what a blob download is), with the
outcome it must have: refused whole with a code, or processed with the listed items failing
alone. After every row a good batch is still processed, so no attack leaves anything behind.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from shared.batch import SourceInfo, process_batch
from shared.config import Settings
from shared.errors import InvalidBatch
from shared.idx import uint8_header
from shared.local_files import LocalResultSink
from shared.model_loader import load_model
from shared.shards import ShardMessage, fail_shard, run_shard, submit_batch
from tests.payloads import (
    JPEG_L,
    PNG_7,
    WEBP_7,
    WEBP_DAMAGES,
    NonSeekable,
    animated,
    grey16_png,
    gzip_bomb,
    idx_bytes,
    ink,
    npy_bytes,
    npy_with_header,
    npz_bytes,
    png_claiming,
    png_damaged,
    tar_bytes,
    tar_of_special_members,
    thin_jpeg,
    webp_damaged,
    zip_bomb,
    zip_bytes,
    zip_corrupt_member,
    zip_declaring,
    zip_encrypted_member,
    zip_of_many_entries,
    zip_overlapping,
    zip_with_method,
)

MAX_ITEMS = 1000


@dataclass(frozen=True)
class Refused:
    """The whole batch fails with ``code`` in ``<batch>.error.json``."""

    code: str


@dataclass(frozen=True)
class Items:
    """The batch is processed: ``count`` rows, these row indices failing with these codes."""

    count: int
    errors: dict[int, str] = field(default_factory=dict)
    skipped: int = 0
    ids: list[str] | None = None


def _bytes_source(data: bytes, name: str = "attack"):
    return BytesSource(name, data)


class BytesSource:
    """A batch held in memory, served as a blob download is: once, front to back, in pieces."""

    def __init__(self, name: str, data: bytes) -> None:
        self._info = SourceInfo(name, f'"{hash(data):x}"', len(data))
        self._data = data

    def describe(self) -> SourceInfo:
        return self._info

    @contextmanager
    def open(self, info: SourceInfo) -> Iterator[io.RawIOBase]:
        yield NonSeekable(self._data, piece=4096)

    def read_range(self, info: SourceInfo, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


def _images_zip(compression: int) -> bytes:
    return zip_bytes({"a.png": PNG_7, "b.jpg": JPEG_L}, compression)


# (row id, the batch, what must happen)
ROWS: list[tuple[str, Callable[[], bytes], Refused | Items]] = [
    # zip: bombs, lies about the directory, every compression method corrupted, odd members
    ("zip-bomb-ratio", lambda: zip_bomb(16 * 1024 * 1024), Refused("batch_too_large")),
    ("zip-bomb-member-over-image-bytes", lambda: zip_bomb(64 * 1024 * 1024),
     Items(1, {0: "image_too_large"})),
    ("zip-too-many-entries", lambda: zip_of_many_entries(MAX_ITEMS + 50),
     Refused("batch_too_large")),
    ("zip-end-record-lies-low", lambda: zip_declaring(1, zip_of_many_entries(MAX_ITEMS + 50)),
     Refused("batch_too_large")),
    ("zip-overlapping-entries", lambda: zip_overlapping(200), Refused("batch_too_large")),
    *[(f"zip-corrupt-{name}", lambda m=method: zip_corrupt_member(m),
       Items(3, {1: "invalid_image"}))
      for name, method in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED),
                           ("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA))],
    *[(f"zip-good-{name}", lambda m=method: _images_zip(m), Items(2))
      for name, method in (("stored", zipfile.ZIP_STORED), ("bzip2", zipfile.ZIP_BZIP2),
                           ("lzma", zipfile.ZIP_LZMA))],
    ("zip-unknown-method", lambda: zip_with_method(99), Items(2, {1: "invalid_image"})),
    ("zip-encrypted-member", zip_encrypted_member, Items(2, {1: "invalid_image"})),
    ("zip-truncated", lambda: _images_zip(zipfile.ZIP_DEFLATED)[:-30],
     Refused("invalid_batch")),
    ("zip-only-local-headers", lambda: _images_zip(zipfile.ZIP_STORED)[:200],
     Refused("invalid_batch")),
    ("zip-empty", lambda: zip_bytes({}), Refused("invalid_batch")),
    ("zip-nested-archives", lambda: zip_bytes({"inner.zip": zip_bytes({"a.png": PNG_7}),
                                               "inner.tar.gz": tar_bytes({"a.png": PNG_7}, True),
                                               "a.png": PNG_7}), Items(1, skipped=2)),
    ("zip-csv-injection-names",
     lambda: zip_bytes({"=HYPERLINK(\"http://x\").png": PNG_7, "+1-1.png": PNG_7,
                        "@SUM(A1).png": PNG_7, "new\nline.png": PNG_7}),
     Items(4, ids=["'=HYPERLINK(\"http://x\").png", "'+1-1.png", "'@SUM(A1).png",
                   "new\ufffdline.png"])),
    ("zip-traversal-names", lambda: zip_bytes({"../../etc/passwd.png": PNG_7,
                                               "/abs/x.png": PNG_7, "C:\\win.png": PNG_7}),
     Items(3, ids=["../../etc/passwd.png", "/abs/x.png", "C:\\win.png"])),
    ("zip-member-bomb-image", lambda: zip_bytes({"a.png": PNG_7, "b.png": png_claiming(
        30_000, 30_000)}), Items(2, {1: "image_too_large"})),
    ("zip-member-costly-decode", lambda: zip_bytes({"a.png": grey16_png(6300), "b.png": PNG_7}),
     Items(2, {0: "image_too_large"})),
    ("zip-member-damaged-png", lambda: zip_bytes({
        "a.png": png_damaged(PNG_7, "zlib-stream"), "b.png": png_damaged(PNG_7, "no-end"),
        "c.png": png_damaged(PNG_7, "text-bomb-after-pixels"),
        "d.png": png_damaged(PNG_7, "rows-missing"), "e.png": png_damaged(PNG_7, "rows-then-bomb"),
        "f.png": png_damaged(PNG_7, "pixels-in-tiny-chunks")}),
     Items(6, {0: "invalid_image", 3: "invalid_image"})),
    ("zip-member-damaged-webp", lambda: zip_bytes({
        f"{damage}.webp": webp_damaged(WEBP_7, damage) for damage in WEBP_DAMAGES}),
     Items(len(WEBP_DAMAGES), {WEBP_DAMAGES.index(damage): "invalid_image"
                               for damage in ("frame-cut-short", "header-zeroed",
                                              "riff-size-lies")})),
    ("zip-member-thin-jpeg", lambda: zip_bytes({
        "a.jpg": thin_jpeg(640, 1), "b.png": PNG_7}),
     Items(2, {0: "blank_image"})),
    ("zip-member-not-an-image", lambda: zip_bytes({"a.png": b"text, not a PNG", "b.png": PNG_7}),
     Items(2, {0: "invalid_image"})),
    ("zip-animated-member", lambda: zip_bytes({"a.gif": animated("GIF")}), Items(1)),
    ("zip-single-item", lambda: zip_bytes({"a.png": PNG_7}), Items(1)),
    # tar and gzip
    ("tar-special-members", tar_of_special_members,
     Items(1, skipped=4, ids=["../../etc/cron.d/seven.png"])),
    ("tar-truncated", lambda: tar_bytes({"a.png": PNG_7, "b.png": PNG_7})[:1500],
     Refused("invalid_batch")),
    ("tar-empty", lambda: tar_bytes({}), Refused("invalid_batch")),
    ("tar-single-item", lambda: tar_bytes({"a.png": PNG_7}), Items(1)),
    ("tar-gz-single-item", lambda: tar_bytes({"a.png": PNG_7}, compress=True), Items(1)),
    ("tar-too-many-entries", lambda: tar_bytes({f"{i}.txt": b"" for i in range(MAX_ITEMS + 1)}),
     Refused("batch_too_large")),
    ("gzip-bomb", gzip_bomb, Refused("batch_too_large")),
    ("gzip-truncated", lambda: gzip.compress(npy_bytes(ink(20)))[:-200],
     Refused("invalid_batch")),
    ("gzip-of-garbage", lambda: gzip.compress(b"not a batch" * 100), Refused("invalid_batch")),
    ("gzip-not-really", lambda: b"\x1f\x8b" + b"\x00" * 600, Refused("invalid_batch")),
    ("gzip-of-gzip", lambda: gzip.compress(gzip.compress(npy_bytes(ink(2)))),
     Refused("invalid_batch")),
    # npy / npz
    ("npy-object-dtype", lambda: npy_with_header(
        "{'descr': '|O', 'fortran_order': False, 'shape': (2, 28, 28), }",
        b"cos\nsystem\n(S'echo pwned'\ntR."), Refused("invalid_batch")),
    ("npy-absurd-shape", lambda: npy_with_header(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (10**12, 28, 28), }"),
     Refused("invalid_batch")),
    ("npy-huge-count", lambda: npy_with_header(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999, 28, 28), }"),
     Refused("batch_too_large")),
    ("npy-header-garbage", lambda: npy_with_header("__import__('os').system('echo pwned')"),
     Refused("invalid_batch")),
    ("npy-fortran-order", lambda: npy_bytes(np.asfortranarray(ink(3).transpose(1, 2, 0))),
     Refused("invalid_batch")),
    ("npy-float-nan", lambda: npy_bytes(np.full((2, 28, 28), np.nan, np.float32)),
     Refused("invalid_batch")),
    ("npy-int64", lambda: npy_bytes(ink(2).astype(np.int64)), Refused("invalid_batch")),
    ("npy-truncated", lambda: npy_bytes(ink(5))[:-100], Refused("invalid_batch")),
    ("npy-trailing-data", lambda: npy_bytes(ink(5)) + b"extra", Refused("invalid_batch")),
    ("npy-empty", lambda: npy_bytes(np.zeros((0, 28, 28), np.uint8)), Refused("invalid_batch")),
    ("npy-single-item", lambda: npy_bytes(ink(1)), Items(1)),
    ("npy-blank-items-fail-alone", lambda: npy_bytes(np.concatenate(
        [ink(1), np.zeros((1, 28, 28), np.uint8)])), Items(2, {1: "blank_image"})),
    ("npz-two-arrays", lambda: npz_bytes(a=ink(1), b=ink(1)), Refused("invalid_batch")),
    ("npz-single-item", lambda: npz_bytes(images=ink(1)), Items(1)),
    ("npz-corrupt-member", lambda: _corrupt_npz(), Refused("invalid_batch")),
    # IDX
    ("idx-count-lies-high", lambda: idx_bytes(ink(4))[:-784], Refused("invalid_batch")),
    ("idx-count-lies-low", lambda: idx_bytes(ink(4)) + bytes(784), Refused("invalid_batch")),
    ("idx-wrong-dims", lambda: idx_bytes(np.zeros((3, 27, 29), np.uint8)),
     Refused("invalid_batch")),
    ("idx-huge-count", lambda: uint8_header((10**9, 28, 28)), Refused("batch_too_large")),
    ("idx-empty", lambda: idx_bytes(np.zeros((0, 28, 28), np.uint8)), Refused("invalid_batch")),
    ("idx-single-item", lambda: idx_bytes(ink(1)), Items(1)),
    ("idx-gz-single-item", lambda: gzip.compress(idx_bytes(ink(1))), Items(1)),
    # single images and the rest
    ("image-single-png-over-512-bytes", lambda: PNG_7, Items(1)),
    ("image-single-jpeg", lambda: JPEG_L, Items(1)),
    ("image-single-webp", lambda: WEBP_7, Items(1)),
    ("image-single-truncated", lambda: PNG_7[: len(PNG_7) // 2], Items(1, {0: "invalid_image"})),
    ("image-single-bomb", lambda: png_claiming(30_000, 30_000), Items(1, {0: "image_too_large"})),
    ("empty-batch", lambda: b"", Refused("invalid_batch")),
    ("zero-bytes", lambda: bytes(4096), Refused("invalid_batch")),
    ("unknown-content", lambda: b"#!/bin/sh\nrm -rf /\n" * 50, Refused("invalid_batch")),
]


def _corrupt_npz() -> bytes:
    data = bytearray(npz_bytes(images=ink(50)))
    for offset in range(100, 140):
        data[offset] ^= 0x5A
    return bytes(data)


@pytest.fixture(scope="module")
def model(tiny_model_files):
    return load_model(*tiny_model_files)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return dataclasses.replace(
        Settings.from_env(), batch_max_items=MAX_ITEMS, batch_max_bytes=32 * 1024 * 1024,
        batch_chunk_items=16, batch_progress_s=3600.0,
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize(("make", "expected"), [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_hostile_batch(make, expected, tmp_path, settings, model):
    name = "attack"
    outcome = process_batch(_bytes_source(make(), name), LocalResultSink(tmp_path), settings,
                            model)
    outputs = sorted(p.name for p in tmp_path.iterdir())
    if isinstance(expected, Refused):
        assert outcome.status == "failed", outcome.document
        assert outcome.document["code"] == expected.code, outcome.document["message"]
        assert outputs == [f"{name}.error.json"]  # nothing that looks like a result
    else:
        assert outcome.status == "processed", outcome.document
        assert outputs == [f"{name}.csv", f"{name}.summary.json"]
        rows = _rows(tmp_path / f"{name}.csv")
        assert len(rows) == expected.count == outcome.document["items"]
        assert outcome.document["skipped"] == expected.skipped
        failed = {i: row["error_code"] for i, row in enumerate(rows) if row["error_code"]}
        assert failed == expected.errors
        assert all(row["label"] for i, row in enumerate(rows) if i not in failed)
        if expected.ids is not None:
            assert [row["item"] for row in rows] == expected.ids

    # Nothing is left behind: a good batch right after is processed as ever.
    after = tmp_path / "after"
    after.mkdir()
    good = process_batch(_bytes_source(npy_bytes(ink(3)), "good.npy"), LocalResultSink(after),
                         settings, model)
    assert (good.status, good.document["items"]) == ("processed", 3)


@pytest.mark.parametrize(("make", "expected"), [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_hostile_batch_fanned_out(make, expected, tmp_path, settings, model):
    """Every row again with shards of one item: whatever the planner splits (a zip of two
    entries and more, an IDX or npy of two images and more) ends exactly as in place, and
    whatever it cannot split safely (a directory that lies, members out of order or sharing
    data, gzip, tar, npz) is processed in place."""
    data = make()
    in_place, fanned = tmp_path / "in-place", tmp_path / "fanned"
    in_place.mkdir()
    fanned.mkdir()
    expected_outcome = process_batch(_bytes_source(data), LocalResultSink(in_place), settings,
                                     model)
    sent: list[str] = []
    source, sink = _bytes_source(data), LocalResultSink(fanned)
    sharded = dataclasses.replace(settings, batch_shard_items=1)
    outcome = submit_batch(source, sink, SimpleNamespace(send=sent.extend), sharded, model)
    for text in sent:
        run_shard(ShardMessage.decode(text), source, sink, sharded, model, instance="i")
    assert sorted(p.name for p in fanned.iterdir() if not p.name.endswith(".plan.json")) == \
        sorted(p.name for p in in_place.iterdir())
    if isinstance(expected, Refused):
        error = json.loads((fanned / "attack.error.json").read_text())
        assert error["code"] == expected.code == expected_outcome.document["code"]
    else:
        assert (fanned / "attack.csv").read_bytes() == (in_place / "attack.csv").read_bytes()
    assert outcome.status in ("planned", expected_outcome.status)


@pytest.mark.parametrize("message", [
    "", "not json", "{}", "[]", "null", '"a string"', '{"batch": "attack", "etag": "x"}',
    '{"batch": "attack", "etag": "x", "shard": "1; DROP TABLE"}',
    '{"batch": "attack", "etag": "x", "shard": 1.5}',
    '{"batch": "attack", "etag": "x", "shard": true}',
    '{"batch": "attack", "etag": "x", "shard": -1}',
    '{"batch": "", "etag": "x", "shard": 0}',
    '{"batch": ["attack"], "etag": "x", "shard": 0}',
    '{"batch": "attack", "etag": null, "shard": 0}',
    '{"batch": "' + "a" * 1025 + '", "etag": "x", "shard": 0}',
    '{"batch": "attack", "etag": "' + "e" * 257 + '", "shard": 0}',
    "[" * 60_000 + "]" * 60_000,  # nested deeper than the parser recurses (64 KiB)
])
def test_messages_that_are_not_shard_messages_are_refused(message):
    """What a queue consumer drops at once instead of retrying (the trigger logs it)."""
    with pytest.raises(InvalidBatch):
        ShardMessage.decode(message)


@pytest.mark.parametrize("change", ["index -1", "index past the end", "index huge",
                                    "another version", "another batch"])
def test_shard_messages_that_name_no_current_shard_are_dropped(change, tmp_path, settings,
                                                                model):
    """A forged or stale message reads nothing and writes nothing: the batch it names is not
    touched, and the batch's real shards still finish it."""
    data = npy_bytes(ink(6))
    sent: list[str] = []
    source, sink = _bytes_source(data), LocalResultSink(tmp_path)
    sharded = dataclasses.replace(settings, batch_shard_items=2)
    submit_batch(source, sink, SimpleNamespace(send=sent.extend), sharded, model)
    real = ShardMessage.decode(sent[0])
    forged = {"index -1": dataclasses.replace(real, shard=-1),
              "index past the end": dataclasses.replace(real, shard=3),
              "index huge": dataclasses.replace(real, shard=10**12),
              "another version": dataclasses.replace(real, etag='"0xother"'),
              "another batch": dataclasses.replace(real, batch="elsewhere.npy")}[change]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_shard(forged, source, sink, sharded, model, instance="i") == "abandoned"
    assert fail_shard(forged, source, sink, model, instance="i") == "abandoned"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    for text in sent:
        run_shard(ShardMessage.decode(text), source, sink, sharded, model, instance="i")
    assert json.loads((tmp_path / "attack.summary.json").read_text())["items"] == 6
