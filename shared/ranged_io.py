"""Seekable, read-only files made of byte ranges: what lets one shard of a batch read its own
part of a blob (ranged GETs) as if it were a whole file.

A :class:`SplicedFile` lays segments end to end: a range of the source, read through a window
so that a sequential reader makes one request per window, or bytes already in memory. A zip
shard is the source's range holding its members, then its slice of the central directory, then
an end record written for it: ``zipfile`` reads that like any archive.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Bytes per ranged read of a source segment: few requests, a bounded amount of memory.
WINDOW_BYTES = 8 * 1024 * 1024

ReadRange = Callable[[int, int], bytes]


class Segment:
    length: int

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (within the segment)."""
        raise NotImplementedError


@dataclass
class MemorySegment(Segment):
    data: bytes
    length: int = field(init=False)

    def __post_init__(self) -> None:
        self.length = len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]


@dataclass
class SourceSegment(Segment):
    """``length`` bytes of a source from ``start``, fetched a window at a time."""

    read_range: ReadRange
    start: int
    length: int
    window: int = WINDOW_BYTES
    _cached_at: int = field(default=-1, init=False)
    _cached: bytes = field(default=b"", init=False)

    def read(self, offset: int, n: int) -> bytes:
        if not self._cached_at <= offset < self._cached_at + len(self._cached):
            self._cached_at = offset
            self._cached = self.read_range(self.start + offset,
                                           min(max(n, self.window), self.length - offset))
        at = offset - self._cached_at
        return self._cached[at : at + n]


class SplicedFile(io.RawIOBase):
    def __init__(self, segments: Sequence[Segment]) -> None:
        self._segments = list(segments)
        self._starts = []
        total = 0
        for segment in self._segments:
            self._starts.append(total)
            total += segment.length
        self._size = total
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        done = 0
        while done < len(buffer) and self._position < self._size:
            index = next(i for i, (start, segment) in enumerate(zip(self._starts,
                                                                     self._segments, strict=True))
                         if start <= self._position < start + segment.length)
            segment, start = self._segments[index], self._starts[index]
            data = segment.read(self._position - start, len(buffer) - done)
            if not data:
                raise EOFError(f"no bytes at {self._position} of a {self._size}-byte view")
            buffer[done : done + len(data)] = data
            done += len(data)
            self._position += len(data)
        return done
