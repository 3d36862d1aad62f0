"""Batch inputs, recognised by content and read as a stream of chunks of model-ready tiles.

A batch is whatever lands in the ``batches`` container: a zip or tar (plain or gzip) of images
in any folder layout, an ``.npy`` / ``.npz`` array, an EMNIST/MNIST IDX file (plain or gzip) or a
single image. Names lie (and Event Grid only hands over a name), so the format is decided by the
first bytes. Every path yields :class:`Chunk` s of at most ``chunk_items`` items, so memory is
bounded by the chunk, never by the batch:

- arrays (npy, npz, IDX) are read as a header plus fixed-size records, a chunk at a time
  straight into that chunk's buffer, and converted with numpy (no per-item Python work);
- tar is read as a stream (``r|``), gzip is decompressed as a stream; only zip needs seeking
  (its directory is at the end), so a non-seekable source is spooled to a temporary file first.

Limits are enforced while reading, not from headers that can lie: items, bytes after
decompression, the compression ratio of every decompressing stream, bytes and pixels of one
image. Over a batch limit the whole batch fails (``BatchTooLarge``); an unreadable container
fails it too (``InvalidBatch``); one corrupt image inside a readable archive fails alone.
"""

from __future__ import annotations

import gzip
import io
import lzma
import re
import shutil
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from shared.config import Settings
from shared.emnist import upright
from shared.errors import (
    BatchTooLarge,
    BlankImage,
    EmnistEdgeError,
    ImageTooLarge,
    InvalidBatch,
    InvalidImage,
)
from shared.idx import GZIP_MAGIC, header_size, looks_like_idx, payload_size, read_header
from shared.preprocess import NO_INK, TILE, DecodeBudget, preprocess

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
NPY_MAGIC = b"\x93NUMPY"
TAR_MAGIC_OFFSET = 257
# Enough to see every signature above (tar's is the furthest) and a 4-D IDX header.
HEAD_BYTES = 512
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"})
_IMAGE_MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
# "BM" alone starts plenty of text: a BMP also has one of the known DIB header sizes at 14.
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# Below this many decompressed bytes the ratio is not checked: a small, legitimately sparse
# stream (a few blank tiles) can compress 1000:1 and costs nothing to inflate.
RATIO_FLOOR = 1 << 20
READ_PIECE = 1 << 20
# An item id longer than this is cut: it is someone's text in our CSV, not a path we open.
MAX_ID_CHARS = 512
# The errors a decompressor raises on corrupt or truncated input (and nothing wider: an error
# of the source itself, e.g. storage being unreachable, must not be mistaken for a bad batch).
DECOMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)
# What zipfile raises for one bad member: the above, LZMA's and BZIP2's own errors (bz2 raises
# a bare OSError, "Invalid data stream"), an unknown compression method, a password. A member is
# read from a seekable local file (a blob is spooled first), so an OSError here is the member's.
ZIP_MEMBER_ERRORS = (*DECOMPRESSION_ERRORS, lzma.LZMAError, OSError, NotImplementedError,
                     RuntimeError)
# The end-of-central-directory record (22 bytes and a comment of at most 65,535) and the zip64
# locator before it: where a zip says how many entries it has, read before zipfile parses them all.
EOCD = struct.Struct("<4s4H2LH")
EOCD_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
EOCD_SEARCH = EOCD.size + 0xFFFF
# A central directory entry's fixed part; fields 10-12 are the lengths of the name, the extra
# field and the comment that follow it.
CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")
CENTRAL_SIGNATURE = b"PK\x01\x02"
# Bytes of a member read to tell an image by its signature (BMP's needs 18).
SNIFF_BYTES = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# One image's outcome: its tile, or the typed error it failed with.
Decoded = np.ndarray | EmnistEdgeError


@dataclass(frozen=True)
class Limits:
    """The safety limits of one batch (see ``Settings`` for what each bounds and why)."""

    max_items: int
    max_bytes: int
    max_ratio: int
    max_image_pixels: int
    max_image_bytes: int
    max_decoded_bytes: int
    max_item_decoded_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_items=settings.batch_max_items,
            max_bytes=settings.batch_max_bytes,
            max_ratio=settings.batch_max_ratio,
            max_image_pixels=settings.max_image_pixels,
            max_image_bytes=settings.batch_max_image_bytes,
            max_decoded_bytes=settings.max_decoded_bytes,
            max_item_decoded_bytes=settings.max_request_decoded_bytes,
        )


@dataclass
class Chunk:
    """Consecutive items of a batch, in input order.

    ``tiles`` holds one upright white-on-black uint8 28x28 tile per item; the rows of failed
    items (positions in ``errors``) are zeros and mean nothing. A chunk owns its arrays, so it
    can be handed to another thread while the next one is read.
    """

    ids: Sequence[str | int]
    tiles: np.ndarray
    errors: dict[int, EmnistEdgeError] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def good(self) -> np.ndarray | None:
        """Boolean mask of the items that have a tile, or None when every item has one."""
        if not self.errors:
            return None
        mask = np.ones(len(self.ids), dtype=bool)
        mask[list(self.errors)] = False
        return mask


def safe_text(text: str, limit: int = MAX_ID_CHARS) -> str:
    """Untrusted text (an archive member's name, a message quoting one) made safe for a CSV cell.

    Control characters (which could break rows or terminals) become U+FFFD, undecodable bytes
    that tar smuggles in as surrogates too, overlong text is cut, and a leading ``= + - @`` gets
    a ``'`` so that a spreadsheet shows the name instead of running it as a formula (OWASP's
    CSV-injection advice).
    """
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = _CONTROL.sub("\ufffd", text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


class BatchReader:
    """One batch's source stream, read once through :meth:`chunks`.

    ``format`` names what the content turned out to be and ``skipped`` counts archive entries
    that are not images; both are final once the chunks are exhausted.
    """

    def __init__(
        self, stream: BinaryIO, *, name: str, size: int, limits: Limits, chunk_items: int
    ) -> None:
        self._stream = stream
        self.name = name
        self.size = size
        self.limits = limits
        self.chunk_items = max(1, chunk_items)
        self.format = "unknown"
        self.skipped = 0
        self._entries = 0
        self._inflated = 0

    def chunks(self) -> Iterator[Chunk]:
        """Recognise the content and yield its chunks; raises InvalidBatch / BatchTooLarge."""
        if self.size > self.limits.max_bytes:
            raise BatchTooLarge(
                f"the batch is {self.size} bytes, more than the {self.limits.max_bytes} allowed"
            )
        head, stream = _peek(self._stream, HEAD_BYTES)
        if not head:
            raise InvalidBatch("the batch is empty (0 bytes)")
        if not head.strip(b"\0"):
            raise InvalidBatch("the batch starts with only zero bytes (an empty tar archive?)")
        if head.startswith(ZIP_MAGICS):
            yield from self._zip(stream)
        elif head.startswith(GZIP_MAGIC):
            yield from self._gzip(stream)
        else:
            yield from self._plain(head, stream, known_size=self.size)

    # --- containers ------------------------------------------------------------------------

    def _plain(self, head: bytes, stream: BinaryIO, known_size: int | None) -> Iterator[Chunk]:
        """Uncompressed content (the batch itself, or what a gzip stream holds)."""
        if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar":
            yield from self._tar(stream)
        elif head.startswith(NPY_MAGIC):
            yield from self._npy(stream, known_size, "npy")
        elif looks_like_idx(head):
            yield from self._idx(stream, known_size)
        elif known_size is not None and _is_image(head):
            self.format = "image"
            try:
                item = self._decode(_read_capped(stream, self.limits))
            except ImageTooLarge as error:
                item = error
            yield self._image_chunk([(safe_text(self.name), item)])
        else:
            what = "gzip data" if known_size is None else "the batch"
            raise InvalidBatch(
                f"{what} is not a format this service reads: expected a zip or tar of images "
                "(tar may be gzip-compressed), an .npy or .npz array, an IDX file (plain or "
                "gzip) or a single PNG, JPEG, GIF, BMP or WebP image"
            )

    def _gzip(self, stream: BinaryIO) -> Iterator[Chunk]:
        compressed = _Counted(stream)
        inflated = _Inflated(
            gzip.GzipFile(fileobj=compressed, mode="rb"), self, lambda: compressed.count, "gzip"
        )
        try:
            head, inner = _peek(inflated, HEAD_BYTES)
            if not head:
                raise InvalidBatch("the gzip stream holds no data")
            yield from self._plain(head, inner, known_size=None)
        except DECOMPRESSION_ERRORS as exc:
            raise InvalidBatch(f"the gzip stream is truncated or corrupt: {exc}") from exc
        self.format += ".gz"

    def _tar(self, stream: BinaryIO) -> Iterator[Chunk]:
        """A tar read as a stream: members come in archive order, each read once."""
        self.format = "tar"
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                yield from self._in_chunks(self._tar_items(archive))
        except tarfile.TarError as exc:
            raise InvalidBatch(f"the tar archive is truncated or corrupt: {exc}") from exc

    def _tar_items(self, archive: tarfile.TarFile) -> Iterator[tuple[str, Decoded] | None]:
        for member in archive:
            if member.isdir():
                continue
            self._count_entry()
            yield self._member(
                member.name,
                member.size if member.isfile() else None,  # links, devices: no content
                lambda m=member: archive.extractfile(m),
                corrupt=(),  # a tar's bytes are the stream's: failing them fails it all
            )

    def _zip(self, stream: BinaryIO) -> Iterator[Chunk]:
        """A zip (or an npz, which is a zip of .npy members): its directory sits at the end, so
        this is the one format that needs a seekable file."""
        with _seekable(stream) as file:
            self._check_directory(file)
            try:
                archive = zipfile.ZipFile(file)
            except (zipfile.BadZipFile, EOFError, ValueError) as exc:
                raise InvalidBatch(f"the zip archive is truncated or corrupt: {exc}") from exc
            with archive:
                entries = [info for info in archive.infolist() if not info.is_dir()]
                if len(entries) > self.limits.max_items:
                    raise BatchTooLarge(
                        f"the zip archive has {len(entries)} entries, more than the "
                        f"{self.limits.max_items} allowed"
                    )
                _refuse_shared_data(entries)
                if entries and all(info.filename.endswith(".npy") for info in entries):
                    yield from self._npz(archive, entries)
                    return
                self.format = "zip"
                yield from self._in_chunks(
                    self._member(
                        info.filename,
                        info.file_size,
                        lambda i=info: self._open_zip_member(archive, i),
                        corrupt=ZIP_MEMBER_ERRORS,
                    )
                    for info in entries
                )

    def _check_directory(self, file: BinaryIO) -> None:
        """Refuse a zip with too many entries before zipfile parses its directory: zipfile keeps
        every entry in memory first (about 0.5 KB each). The declared count can lie low, so a
        directory large enough to hold more entries than allowed is walked and counted."""
        directory = zip_directory(file)
        file.seek(0)
        if directory is None:
            return
        entries, size, start = directory
        if size // CENTRAL_HEADER.size > self.limits.max_items:
            entries = max(entries, _count_directory_entries(file, start, size,
                                                            self.limits.max_items))
            file.seek(0)
        if entries > self.limits.max_items:
            raise BatchTooLarge(
                f"the zip archive has {entries} entries or more, more than the "
                f"{self.limits.max_items} allowed"
            )

    def _open_zip_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
        """A member's decompressed stream, its ratio checked against its compressed size.

        The directory's compressed size can lie, but only upwards to any effect (a smaller value
        starves the decompressor, which then fails), and no member can span more than the
        archive: capped at the archive's size, it is a sound denominator.
        """
        compressed = min(max(info.compress_size, 1), max(self.size, 1))
        return _Inflated(archive.open(info), self, lambda: compressed, "a zip member")

    def _npz(self, archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo]) -> Iterator[Chunk]:
        """The images array of an npz: its only array, or the one saved as ``images``."""
        names = [info.filename for info in entries]
        if len(entries) == 1:
            chosen = entries[0]
        elif "images.npy" in names:
            chosen = entries[names.index("images.npy")]
        else:
            listed = ", ".join(safe_text(n.removesuffix(".npy"), 64) for n in names[:8])
            raise InvalidBatch(
                f"the npz holds {len(entries)} arrays ({listed}): save one array, or name the "
                "images array 'images'"
            )
        try:
            with self._open_zip_member(archive, chosen) as member:
                yield from self._npy(member, None, "npz")
        except ZIP_MEMBER_ERRORS as exc:
            raise InvalidBatch(f"the npz member {chosen.filename!r} is corrupt: {exc}") from exc

    # --- arrays ----------------------------------------------------------------------------

    def _npy(self, stream: BinaryIO, known_size: int | None, fmt: str) -> Iterator[Chunk]:
        self.format = fmt
        counted = _Counted(stream)
        try:
            version = npy_format.read_magic(counted)
            # Versions 2 and 3 share one header layout (3 only allows UTF-8 field names, which
            # an image array never has).
            reader = (
                npy_format.read_array_header_1_0
                if version == (1, 0)
                else npy_format.read_array_header_2_0
            )
            shape, fortran_order, dtype = reader(counted)
        except ValueError as exc:
            raise InvalidBatch(f"the {fmt} array header is not readable: {exc}") from exc
        if fortran_order:
            raise InvalidBatch(
                f"the {fmt} array is stored in Fortran order, which cannot be read item by item: "
                "save it with np.ascontiguousarray"
            )
        yield from self._records(
            counted, dtype, tuple(shape), known_size=known_size, header=counted.count,
            what=f"the {fmt} array", raw_orientation=False,
        )

    def _idx(self, stream: BinaryIO, known_size: int | None) -> Iterator[Chunk]:
        """IDX images come in EMNIST's raw (transposed) orientation, as the official files do."""
        self.format = "idx"
        dtype, shape = read_header(stream)
        yield from self._records(
            stream, dtype, shape, known_size=known_size, header=header_size(shape),
            what="the IDX file", raw_orientation=True,
        )

    def _records(
        self,
        stream: BinaryIO,
        dtype: np.dtype,
        shape: tuple[int, ...],
        *,
        known_size: int | None,
        header: int,
        what: str,
        raw_orientation: bool,
    ) -> Iterator[Chunk]:
        """Fixed-size image records, read a chunk at a time straight into its own buffer."""
        count = image_count(shape, what)
        if dtype.kind not in "uf" or (dtype.kind == "u" and dtype.itemsize != 1):
            raise InvalidBatch(
                f"{what} has element type {dtype}: expected uint8 (0-255) or float (0-1)"
            )
        if count > self.limits.max_items:
            raise BatchTooLarge(
                f"{what} holds {count} images, more than the {self.limits.max_items} allowed"
            )
        if count == 0:
            raise InvalidBatch(f"{what} holds no images")
        expected = header + payload_size(dtype, shape)
        if known_size is not None and known_size != expected:
            raise InvalidBatch(
                f"{what} header declares shape {list(shape)} ({expected} bytes with the header) "
                f"but the batch holds {known_size} bytes: the header lies about its size"
            )
        record = TILE * TILE * dtype.itemsize
        done = 0
        while done < count:
            n = min(count - done, self.chunk_items)
            buffer = bytearray(n * record)  # each chunk owns its bytes: it may go to a thread
            got = _read_full(stream, memoryview(buffer))
            if got < n * record:
                raise InvalidBatch(
                    f"{what} ends after {done + got // record} of the {count} images its header "
                    "declares: it is truncated"
                )
            yield record_chunk(buffer, done, dtype, what, raw_orientation)
            done += n
        if stream.read(1):
            raise InvalidBatch(
                f"{what} holds more data than the {count} images its header declares"
            )

    # --- images ----------------------------------------------------------------------------

    def _member(
        self,
        name: str,
        size: int | None,
        open_member: Callable[[], BinaryIO],
        corrupt: tuple[type[Exception], ...],
    ) -> tuple[str, Decoded] | None:
        """An archive member's tile (or why it has none), or None when it is no image.

        A member counts as an image when its name says so or its first bytes do: a member that
        neither calls itself an image nor starts like one is skipped; one that claims to be an
        image but is not readable fails alone, as does a member whose own compressed data is
        corrupt (``corrupt``: the errors that mean that in this archive format). macOS's
        ``__MACOSX/`` and ``._`` metadata twins look like images by name and never are: they
        are skipped. Each image is decoded as soon as it is read, so a chunk holds tiles, not
        encoded images.
        """
        path = PurePosixPath(name)
        if size is None or path.parts[:1] == ("__MACOSX",) or path.name.startswith("._"):
            self.skipped += 1
            return None
        item_id = safe_text(name)
        try:
            with open_member() as stream:
                head = _read_up_to(stream, SNIFF_BYTES)
                if path.suffix.lower() not in IMAGE_EXTENSIONS and not _is_image(head):
                    self.skipped += 1
                    return None
                if size > self.limits.max_image_bytes:
                    raise ImageTooLarge(
                        f"the member is {size} bytes, more than the "
                        f"{self.limits.max_image_bytes} allowed for one image"
                    )
                data = head + _read_capped(stream, self.limits, len(head))
        except ImageTooLarge as error:
            return item_id, error
        except corrupt as exc:
            return item_id, InvalidImage(f"the archive member is corrupt: {safe_text(str(exc))}")
        return item_id, self._decode(data)

    def _decode(self, data: bytes) -> Decoded:
        try:
            budget = DecodeBudget(self.limits.max_decoded_bytes,
                                  self.limits.max_item_decoded_bytes)
            return preprocess(data, max_pixels=self.limits.max_image_pixels, budget=budget)
        except EmnistEdgeError as error:
            return error

    def _in_chunks(self, items: Iterable[tuple[str, Decoded] | None]) -> Iterator[Chunk]:
        """Archive items (None for a skipped entry) gathered into chunks."""
        pending: list[tuple[str, Decoded]] = []
        for item in items:
            if item is not None:
                pending.append(item)
            if len(pending) == self.chunk_items:
                yield self._image_chunk(pending)
                pending = []
        if pending:
            yield self._image_chunk(pending)

    def _image_chunk(self, items: list[tuple[str, Decoded]]) -> Chunk:
        tiles = np.zeros((len(items), TILE, TILE), dtype=np.uint8)
        errors: dict[int, EmnistEdgeError] = {}
        for i, (_, tile) in enumerate(items):
            if isinstance(tile, EmnistEdgeError):
                errors[i] = tile
            else:
                tiles[i] = tile
        return Chunk([item_id for item_id, _ in items], tiles, errors)

    # --- limits ----------------------------------------------------------------------------

    def _count_entry(self) -> None:
        self._entries += 1
        if self._entries > self.limits.max_items:
            raise BatchTooLarge(
                f"the archive has more than the {self.limits.max_items} entries allowed"
            )

    def spend(self, produced: int, total: int, compressed: int, what: str) -> None:
        """Account for decompressed bytes: the batch's total and one stream's ratio."""
        self._inflated += produced
        if self._inflated > self.limits.max_bytes:
            raise BatchTooLarge(
                f"the batch decompresses to more than the {self.limits.max_bytes} bytes allowed"
            )
        if total > RATIO_FLOOR and total > self.limits.max_ratio * compressed:
            raise BatchTooLarge(
                f"{what} decompresses more than {self.limits.max_ratio}:1 "
                f"({total} bytes from {compressed}): refused as a compression bomb"
            )


# --- streams ---------------------------------------------------------------------------------


class _Counted(io.RawIOBase):
    """Passes reads through and counts the bytes (a decompressor's input, a header's length)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = read_into(self._stream, buffer)
        self.count += n
        return n


class _Inflated(io.RawIOBase):
    """A decompressor's output, checked against the batch's limits as it comes out."""

    def __init__(
        self, stream: BinaryIO, reader: BatchReader, compressed: Callable[[], int], what: str
    ) -> None:
        self._stream = stream
        self._reader = reader
        self._compressed = compressed
        self._what = what
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = read_into(self._stream, buffer)
        self.produced += n
        self._reader.spend(n, self.produced, self._compressed(), self._what)
        return n

    def close(self) -> None:
        self._stream.close()
        super().close()


class _Prefixed(io.RawIOBase):
    """A non-seekable stream whose first bytes were already read to sniff the format."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return read_into(self._stream, buffer)


def read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """One read into a caller's buffer, whether the stream has ``readinto`` or only ``read``."""
    if hasattr(stream, "readinto"):
        return stream.readinto(buffer) or 0
    data = stream.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


def _read_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` unless the stream ends first; the number of bytes read."""
    done = 0
    while done < len(view):
        n = read_into(stream, view[done:])
        if not n:
            break
        done += n
    return done


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes, or fewer only if the stream ends first: one ``read`` of a raw stream (a blob
    download, a decompressor) may return less than it was asked for. Read in pieces, so that a
    large ``n`` (the per-image cap) costs nothing until bytes come."""
    pieces, left = [], n
    while left > 0 and (piece := stream.read(min(left, READ_PIECE))):
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def _peek(stream: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    """The first ``n`` bytes (fewer if the stream is shorter) and a stream that still starts at
    them: rewound when seekable, else the bytes are put back in front."""
    head = _read_up_to(stream, n)
    if stream.seekable():
        stream.seek(-len(head), io.SEEK_CUR)
        return head, stream
    return head, _Prefixed(head, stream)


def _read_capped(stream: BinaryIO, limits: Limits, already: int = 0) -> bytes:
    """The rest of one image's bytes, refusing (ImageTooLarge) past the per-image cap."""
    data = _read_up_to(stream, limits.max_image_bytes - already + 1)
    if already + len(data) > limits.max_image_bytes:
        raise ImageTooLarge(
            f"the image is more than the {limits.max_image_bytes} bytes allowed for one image"
        )
    return data


@contextmanager
def _seekable(stream: BinaryIO) -> Iterator[BinaryIO]:
    """The batch as a seekable file: itself when it is one, else a temporary copy (deleted on
    exit, named after nothing in the batch). Its size was checked against the limit already."""
    if stream.seekable():
        yield stream
        return
    with tempfile.TemporaryFile(prefix="emnist-batch-") as copy:
        shutil.copyfileobj(stream, copy, READ_PIECE)
        copy.seek(0)
        yield copy


# --- zip directories -------------------------------------------------------------------------


def zip_directory(file: BinaryIO) -> tuple[int, int, int] | None:
    """What a zip's end-of-central-directory record (its zip64 record, where there is one)
    declares: (entries, the directory's size, where it starts). None where no record is found:
    zipfile then says what is wrong."""
    end = file.seek(0, io.SEEK_END)
    start = max(0, end - EOCD_SEARCH)
    file.seek(start)
    tail = _read_up_to(file, end - start)
    at = tail.rfind(EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < EOCD.size:
        return None
    *_, entries, size, _offset, _comment = EOCD.unpack_from(tail, at)
    record_at = start + at
    locator = at - ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == ZIP64_LOCATOR_SIGNATURE:
        record_at = ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        if record_at > end - ZIP64_EOCD.size:
            return None
        file.seek(record_at)
        record = _read_up_to(file, ZIP64_EOCD.size)
        if not record.startswith(ZIP64_EOCD_SIGNATURE):
            return None
        fields = ZIP64_EOCD.unpack(record)
        entries, size = max(entries, fields[7]), fields[8]
    # Like zipfile, the directory is found from where its end record is (data may precede the
    # archive), not from the offset it states.
    return entries, size, max(0, record_at - size)


def _count_directory_entries(file: BinaryIO, start: int, size: int, stop_after: int) -> int:
    """Entries actually in a central directory, up to ``stop_after`` + 1, walked header by
    header a piece at a time (nothing kept): zipfile parses a directory by its size, whatever
    count it declares."""
    file.seek(start)
    count, pending, left = 0, b"", size
    while count <= stop_after:
        piece = _read_up_to(file, min(READ_PIECE, left))
        left -= len(piece)
        data, position = pending + piece, 0
        while position + CENTRAL_HEADER.size <= len(data):
            fields = CENTRAL_HEADER.unpack_from(data, position)
            if fields[0] != CENTRAL_SIGNATURE:
                return count
            position += CENTRAL_HEADER.size + fields[10] + fields[11] + fields[12]
            count += 1
        if not piece:
            return count
        pending = data[position:] if position <= len(data) else b""
        if position > len(data):  # a header's variable part runs past this piece: skip it
            skip = position - len(data)
            file.seek(skip, io.SEEK_CUR)
            left -= skip
    return count


def _refuse_shared_data(entries: list[zipfile.ZipInfo]) -> None:
    """Entries that point at one local header are one member's data counted many times (the
    overlapping zip bomb): each would be inflated and decoded again, each ratio in order."""
    offsets = {info.header_offset for info in entries}
    if len(offsets) < len(entries):
        raise BatchTooLarge(
            f"the zip archive's {len(entries)} entries share {len(offsets)} members' data: "
            "refused as a zip bomb (entries that overlap)"
        )


# --- arrays ----------------------------------------------------------------------------------


def record_chunk(buffer: bytes | bytearray, first: int, dtype: np.dtype, what: str,
                 raw_orientation: bool) -> Chunk:
    """Whole fixed-size image records (``dtype`` elements, 28x28 each) as the chunk of items
    ``first``, ``first + 1``, ...: tiles upright, blank ones failed."""
    n = len(buffer) // (TILE * TILE * dtype.itemsize)
    raw = np.frombuffer(buffer, dtype=dtype, count=n * TILE * TILE)
    tiles = _to_tiles(raw.reshape(n, TILE, TILE), what)
    if raw_orientation:
        tiles = upright(tiles)
    return Chunk(range(first, first + n), tiles, _blank_errors(tiles))


def image_count(shape: tuple[int, ...], what: str) -> int:
    if len(shape) == 3 and shape[1:] == (TILE, TILE):
        return shape[0]
    if len(shape) == 4 and shape[1:] == (1, TILE, TILE):
        return shape[0]
    raise InvalidBatch(
        f"{what} has shape {list(shape)}: expected [N, 28, 28] or [N, 1, 28, 28] images"
    )


def _to_tiles(raw: np.ndarray, what: str) -> np.ndarray:
    """uint8 passes through; float must be within 0..1 (NaN is not) and is scaled to 0..255."""
    if raw.dtype == np.uint8:
        return raw
    low, high = float(raw.min()), float(raw.max())
    if not (low >= 0.0 and high <= 1.0):
        raise InvalidBatch(
            f"{what} holds float values from {low} to {high}: float images must be within 0..1 "
            "(save uint8 for 0..255)"
        )
    scaled = raw.astype(np.float32) * np.float32(255.0)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _blank_errors(tiles: np.ndarray) -> dict[int, EmnistEdgeError]:
    """Tiles without any ink fail as they do over HTTP: there is nothing to recognise."""
    blank = np.flatnonzero(~tiles.reshape(len(tiles), -1).any(axis=1))
    if not len(blank):
        return {}
    error = BlankImage(NO_INK)
    return dict.fromkeys(blank.tolist(), error)


def _is_image(head: bytes) -> bool:
    """Whether bytes start like one of the image formats that preprocessing decodes."""
    return (
        head.startswith(_IMAGE_MAGICS)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES)
    )
