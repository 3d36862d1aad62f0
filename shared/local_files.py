"""Local files as a batch source and a result sink: what ``python -m shared batch`` uses on a
file, and the benchmarks use to measure the batch path without storage."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from shared.batch import SourceInfo, decode_marker, encode_document


class SourceChanged(OSError):
    """The file changed since it was described: a ranged read of the old version fails."""


class LocalFileSource:
    """A local file. Its etag is its modification time and size (as web servers make theirs):
    a rewritten file gets a new one, and nothing has to read the whole file to tell."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def describe(self) -> SourceInfo | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return None
        return SourceInfo(self._path.name, f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                          stat.st_size)

    @contextmanager
    def open(self, info: SourceInfo) -> Iterator[BinaryIO]:
        with open(self._path, "rb") as stream:
            yield stream

    def read_range(self, info: SourceInfo, offset: int, length: int) -> bytes:
        if self.describe() != info:
            raise SourceChanged(f"{self._path} changed since it was described")
        with open(self._path, "rb") as stream:
            stream.seek(offset)
            return stream.read(length)


class LocalResultSink:
    """Results as files of one folder, each written to a temporary file beside it and moved
    into place with ``os.replace`` (atomic on one file system)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            return decode_marker(self._path(name).read_bytes())
        except FileNotFoundError:
            return None

    def write_json(self, name: str, document: dict[str, Any]) -> None:
        upload = _FileUpload(self._path(name))
        upload.write(encode_document(document))
        upload.commit()

    def open_csv(self, name: str) -> _FileUpload:
        return _FileUpload(self._path(name))

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
        shutil.rmtree(self._blocks(name), ignore_errors=True)

    def list_names(self, prefix: str) -> list[str]:
        return sorted(path.name for path in self._folder.glob(glob.escape(prefix) + "*")
                      if path.is_file())

    def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        folder = self._blocks(name)
        folder.mkdir(exist_ok=True)
        upload = _FileUpload(folder / block_id)
        upload.write(data)
        upload.commit()

    def commit_blocks(self, name: str, block_ids: list[str]) -> None:
        """The blocks concatenated into ``name``, then removed: a second commit of the same
        list, finding them gone and the file there, has nothing left to do."""
        blocks = self._blocks(name)
        if not blocks.is_dir() and self._path(name).is_file():
            return
        upload = _FileUpload(self._path(name))
        try:
            for block_id in block_ids:
                upload.write((blocks / block_id).read_bytes())
        except BaseException:
            upload.abort()
            raise
        upload.commit()
        shutil.rmtree(blocks, ignore_errors=True)

    def _blocks(self, name: str) -> Path:
        """Staged blocks of ``name``: a hidden folder beside it, as storage keeps them aside."""
        return self._path(name).with_name(f".{name}.blocks")

    def _path(self, name: str) -> Path:
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"a local result name must be a plain file name, not {name!r}")
        return self._folder / name


class _FileUpload:
    def __init__(self, path: Path) -> None:
        self._path = path
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp")
        self._temporary = Path(temporary)
        self._file = os.fdopen(descriptor, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._temporary, self._path)

    def abort(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)
