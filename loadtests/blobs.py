"""Blob storage as a batch client sees it: the account's client, and where a batch's results go.

The batch users upload to the batches container and read the results container like any
client of the app: with azure-storage-blob alone, from a connection string or, identity-based,
from the blob service URI and ``DefaultAzureCredential`` (the same settings the app's Functions
host reads: ``loadtests.settings``). The result names are the app's contract (README,
"Batches"): the results of ``<batch>`` are ``<batch>.csv`` and ``<batch>.summary.json``, or
``<batch>.error.json`` when the batch as a whole failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loadtests.settings import STORAGE_URI_VARIABLE, STORAGE_VARIABLE, ClientSettings

if TYPE_CHECKING:  # imported when a client is made: only batch users need the storage SDK
    from azure.storage.blob import BlobServiceClient


class StorageNotConfigured(RuntimeError):
    """Neither a connection string nor a blob service URI is set."""


def blob_service(settings: ClientSettings) -> BlobServiceClient:
    """The account's client (one per load-generator process: it holds the connection pool)."""
    from azure.storage.blob import BlobServiceClient

    if settings.storage_connection_string:
        return BlobServiceClient.from_connection_string(settings.storage_connection_string)
    if settings.storage_blob_uri:
        from azure.identity import DefaultAzureCredential  # only identity-based needs it

        credential = DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id)
        return BlobServiceClient(settings.storage_blob_uri, credential=credential)
    raise StorageNotConfigured(f"no storage configured: set {STORAGE_VARIABLE} (a connection "
                               f"string) or {STORAGE_URI_VARIABLE}")


@dataclass(frozen=True)
class ResultNames:
    """The result blobs of one batch, as the app writes them."""

    csv: str
    summary: str
    error: str

    @classmethod
    def of(cls, batch: str) -> ResultNames:
        return cls(f"{batch}.csv", f"{batch}.summary.json", f"{batch}.error.json")
