"""One batch processed: a source (blob or file) -> a results CSV and a summary, or an error.

``process_batch`` is the one implementation behind the blob trigger, ``python -m shared batch``
and the local poller; they differ only in the :class:`BatchSource` and :class:`ResultSink` they
pass (``functions.storage`` for blobs, ``shared.local_files`` for local files).

Outputs, named after the batch (``forms.zip`` -> ``forms.zip.csv``: the full name, so that
``forms.zip`` and ``forms.npy`` do not collide):

- ``<batch>.csv``: a header row, then one row per item in input order. Columns: ``item`` (the
  archive path, sanitised, or the array index), ``label`` and ``probability`` (the top class),
  ``label_2, probability_2 ... label_k, probability_k`` (the runners-up, so no column repeats
  another), ``error_code`` and ``error_message`` (empty unless the item failed, in which case
  the label columns are empty). Probabilities are rounded to 6 decimals. Wide columns rather
  than one packed cell: a spreadsheet or ``pandas.read_csv`` reads them without parsing.
- ``<batch>.summary.json``: counts, model, source (name, etag, size), times, throughput.
  Written last: it is the completion marker.
- ``<batch>.error.json`` instead, when the batch as a whole is unreadable or over a limit.

Idempotency: both JSON files record the source's etag; when either exists for the etag being
processed, the work was done (or failed for good) and nothing is rewritten, so a redelivered
event costs two small reads. A new etag (a new version of the blob) is processed again and
replaces the old outputs (a new model version alone does not: delete a summary to have its
batch redone). Atomicity: the CSV is invisible until committed (a block list in blob storage,
``os.replace`` of a temporary file locally), and it is committed only after the last item; a
batch that fails part-way leaves no CSV and no summary of its own, and the outputs of an earlier
version are removed so that nothing left behind looks like this version's result.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, Protocol

import numpy as np

from shared.batch_formats import BatchReader, Chunk, Limits, read_into, safe_text
from shared.classifier import check_top_k, top_k_arrays
from shared.config import Settings
from shared.errors import EmnistEdgeError, InvalidBatch
from shared.model_loader import LoadedModel
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

# CSV text is handed to the sink in pieces of about this size (one staged block each in blob
# storage: few enough requests, little memory).
FLUSH_BYTES = 4 * 1024 * 1024
PROBABILITY_DECIMALS = 6
# Chunks read and decoded ahead of the one being classified (each a few MB at most).
READ_AHEAD_CHUNKS = 2
MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class SourceInfo:
    """What identifies one version of a batch: its name, etag and size in bytes."""

    name: str
    etag: str
    size: int


class BatchSource(Protocol):
    """Where a batch comes from (a blob, a local file)."""

    def describe(self) -> SourceInfo | None:
        """The current version, or None when the source no longer exists."""

    def open(self, info: SourceInfo) -> AbstractContextManager[BinaryIO]:
        """A stream of exactly the version ``info`` describes."""

    def read_range(self, info: SourceInfo, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` of exactly the version ``info`` describes (fewer
        only at the end); raises when the source has changed since."""


class CsvUpload(Protocol):
    """A results file being written: invisible to readers until ``commit``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ResultSink(Protocol):
    """Where results go (the results container, a local folder)."""

    def read_json(self, name: str) -> dict[str, Any] | None: ...

    def write_json(self, name: str, document: dict[str, Any]) -> None: ...

    def open_csv(self, name: str) -> CsvUpload: ...

    def delete(self, name: str) -> None: ...

    def list_names(self, prefix: str) -> list[str]:
        """The names that start with ``prefix``."""

    def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        """Stage one block of ``name`` (invisible until committed; staging an id again
        replaces it)."""

    def commit_blocks(self, name: str, block_ids: list[str]) -> None:
        """Make ``name`` the staged blocks in this order (committing the same list again gives
        the same content)."""


@dataclass(frozen=True)
class Outcome:
    """What was done with a batch: ``processed`` (summary written), ``failed`` (error
    written), ``unchanged`` (results for this etag existed), ``missing`` (the source is gone),
    ``planned`` (split into shards that the queue now carries: see ``shared.shards``)."""

    status: Literal["processed", "failed", "unchanged", "missing", "planned"]
    source: SourceInfo | None
    document: dict[str, Any] | None


@dataclass(frozen=True)
class ResultNames:
    csv: str
    summary: str
    error: str

    @classmethod
    def of(cls, batch: str) -> ResultNames:
        return cls(f"{batch}.csv", f"{batch}.summary.json", f"{batch}.error.json")


def process_batch(
    source: BatchSource,
    sink: ResultSink,
    settings: Settings,
    model: LoadedModel,
    *,
    top_k: int | None = None,
    telemetry: Telemetry | None = None,
) -> Outcome:
    """Classify every item of one batch version into results, once per etag.

    No exception of the batch's own escapes: errors of the batch itself (InvalidBatch,
    BatchTooLarge) become ``<batch>.error.json`` and a ``failed`` outcome, final for this etag,
    so a trigger does not retry it forever; anything unexpected while reading or classifying it
    is logged with its traceback and becomes a final ``internal_error`` the same way. Only the
    storage's own failures (the source or the sink raising: the network, the disk) propagate,
    so that the caller's trigger retries; they leave nothing committed. ``telemetry``: the
    process's instruments; none, nothing is recorded (``Telemetry.off``).
    """
    top_k = check_top_k(top_k or settings.batch_top_k, model)
    info = source.describe()
    if info is None:
        log.warning("batch source is gone before processing; nothing to do")
        return Outcome("missing", None, None)
    if (done := existing_result(sink, ResultNames.of(info.name), info)) is not None:
        return done
    return process_version(source, sink, info, settings, model, top_k, telemetry)


def process_version(source: BatchSource, sink: ResultSink, info: SourceInfo,
                    settings: Settings, model: LoadedModel, top_k: int,
                    telemetry: Telemetry | None = None) -> Outcome:
    """``process_batch`` for a version its caller has described, checked ``top_k`` for and
    found without results (``shared.shards.submit_batch`` has done all three already)."""
    telemetry = telemetry or Telemetry.off()
    with telemetry.batch_span(info.name, info.size) as span:
        outcome = _process(source, sink, ResultNames.of(info.name), info, settings, model,
                           top_k, telemetry)
        span.set_attribute("emnist_edge.batch.outcome", outcome.status)
        return outcome


def existing_result(sink: ResultSink, names: ResultNames, info: SourceInfo) -> Outcome | None:
    """``unchanged`` when the summary or the error of this very version exists already."""
    for existing in (names.summary, names.error):
        document = sink.read_json(existing)
        if document is not None and document.get("source", {}).get("etag") == info.etag:
            log.info("batch %s (etag %s) already has %s: nothing to do", info.name, info.etag,
                     existing)
            return Outcome("unchanged", info, document)
    return None


def _process(source: BatchSource, sink: ResultSink, names: ResultNames, info: SourceInfo,
             settings: Settings, model: LoadedModel, top_k: int,
             telemetry: Telemetry) -> Outcome:
    started = datetime.now(UTC)
    clock = time.perf_counter()
    log.info("batch %s (etag %s, %d bytes): processing", info.name, info.etag, info.size)
    try:
        with ExitStack() as stack:
            with _storage_calls():
                stream = stack.enter_context(source.open(info))
                upload = sink.open_csv(names.csv)
            counts = _classify_to_csv(_GuardedStream(stream), info, _GuardedUpload(upload),
                                      settings, model, top_k, telemetry)
    except StorageFailed as failure:
        original = failure.__cause__  # transient: raised as it came, for the trigger to retry
        raise original from original.__cause__
    except InvalidBatch as error:
        log.warning("batch %s failed (%s): %s", info.name, error.code, error.message)
        return fail_batch(sink, names, info, error)
    except Exception:
        log.exception("batch %s (etag %s): unexpected error", info.name, info.etag)
        return fail_batch(sink, names, info, EmnistEdgeError(
            "an unexpected error occurred while processing the batch; it has been logged"))

    duration = time.perf_counter() - clock
    telemetry.batch_items(counts["succeeded"], counts["errors"], counts["skipped"])
    telemetry.batch_done(duration, counts["format"])
    summary = {
        "batch": info.name,
        "results": names.csv,
        **counts,
        "top_k": top_k,
        "model": {
            "name": model.manifest.name,
            "version": model.manifest.version,
            "sha256": model.manifest.sha256,
        },
        "source": asdict(info),
        "started": iso(started),
        "finished": iso(datetime.now(UTC)),
        "duration_s": round(duration, 3),
        "items_per_s": round(counts["items"] / duration, 1) if duration > 0 else None,
    }
    sink.write_json(names.summary, summary)
    sink.delete(names.error)
    log.info("batch %s: %d items (%d failed, %d skipped) in %.1f s, %.0f items/s", info.name,
             counts["items"], counts["failed"], counts["skipped"], duration,
             summary["items_per_s"] or 0)
    return Outcome("processed", info, summary)


def fail_batch(sink: ResultSink, names: ResultNames, info: SourceInfo,
               error: EmnistEdgeError) -> Outcome:
    """The final error document for this etag; nothing left that looks like a result."""
    document = {
        "batch": info.name,
        "code": error.code,
        "message": error.message,
        "source": asdict(info),
        "time": iso(datetime.now(UTC)),
    }
    sink.write_json(names.error, document)
    sink.delete(names.summary)
    sink.delete(names.csv)
    return Outcome("failed", info, document)


class StorageFailed(Exception):
    """The source or the sink itself failed (its ``__cause__`` says how): not the batch's fault,
    so it is retried rather than written down as the batch's final error."""


@contextmanager
def _storage_calls() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise StorageFailed(str(exc)) from exc


class _GuardedStream(io.RawIOBase):
    """The source's stream, its own errors marked as storage failures (a decompressor or a
    parser reading through it raises its errors above this, unmarked)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._stream.seekable()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        with _storage_calls():
            return read_into(self._stream, buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with _storage_calls():
            return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


class _GuardedUpload:
    """The sink's CSV upload, its own errors marked as storage failures."""

    def __init__(self, upload: CsvUpload) -> None:
        self._upload = upload

    def write(self, data: bytes) -> None:
        with _storage_calls():
            self._upload.write(data)

    def commit(self) -> None:
        with _storage_calls():
            self._upload.commit()

    def abort(self) -> None:
        with _storage_calls():
            self._upload.abort()


def _classify_to_csv(
    stream: BinaryIO,
    info: SourceInfo,
    upload: CsvUpload,
    settings: Settings,
    model: LoadedModel,
    top_k: int,
    telemetry: Telemetry,
) -> dict[str, Any]:
    """Read, classify and write every chunk; commit the CSV only once all of it is written."""
    reader = BatchReader(stream, name=info.name, size=info.size,
                         limits=Limits.from_settings(settings),
                         chunk_items=settings.batch_chunk_items)
    writer = ResultWriter(upload, model.labels, top_k)
    progress = _Progress(info.name, settings.batch_progress_s)
    try:
        with closing(read_ahead(reader.chunks(), READ_AHEAD_CHUNKS)) as chunks:
            for chunk, (values, indices), started_ns in classified(chunks, model, top_k,
                                                                    settings):
                writer.write(chunk, values, indices)
                telemetry.chunk((time.perf_counter_ns() - started_ns) / 1e6)
                progress.update(writer.items)
        if writer.items == 0:
            raise no_images(reader.skipped)
        writer.close()
        upload.commit()
    except BaseException:
        upload.abort()
        raise
    return {
        "format": reader.format,
        "items": writer.items,
        "succeeded": writer.items - sum(writer.errors.values()),
        "failed": sum(writer.errors.values()),
        "skipped": reader.skipped,
        "errors": dict(writer.errors),
    }


def classified(
    chunks: Iterator[Chunk], model: LoadedModel, top_k: int, settings: Settings
) -> Iterator[tuple[Chunk, tuple[np.ndarray, np.ndarray], int]]:
    """Each chunk with the top-k probabilities and class indices of its good items, and when
    its classification started (``perf_counter_ns``)."""
    for chunk in chunks:
        started_ns = time.perf_counter_ns()
        good = chunk.good()
        tiles = chunk.tiles if good is None else chunk.tiles[good]
        yield chunk, top_k_arrays(tiles, top_k, model, settings.batch_size), started_ns


def read_ahead(chunks: Iterator[Chunk], depth: int) -> Iterator[Chunk]:
    """The same chunks, read in a background thread up to ``depth`` ahead of the consumer.

    While the model classifies one chunk (torch releases the GIL), the next is downloaded and
    decoded: the download mostly waits on the network, and its ranged GETs would otherwise
    leave the CPU idle between forward passes. The reader's errors are re-raised here, in
    order; when the consumer stops early, the thread stops after the chunk it is reading and
    closes the reader (its streams and temporary files).
    """
    handoff: queue.Queue[Chunk | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Chunk | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with closing(chunks):
                for chunk in chunks:
                    if not put(chunk):
                        return
        except BaseException as error:  # handed to the consumer, who raises it
            put(error)
            return
        put(None)

    thread = threading.Thread(target=produce, name="batch-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class ResultWriter:
    """Formats result rows with the csv module's C writer from whole columns (numpy fancy
    indexing for labels, one rounding per chunk), so the cost per item is a few C calls."""

    def __init__(self, upload: CsvUpload, labels: tuple[str, ...], top_k: int,
                 header: bool = True) -> None:
        self._upload = upload
        self._labels = np.asarray(labels, dtype=object)
        self._top_k = top_k
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        self.items = 0
        self.errors: Counter[str] = Counter()
        if header:
            self._csv.writerow(csv_header(top_k))

    def write(self, chunk: Chunk, values: np.ndarray, indices: np.ndarray) -> None:
        n = len(chunk)
        columns: list[list[Any]] = []
        rounded = np.round(values.astype(np.float64), PROBABILITY_DECIMALS)
        good = chunk.good()
        for rank in range(self._top_k):
            labels = self._labels[indices[:, rank]]
            probabilities = rounded[:, rank].astype(object)
            if good is not None:
                labels = _spread(labels, good)
                probabilities = _spread(probabilities, good)
            columns += [labels.tolist(), probabilities.tolist()]
        codes, messages = [""] * n, [""] * n
        for position, error in chunk.errors.items():
            codes[position] = error.code
            messages[position] = safe_text(error.message, MAX_MESSAGE_CHARS)
            self.errors[error.code] += 1
        self._csv.writerows(zip(chunk.ids, *columns, codes, messages, strict=True))
        self.items += n
        if self._text.tell() >= FLUSH_BYTES:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        data = self._text.getvalue().encode("utf-8")
        if data:
            self._upload.write(data)
        self._text.seek(0)
        self._text.truncate()


def no_images(skipped: int) -> InvalidBatch:
    """The error of a batch that turned out to hold no image at all."""
    return InvalidBatch(f"the batch holds no images ({skipped} archive entries skipped as not "
                        "images)" if skipped else "the batch holds no images")


def csv_header(top_k: int) -> list[str]:
    """The CSV's columns (see the module docstring)."""
    ranks = [name for r in range(2, top_k + 1) for name in (f"label_{r}", f"probability_{r}")]
    return ["item", "label", "probability", *ranks, "error_code", "error_message"]


def _spread(values: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Values of the good items placed at their positions, empty strings at the failed ones."""
    out = np.full(len(good), "", dtype=object)
    out[good] = values
    return out


class _Progress:
    """Logs items done and the rate at most every ``interval`` seconds."""

    def __init__(self, name: str, interval: float) -> None:
        self._name = name
        self._interval = interval
        self._start = self._last = time.perf_counter()

    def update(self, items: int) -> None:
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._last = now
            log.info("batch %s: %d items done, %.0f items/s", self._name, items,
                     items / (now - self._start))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def encode_document(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def decode_marker(data: bytes) -> dict[str, Any] | None:
    """A summary or error document; anything unreadable counts as absent (so it is redone)."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
