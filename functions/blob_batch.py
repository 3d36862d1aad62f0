"""The blob-triggered function: a batch lands in the batches container -> result blobs.

Event Grid source, the only kind Flex Consumption runs: the storage account's BlobCreated
event is pushed to the host, which invokes this function once per event (at least once: a
redelivery is expected, and ``process_batch`` makes it a no-op by etag).

The blob arrives as an SDK-type binding (``azurefunctions-extensions-bindings-blob``): the host
passes only a reference, and the function gets an ``azure.storage.blob.BlobClient`` built from
the same ``AzureWebJobsStorage`` connection (identity-based in Azure). Reading goes through
that client as a stream, so a batch's size is never bounded by the worker's memory or by the
host's gRPC message limit, as ``func.InputStream`` (the whole blob in one message) would be.

The container path is resolved from the settings the app is built with, with ``batches`` as the
default, rather than a ``%APP_SETTING%`` binding expression: an expression fails indexing
wherever the setting is missing, and a default keeps local runs and tests working unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
from azure.storage.blob import BlobServiceClient

from functions.storage import QueueShards, submit_blob
from shared.config import Settings
from shared.model_loader import ModelRegistry, ModelSpec
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)


def blueprint(settings: Settings, models: ModelRegistry,
              service: Callable[[], BlobServiceClient], shards: QueueShards,
              telemetry: Telemetry) -> func.Blueprint:
    """The blob-triggered function for ``settings``' batches container, classifying with the
    model from ``models``, writing results through ``service()``, queueing the shards of a
    large batch through ``shards`` (clients built on first use: indexing needs no storage
    settings) and recording through the app's ``telemetry``."""
    bp = func.Blueprint()

    @bp.function_name("classify_batch")
    @bp.blob_trigger(
        arg_name="client",
        path=f"{settings.batch_container}/{{name}}",
        connection="AzureWebJobsStorage",
        source=func.BlobSource.EVENT_GRID,
    )
    def classify_batch(client: blob.BlobClient) -> None:
        """Classify one uploaded batch into the results container, or, when it splits into
        shards (``shared.shards``), plan it and queue them for ``classify_shard``.

        Errors of the batch (unreadable, over a limit) are written as ``<name>.error.json`` and
        the invocation succeeds, so it is not retried; anything else (storage unavailable, the
        model failing to load) propagates. Event Grid is not involved by then: the blob
        extension acknowledged the event when it queued it, so the blob trigger's own retries
        apply (five attempts by default, ``extensions.blobs.maxDequeueCount`` in host.json),
        after which a message names the blob in the ``webjobs-blobtrigger-poison`` queue
        ("Poison blobs", https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-blob-trigger).
        Event Grid's retries and its ``deadletter`` container
        (infra/app/eventgrid-subscription.bicep) cover only deliveries the webhook did not
        accept.
        """
        outcome = submit_blob(client, settings, service(), shards,
                              models.get(ModelSpec.of(settings)), telemetry)
        log.info("batch %s: %s", client.blob_name, outcome.status)

    return bp
