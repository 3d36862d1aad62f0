"""Blob storage as a batch source and a result sink: the Azure adapter of ``shared.batch``.

Client creation lives here only; each entry point creates its client once and passes it down
(one HTTP connection pool per process). The connection follows the Functions host's own settings for
``AzureWebJobsStorage``, so the trigger and this code always talk to the same account: a
connection string (locally Azurite, e.g. ``UseDevelopmentStorage=true``) or, in Azure,
identity-based (``AzureWebJobsStorage__blobServiceUri`` plus ``DefaultAzureCredential``, which
uses the user-assigned managed identity named by ``AzureWebJobsStorage__clientId``).
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
)
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.batch import Outcome, SourceInfo, decode_marker, encode_document, process_batch
from shared.config import Settings
from shared.model_loader import LoadedModel
from shared.shards import ShardMessage, submit_batch
from shared.telemetry import Telemetry

# Bytes per ranged GET while streaming a blob (the first GET too, which the SDK would otherwise
# make 32 MiB): fewer round trips than its 4 MiB chunks, and a small, fixed amount of memory.
DOWNLOAD_CHUNK_BYTES = 8 * 1024 * 1024
READ_BUFFER_BYTES = 1024 * 1024
JSON_CONTENT = ContentSettings(content_type="application/json")
CSV_CONTENT = ContentSettings(content_type="text/csv; charset=utf-8")


# The storage SDK logs every HTTP request and response at INFO.
SDK_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def quiet_sdk_http_logging() -> None:
    """Keep the SDK's per-request lines out of INFO logs (the Functions host ships INFO to
    Application Insights): a million-item batch would log thousands of them for a few lines of
    its own progress."""
    logging.getLogger(SDK_HTTP_LOGGER).setLevel(logging.WARNING)


class StorageNotConfigured(RuntimeError):
    """Neither a connection string nor a blob service URI is set."""


def blob_service(settings: Settings, connection_string: str | None = None) -> BlobServiceClient:
    """The account's client: from an explicit connection string, else from the host settings.
    Build it once per process and pass it on: it holds the HTTP connection pool."""
    connection_string = connection_string or settings.storage_connection_string
    options = {"max_single_get_size": DOWNLOAD_CHUNK_BYTES,
               "max_chunk_get_size": DOWNLOAD_CHUNK_BYTES}
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **options)
    if settings.storage_blob_uri:
        return BlobServiceClient(settings.storage_blob_uri, credential=_identity(settings),
                                 **options)
    raise StorageNotConfigured(
        "no storage configured: set AzureWebJobsStorage (a connection string, e.g. "
        "UseDevelopmentStorage=true for Azurite) or AzureWebJobsStorage__blobServiceUri"
    )


def _identity(settings: Settings):
    """The host's identity-based connection: the user-assigned managed identity it names."""
    from azure.identity import DefaultAzureCredential  # only identity-based needs it

    return DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)


def results_sink(settings: Settings, service: BlobServiceClient) -> BlobResultSink:
    """The results container as a sink."""
    return BlobResultSink(service.get_container_client(settings.results_container))


def process_blob(
    blob: BlobClient,
    settings: Settings,
    service: BlobServiceClient,
    model: LoadedModel,
    top_k: int | None = None,
    telemetry: Telemetry | None = None,
) -> Outcome:
    """Process one blob of the batches container into the results container (the trigger's,
    the CLI's and the poller's one call); ``top_k`` and ``telemetry`` as ``process_batch``
    takes them."""
    return process_batch(BlobSource(blob), results_sink(settings, service), settings, model,
                         top_k=top_k, telemetry=telemetry)


def shard_queue(settings: Settings, connection_string: str | None = None) -> QueueClient:
    """The shard queue's client, on the same account and credentials as ``blob_service``.
    Messages are base64 text, what the Functions queue trigger expects by default."""
    connection_string = connection_string or settings.storage_connection_string
    policy = {"message_encode_policy": TextBase64EncodePolicy(),
              "message_decode_policy": TextBase64DecodePolicy()}
    if connection_string:
        return QueueClient.from_connection_string(connection_string, settings.shard_queue,
                                                  **policy)
    if settings.storage_queue_uri:
        return QueueClient(settings.storage_queue_uri, settings.shard_queue,
                           credential=_identity(settings), **policy)
    raise StorageNotConfigured(
        "no queue storage configured: set AzureWebJobsStorage (a connection string) or "
        "AzureWebJobsStorage__queueServiceUri"
    )


class QueueShards:
    """Shard messages to a storage queue (``shared.shards.ShardQueue``), its client built at
    the first message: a batch processed in place needs no queue."""

    def __init__(self, queue: Callable[[], QueueClient]) -> None:
        self._queue = cache(queue)

    def send(self, messages: list[str]) -> None:
        queue = self._queue()
        for message in messages:
            queue.send_message(message)


def submit_blob(blob: BlobClient, settings: Settings, service: BlobServiceClient,
                queue: QueueShards, model: LoadedModel,
                telemetry: Telemetry | None = None) -> Outcome:
    """The blob trigger's call: the batch fanned out over the shard queue when it splits into
    shards (``shared.shards.submit_batch``), else processed in place; ``telemetry`` as
    ``process_batch`` takes it."""
    return submit_batch(BlobSource(blob), results_sink(settings, service), queue, settings,
                        model, telemetry=telemetry)


def shard_parts(message: ShardMessage, settings: Settings,
                service: BlobServiceClient) -> tuple[BlobSource, BlobResultSink]:
    """The source and the sink of a shard message's batch."""
    source = BlobSource(service.get_blob_client(settings.batch_container, message.batch))
    return source, results_sink(settings, service)


def quoted_etag(etag: str) -> str:
    """An etag in its one form here, quoted as HTTP writes it: the SDK gives listed blobs' etags
    without the quotes and a blob's properties with them, so compared raw they never match."""
    return '"' + etag.strip('"') + '"'


class BlobSource:
    """A blob, streamed: ranged GETs of a fixed size, pinned to the etag that was described,
    so a blob overwritten mid-read fails (and is retried) instead of mixing two versions."""

    def __init__(self, blob: BlobClient) -> None:
        self._blob = blob

    def describe(self) -> SourceInfo | None:
        try:
            properties = self._blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        return SourceInfo(self._blob.blob_name, quoted_etag(properties.etag), properties.size)

    @contextmanager
    def open(self, info: SourceInfo) -> Iterator[BinaryIO]:
        download = self._blob.download_blob(
            etag=info.etag, match_condition=MatchConditions.IfNotModified
        )
        yield io.BufferedReader(_DownloadStream(download), READ_BUFFER_BYTES)

    def read_range(self, info: SourceInfo, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self._blob.download_blob(
            offset=offset, length=length, etag=info.etag,
            match_condition=MatchConditions.IfNotModified,
        ).readall()


class _DownloadStream(io.RawIOBase):
    """A blob download as a raw stream (the SDK's downloader reads, but is no file object)."""

    def __init__(self, download: Any) -> None:
        self._download = download

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._download.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class BlobResultSink:
    """Results as blobs of one container. The CSV is staged block by block and becomes visible
    only when the block list is committed."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            data = self._container.get_blob_client(name).download_blob().readall()
        except ResourceNotFoundError:
            return None
        return decode_marker(data)

    def write_json(self, name: str, document: dict[str, Any]) -> None:
        self._container.get_blob_client(name).upload_blob(
            encode_document(document), overwrite=True, content_settings=JSON_CONTENT
        )

    def open_csv(self, name: str) -> _BlockUpload:
        return _BlockUpload(self._container.get_blob_client(name))

    def delete(self, name: str) -> None:
        with suppress(ResourceNotFoundError):
            self._container.get_blob_client(name).delete_blob()

    def list_names(self, prefix: str) -> list[str]:
        return sorted(self._container.list_blob_names(name_starts_with=prefix))

    def stage_block(self, name: str, block_id: str, data: bytes) -> None:
        self._container.get_blob_client(name).stage_block(block_id, data, length=len(data))

    def commit_blocks(self, name: str, block_ids: list[str]) -> None:
        # Each id in its latest state: uncommitted if staged again, else already committed, so
        # a second finisher's commit of the same list keeps the same content.
        self._container.get_blob_client(name).commit_block_list(
            [BlobBlock(block_id) for block_id in block_ids], content_settings=CSV_CONTENT)


class _BlockUpload:
    """Staged blocks, committed at the end. Block ids carry a per-upload prefix (all ids of a
    blob must have one length), so two writers of one name never mix blocks."""

    def __init__(self, blob: BlobClient) -> None:
        self._blob = blob
        self._prefix = uuid.uuid4().hex
        self._blocks: list[str] = []

    def write(self, data: bytes) -> None:
        block_id = f"{self._prefix}-{len(self._blocks):08d}"
        self._blob.stage_block(block_id, data, length=len(data))
        self._blocks.append(block_id)

    def commit(self) -> None:
        self._blob.commit_block_list(self._blocks, content_settings=CSV_CONTENT)

    def abort(self) -> None:
        """Nothing to undo: uncommitted blocks are never visible and storage discards them."""
