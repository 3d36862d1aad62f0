"""Fan-out: one large batch split into shards that many workers (instances, processes) classify
at once, through a storage queue, with every guarantee of the in-place path kept.

1. **Plan** (``submit_batch``, the blob trigger's call): a batch whose items can be read
   independently (a zip, from its central directory; an IDX or ``.npy`` file, by record offset)
   and that holds more than ``batch_shard_items`` items is split into shards of that many
   items. The plan (etag, format, shard ranges) is written as ``<batch>.plan.json`` and one
   message per shard is queued. Anything else (gzip, tar, npz, a single image, a small batch,
   a zip whose members are not laid out in directory order) is processed in place, as before.
2. **Shard** (``run_shard``, the queue trigger's call): reads only its items, with ranged reads
   of the pinned version (a changed blob abandons the old plan: its messages are dropped, as
   are messages that arrive once the batch is done),
   classifies them, and stages its CSV rows as blocks of ``<batch>.csv`` whose ids derive from
   the version, the shard and the part, so a redelivered message restages the same blocks.
   It then records that it is done (``<batch>.shard-<tag>-<index>.json``: counts, timings,
   the instance that ran it).
3. **Finish** (``finish``): whichever shard sees every shard done commits the block list in
   input order and writes the summary, computed from the shard records alone, so two
   finishers, or a finisher retried after dying between the commit and the summary, write the
   same bytes. A shard whose message keeps failing reaches the poison queue, where
   ``fail_shard`` reports its items as failed rows (``shard_failed``), so the batch still
   finishes: a plan never hangs without a final summary or error.

Progress is read, not written: ``batch_status`` counts the shard records against the plan.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import struct
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from numpy.lib import format as npy_format

from shared.batch import (
    READ_AHEAD_CHUNKS,
    BatchSource,
    Outcome,
    ResultNames,
    ResultSink,
    ResultWriter,
    SourceInfo,
    classified,
    existing_result,
    fail_batch,
    iso,
    no_images,
    process_version,
    read_ahead,
)
from shared.batch_formats import (
    CENTRAL_HEADER,
    CENTRAL_SIGNATURE,
    EOCD,
    EOCD_SIGNATURE,
    NPY_MAGIC,
    ZIP_MAGICS,
    BatchReader,
    Chunk,
    Limits,
    image_count,
    record_chunk,
    safe_text,
    zip_directory,
)
from shared.classifier import check_top_k
from shared.config import Settings
from shared.errors import EmnistEdgeError, InvalidBatch, ShardFailed
from shared.idx import header_size, looks_like_idx, read_header
from shared.model_loader import LoadedModel
from shared.ranged_io import MemorySegment, SourceSegment, SplicedFile
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

HEAD_BYTES = 4096  # enough for any npy header a batch can have, and an IDX header
# A zip shard's own end record counts its entries in 16 bits.
MAX_ZIP_SHARD = 0xFFFF
NAME_FLAG_UTF8 = 0x800
# What a shard message may carry: a blob's name (Azure allows 1,024 characters) and its etag.
MAX_BLOB_NAME = 1024
MAX_ETAG = 256
# A zip shard's view is read through a buffer of this size: many members' headers and data
# per raw read (which copies from the source segment's window already in memory).
ZIP_VIEW_BUFFER_BYTES = 64 * 1024


class ShardQueue(Protocol):
    """Where shard messages go (a storage queue)."""

    def send(self, messages: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Shard:
    """Items ``first`` .. ``first + count - 1`` (records of an array, directory entries of a
    zip). A zip shard also names the source range of its members' data and of its slice of
    the central directory."""

    index: int
    first: int
    count: int
    data: tuple[int, int] | None = None
    directory: tuple[int, int] | None = None


@dataclass(frozen=True)
class Plan:
    batch: str
    etag: str
    size: int
    format: str
    top_k: int
    shards: tuple[Shard, ...]
    created: str
    # Arrays: bytes before the first record, the element type, whether tiles are transposed.
    header: int = 0
    dtype: str = ""
    raw_orientation: bool = False
    enqueued: bool = False

    @property
    def tag(self) -> str:
        """The version's short tag in record names and block ids."""
        return version_tag(self.etag)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Plan:
        shards = tuple(Shard(s["index"], s["first"], s["count"],
                             tuple(s["data"]) if s.get("data") else None,
                             tuple(s["directory"]) if s.get("directory") else None)
                       for s in document["shards"])
        return cls(**{**document, "shards": shards})


@dataclass(frozen=True)
class ShardMessage:
    batch: str
    etag: str
    shard: int

    def encode(self) -> str:
        return json.dumps({"batch": self.batch, "etag": self.etag, "shard": self.shard})

    @classmethod
    def decode(cls, text: str) -> ShardMessage:
        """A message this module wrote; anything else is refused with InvalidBatch (a blob
        name is 1 to 1,024 characters, an etag a short quoted string, a shard a count)."""
        try:
            document = json.loads(text)
            message = cls(document["batch"], document["etag"], document["shard"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise InvalidBatch(f"not a shard message: {text[:200]!r}") from exc
        if not (isinstance(message.batch, str) and 0 < len(message.batch) <= MAX_BLOB_NAME
                and isinstance(message.etag, str) and 0 < len(message.etag) <= MAX_ETAG
                and type(message.shard) is int and message.shard >= 0):
            raise InvalidBatch(f"not a shard message: {text[:200]!r}")
        return message


@dataclass(frozen=True)
class ShardNames:
    """The plan, the shard records and the block ids of one batch version."""

    batch: str
    tag: str

    @property
    def plan(self) -> str:
        return f"{self.batch}.plan.json"

    @property
    def records_prefix(self) -> str:
        return f"{self.batch}.shard-{self.tag}-"

    def record(self, shard: int) -> str:
        return f"{self.records_prefix}{shard:06d}.json"

    def block(self, shard: int, part: int) -> str:
        return f"{self.tag}-{shard:06d}-{part:06d}"


def version_tag(etag: str) -> str:
    return hashlib.sha256(etag.encode()).hexdigest()[:12]


# --- planning ------------------------------------------------------------------------------


def make_plan(source: BatchSource, info: SourceInfo, settings: Settings,
              top_k: int) -> Plan | None:
    """The batch's plan, or None to process it in place (see the module docstring). Never
    raises for the batch's content: whatever is wrong with it, the in-place path says."""
    shard_items = max(1, settings.batch_shard_items)
    limits = Limits.from_settings(settings)
    if info.size > limits.max_bytes or info.size == 0:
        return None
    try:
        head = source.read_range(info, 0, min(HEAD_BYTES, info.size))
        if head.startswith(ZIP_MAGICS):
            return _zip_plan(source, info, min(shard_items, MAX_ZIP_SHARD), limits, top_k)
        if head.startswith(NPY_MAGIC) or looks_like_idx(head):
            return _array_plan(head, info, shard_items, limits, top_k)
    except (InvalidBatch, ValueError, struct.error, EOFError):
        return None
    return None


def _array_plan(head: bytes, info: SourceInfo, shard_items: int, limits: Limits,
                top_k: int) -> Plan | None:
    stream = io.BytesIO(head)
    if head.startswith(NPY_MAGIC):
        fmt, raw_orientation = "npy", False
        version = npy_format.read_magic(stream)
        reader = (npy_format.read_array_header_1_0 if version == (1, 0)
                  else npy_format.read_array_header_2_0)
        shape, fortran_order, dtype = reader(stream)
        if fortran_order:
            return None
        header = stream.tell()
    else:
        fmt, raw_orientation = "idx", True
        dtype, shape = read_header(stream)
        header = header_size(shape)
    count = image_count(tuple(shape), fmt)
    if dtype.kind not in "uf" or (dtype.kind == "u" and dtype.itemsize != 1):
        return None
    record = 28 * 28 * dtype.itemsize
    if not shard_items < count <= limits.max_items or info.size != header + count * record:
        return None
    shards = tuple(Shard(i, first, min(shard_items, count - first))
                   for i, first in enumerate(range(0, count, shard_items)))
    return Plan(info.name, info.etag, info.size, fmt, top_k, shards, iso(datetime.now(UTC)),
                header=header, dtype=dtype.str, raw_orientation=raw_orientation)


def _zip_plan(source: BatchSource, info: SourceInfo, shard_items: int, limits: Limits,
              top_k: int) -> Plan | None:
    whole = SplicedFile([SourceSegment(lambda at, n: source.read_range(info, at, n), 0,
                                       info.size)])
    found = zip_directory(whole)
    if found is None:
        return None
    entries, size, start = found
    if not shard_items < entries <= limits.max_items or start + size > info.size:
        return None
    directory = source.read_range(info, start, size)
    records, offsets, arrays = _directory_records(directory)
    in_order = all(b > a for a, b in itertools.pairwise(offsets))
    if len(records) != entries or arrays or not in_order:
        return None  # an npz, members out of directory order, a directory that lies: in place
    records.append(size)
    offsets.append(start)
    shards = []
    for index, first in enumerate(range(0, entries, shard_items)):
        last = min(first + shard_items, entries)
        shards.append(Shard(index, first, last - first,
                            data=(offsets[first], offsets[last]),
                            directory=(start + records[first], start + records[last])))
    return Plan(info.name, info.etag, info.size, "zip", top_k, tuple(shards),
                iso(datetime.now(UTC)))


def _central_records(directory: bytes) -> Iterator[tuple[int, tuple, bytes]]:
    """Each central-directory record: where it starts (within ``directory``), its fixed
    fields, its raw name; stops at the first record that is not one."""
    position = 0
    while position + CENTRAL_HEADER.size <= len(directory):
        fields = CENTRAL_HEADER.unpack_from(directory, position)
        if fields[0] != CENTRAL_SIGNATURE:
            return
        name_at = position + CENTRAL_HEADER.size
        yield position, fields, directory[name_at : name_at + fields[10]]
        position = name_at + fields[10] + fields[11] + fields[12]


def _directory_records(directory: bytes) -> tuple[list[int], list[int], bool]:
    """Where each record starts, its member's local header offset, and whether any member is
    named ``*.npy`` (an npz is read whole). A zip64 offset (a member past 4 GiB) stops the
    walk: batches are smaller, so such a directory is not what it claims."""
    records, offsets, arrays = [], [], False
    for position, fields, name in _central_records(directory):
        if fields[16] == 0xFFFFFFFF:
            break
        records.append(position)
        offsets.append(fields[16])
        arrays = arrays or name.endswith(b".npy")
    return records, offsets, arrays


def submit_batch(source: BatchSource, sink: ResultSink, queue: ShardQueue, settings: Settings,
                 model: LoadedModel, *, top_k: int | None = None,
                 telemetry: Telemetry | None = None) -> Outcome:
    """The blob trigger's call: plan the batch and queue its shards, or process it in place.

    A repeated call for one version does nothing more (the plan says its messages were
    queued); a call that died between writing the plan and queueing queues them again, and
    the shards' idempotency makes the duplicates harmless.
    """
    top_k = check_top_k(top_k or settings.batch_top_k, model)
    info = source.describe()
    if info is None:
        return Outcome("missing", None, None)
    if (done := existing_result(sink, ResultNames.of(info.name), info)) is not None:
        return done
    names = ShardNames(info.name, version_tag(info.etag))
    existing = sink.read_json(names.plan)
    if existing is not None and existing.get("etag") == info.etag:
        plan = Plan.from_dict(existing)
    else:
        plan = make_plan(source, info, settings, top_k)
        if plan is None:
            return process_version(source, sink, info, settings, model, top_k, telemetry)
        sink.write_json(names.plan, plan.to_dict())
    if not plan.enqueued:
        queue.send([ShardMessage(info.name, info.etag, shard.index).encode()
                    for shard in plan.shards])
        plan = replace(plan, enqueued=True)
        sink.write_json(names.plan, plan.to_dict())
        log.info("batch %s (etag %s): %d shards of up to %d items queued", info.name,
                 info.etag, len(plan.shards), settings.batch_shard_items)
    return Outcome("planned", info, plan.to_dict())


# --- shards --------------------------------------------------------------------------------


@dataclass
class _ShardUpload:
    """The shard's CSV pieces, each staged as one block of the batch's CSV."""

    sink: ResultSink
    csv: str
    names: ShardNames
    shard: int
    blocks: list[str] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        block = self.names.block(self.shard, len(self.blocks))
        self.sink.stage_block(self.csv, block, data)
        self.blocks.append(block)

    def commit(self) -> None:
        """Nothing: the finisher commits every shard's blocks at once."""

    def abort(self) -> None:
        """Nothing: staged blocks that are never committed are discarded by storage."""


def _current_plan(source: BatchSource, sink: ResultSink,
                  message: ShardMessage) -> tuple[Plan, SourceInfo] | None:
    """The plan this message belongs to, while it is still the batch's current one."""
    names = ShardNames(message.batch, version_tag(message.etag))
    document = sink.read_json(names.plan)
    info = source.describe()
    if document is None or document.get("etag") != message.etag or info is None \
            or info.etag != message.etag:
        return None
    if existing_result(sink, ResultNames.of(message.batch), info) is not None:
        return None  # a redelivery after the batch finished
    plan = Plan.from_dict(document)
    if not 0 <= message.shard < len(plan.shards):
        log.error("shard %d of %s does not exist (the plan has %d): dropped", message.shard,
                  message.batch, len(plan.shards))
        return None
    return plan, info


def run_shard(message: ShardMessage, source: BatchSource, sink: ResultSink, settings: Settings,
              model: LoadedModel, *, instance: str,
              telemetry: Telemetry | None = None) -> str:
    """Classify one shard, record it, and finish the batch when it was the last one. What it
    did: ``done``, ``finished`` (it also finished the batch), ``abandoned`` (the batch
    changed, or its results exist already), ``recorded`` (a redelivery: nothing to redo).
    Storage failures propagate, for the queue to deliver the message again. ``telemetry`` as
    ``shared.batch.process_batch`` takes it."""
    located = _current_plan(source, sink, message)
    if located is None:
        log.info("shard %d of %s (etag %s): the batch has changed or is done; dropped",
                 message.shard, message.batch, message.etag)
        return "abandoned"
    plan, info = located
    names = ShardNames(plan.batch, plan.tag)
    if sink.read_json(names.record(message.shard)) is None:
        shard = plan.shards[message.shard]
        telemetry = telemetry or Telemetry.off()
        with telemetry.shard_span(plan.batch, shard.index, shard.count):
            record = _classify_shard(plan, shard, info, source, sink, settings, model,
                                     instance, telemetry)
        sink.write_json(names.record(shard.index), record)
        status = "done"
    else:
        status = "recorded"
    return "finished" if finish(plan, info, sink, model) else status


def _classify_shard(plan: Plan, shard: Shard, info: SourceInfo, source: BatchSource,
                    sink: ResultSink, settings: Settings, model: LoadedModel, instance: str,
                    telemetry: Telemetry) -> dict[str, Any]:
    started, clock = datetime.now(UTC), time.perf_counter()
    names = ShardNames(plan.batch, plan.tag)
    upload = _ShardUpload(sink, ResultNames.of(plan.batch).csv, names, shard.index)
    writer = ResultWriter(upload, model.labels, plan.top_k, header=shard.index == 0)
    skipped, error = 0, None
    try:
        chunks, reader = _shard_chunks(plan, shard, info, source, settings)
        # Read and decode the next chunks while the model classifies this one, as in place.
        with closing(read_ahead(chunks, READ_AHEAD_CHUNKS)) as ahead:
            for chunk, (values, indices), began in classified(ahead, model, plan.top_k,
                                                             settings):
                writer.write(chunk, values, indices)
                telemetry.chunk((time.perf_counter_ns() - began) / 1e6)
        skipped = reader.skipped if reader is not None else 0
    except InvalidBatch as failure:  # over a limit inside this shard: the batch fails
        error = failure.to_dict()
    writer.close()
    seconds = time.perf_counter() - clock
    telemetry.batch_items(writer.items - sum(writer.errors.values()), writer.errors, skipped)
    telemetry.shard_done(seconds)
    return _shard_record(plan, shard, writer, upload.blocks, skipped, error, started, seconds,
                         instance)


def _shard_record(plan: Plan, shard: Shard, writer: ResultWriter, blocks: list[str],
                  skipped: int, error: dict[str, str] | None, started: datetime,
                  seconds: float, instance: str) -> dict[str, Any]:
    failed = sum(writer.errors.values())
    return {"etag": plan.etag, "shard": shard.index, "blocks": blocks, "items": writer.items,
            "succeeded": writer.items - failed, "failed": failed, "skipped": skipped,
            "errors": dict(writer.errors), "error": error, "started": iso(started),
            "finished": iso(datetime.now(UTC)), "seconds": round(seconds, 3),
            "instance": instance}


def _shard_chunks(plan: Plan, shard: Shard, info: SourceInfo, source: BatchSource,
                  settings: Settings) -> tuple[Iterator[Chunk], BatchReader | None]:
    if plan.format == "zip":
        reader = BatchReader(_zip_view(shard, info, source), name=info.name, size=info.size,
                             limits=Limits.from_settings(settings),
                             chunk_items=settings.batch_chunk_items)
        return reader.chunks(), reader
    return _array_chunks(plan, shard, info, source, settings.batch_chunk_items), None


def _array_chunks(plan: Plan, shard: Shard, info: SourceInfo, source: BatchSource,
                  chunk_items: int) -> Iterator[Chunk]:
    dtype = np.dtype(plan.dtype)
    record = 28 * 28 * dtype.itemsize
    what = f"the {plan.format} array" if plan.format == "npy" else "the IDX file"
    for first in range(shard.first, shard.first + shard.count, chunk_items):
        n = min(chunk_items, shard.first + shard.count - first)
        # A bytearray: the chunk's tiles may be views of it, and torch wants writable arrays.
        data = bytearray(source.read_range(info, plan.header + first * record, n * record))
        if len(data) != n * record:
            raise InvalidBatch(f"{what} ended early: {len(data)} of {n * record} bytes")
        yield record_chunk(data, first, dtype, what, plan.raw_orientation)


def _directory_slice(shard: Shard, info: SourceInfo, source: BatchSource) -> bytes:
    """A zip shard's records of the central directory."""
    assert shard.directory is not None
    start, end = shard.directory
    return source.read_range(info, start, end - start)


def _zip_view(shard: Shard, info: SourceInfo, source: BatchSource) -> io.BufferedReader:
    """The shard as a zip of its own: its members' bytes, its slice of the central directory,
    and an end record whose directory offset makes zipfile find each member where it is in
    this view (zipfile shifts every offset by where the directory turns out to be). Buffered:
    zipfile makes several small reads and seeks per member (local header, name, data), which
    the buffer serves in C. Read through the view's own Python ``readinto``, a member took 32 us,
    buffered 18-20, from an in-memory ``BytesIO`` 17."""
    assert shard.data is not None
    data_start, data_end = shard.data
    directory = _directory_slice(shard, info, source)
    end = EOCD.pack(EOCD_SIGNATURE, 0, 0, shard.count, shard.count, len(directory), data_end, 0)
    return io.BufferedReader(SplicedFile([
        SourceSegment(lambda at, n: source.read_range(info, at, n), data_start,
                      data_end - data_start),
        MemorySegment(directory),
        MemorySegment(end),
    ]), ZIP_VIEW_BUFFER_BYTES)


# --- finishing -----------------------------------------------------------------------------


def finish(plan: Plan, info: SourceInfo, sink: ResultSink, model: LoadedModel) -> bool:
    """Commit the CSV and write the summary (or the batch's error) once every shard is
    recorded; False while some are not. Everything written is computed from the plan and the
    shard records, so finishing twice writes the same bytes. The shard records go; the plan
    stays beside the results (it says how the batch was split, and a late redelivery finds
    the batch done)."""
    names = ShardNames(plan.batch, plan.tag)
    if len(sink.list_names(names.records_prefix)) < len(plan.shards):
        return False
    records = [sink.read_json(names.record(shard.index)) for shard in plan.shards]
    if any(record is None or record.get("etag") != plan.etag for record in records):
        return False  # another finisher is cleaning up, or a record is being rewritten
    results = ResultNames.of(plan.batch)
    failure = next((record["error"] for record in records if record.get("error")), None)
    items = sum(record["items"] for record in records)
    if failure is None and items == 0:
        skipped = sum(record["skipped"] for record in records)
        failure = no_images(skipped).to_dict()
    if failure is not None:
        error = EmnistEdgeError(failure["message"])
        error.code = failure["code"]
        fail_batch(sink, results, info, error)
    else:
        sink.commit_blocks(results.csv, [block for record in records
                                         for block in record["blocks"]])
        sink.write_json(results.summary, _summary(plan, info, records, model))
        sink.delete(results.error)
    for shard in plan.shards:
        sink.delete(names.record(shard.index))
    log.info("batch %s (etag %s): finished from %d shards", plan.batch, plan.etag,
             len(plan.shards))
    return True


def _summary(plan: Plan, info: SourceInfo, records: list[dict[str, Any]],
             model: LoadedModel) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    for record in records:
        errors.update(record["errors"])
    finished = max(record["finished"] for record in records)
    duration = (datetime.fromisoformat(finished)
                - datetime.fromisoformat(plan.created)).total_seconds()
    items = sum(record["items"] for record in records)
    return {
        "batch": plan.batch,
        "results": ResultNames.of(plan.batch).csv,
        "format": plan.format,
        "items": items,
        "succeeded": sum(record["succeeded"] for record in records),
        "failed": sum(record["failed"] for record in records),
        "skipped": sum(record["skipped"] for record in records),
        "errors": dict(errors),
        "top_k": plan.top_k,
        "model": {"name": model.manifest.name, "version": model.manifest.version,
                  "sha256": model.manifest.sha256},
        "source": asdict(info),
        "started": plan.created,
        "finished": finished,
        "duration_s": round(duration, 3),
        "items_per_s": round(items / duration, 1) if duration > 0 else None,
        "shards": len(plan.shards),
        "instances": len({record["instance"] for record in records}),
        "shard_timings": [{"shard": record["shard"], "items": record["items"],
                           "seconds": record["seconds"], "instance": record["instance"]}
                          for record in records],
    }


# --- poison --------------------------------------------------------------------------------


def fail_shard(message: ShardMessage, source: BatchSource, sink: ResultSink,
               model: LoadedModel, *, instance: str) -> str:
    """A shard whose message kept failing: its items become failed rows (``shard_failed``),
    it is recorded, and the batch finishes if it was the last. Its items are named from the
    plan alone (a zip's from its directory slice), since reading them is what failed."""
    located = _current_plan(source, sink, message)
    if located is None:
        return "abandoned"
    plan, info = located
    names = ShardNames(plan.batch, plan.tag)
    if sink.read_json(names.record(message.shard)) is None:
        shard = plan.shards[message.shard]
        started = datetime.now(UTC)
        ids = _item_ids(plan, shard, info, source)
        error = ShardFailed(f"shard {shard.index} of the batch (items {shard.first} to "
                            f"{shard.first + shard.count - 1}) failed on every delivery; "
                            "its items were not classified")
        upload = _ShardUpload(sink, ResultNames.of(plan.batch).csv, names, shard.index)
        writer = ResultWriter(upload, model.labels, plan.top_k, header=shard.index == 0)
        chunk = Chunk(ids, np.zeros((len(ids), 28, 28), np.uint8), dict.fromkeys(range(len(ids)),
                                                                            error))
        empty = np.zeros((0, plan.top_k))
        writer.write(chunk, empty.astype(np.float32), empty.astype(np.int64))
        writer.close()
        record = _shard_record(plan, shard, writer, upload.blocks, 0, None, started, 0.0,
                               instance)
        sink.write_json(names.record(shard.index), record)
        log.error("batch %s: shard %d failed on every delivery; its %d items are reported "
                  "failed", plan.batch, shard.index, len(ids))
    return "finished" if finish(plan, info, sink, model) else "recorded"


def _item_ids(plan: Plan, shard: Shard, info: SourceInfo,
              source: BatchSource) -> list[str | int]:
    if plan.format != "zip":
        return list(range(shard.first, shard.first + shard.count))
    directory = _directory_slice(shard, info, source)
    names = (raw.decode("utf-8" if fields[3] & NAME_FLAG_UTF8 else "cp437", "replace")
             for _, fields, raw in _central_records(directory))
    return [safe_text(name) for name in names if not name.endswith("/")]


# --- progress ------------------------------------------------------------------------------


def batch_status(sink: ResultSink, batch: str) -> dict[str, Any]:
    """Where a batch stands: its summary or error when it is done, else its plan's progress
    (shards recorded of all, items done)."""
    results = ResultNames.of(batch)
    for name, state in ((results.summary, "processed"), (results.error, "failed")):
        document = sink.read_json(name)
        if document is not None:
            return {"batch": batch, "status": state, **document}
    document = sink.read_json(f"{batch}.plan.json")
    if document is None:
        return {"batch": batch, "status": "unknown"}
    plan = Plan.from_dict(document)
    names = ShardNames(plan.batch, plan.tag)
    recorded = [sink.read_json(name) for name in sink.list_names(names.records_prefix)]
    done = [record for record in recorded if record and record.get("etag") == plan.etag]
    return {"batch": batch, "status": "running", "etag": plan.etag,
            "shards": len(plan.shards), "shards_done": len(done),
            "items_done": sum(record["items"] for record in done), "started": plan.created}
