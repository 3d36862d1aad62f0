"""The queue-triggered functions of a fanned-out batch (``shared.shards``).

``classify_shard`` takes one message of the shard queue, classifies that shard with ranged
reads of the pinned blob version and stages its CSV blocks; the shard that completes the set
commits the CSV and writes the summary. Flex Consumption scales instances on the queue's
length, so a large batch runs on many instances at once. A message that fails is delivered
again (five times by default, ``extensions.queues.maxDequeueCount`` in host.json), then the
host moves it to ``<queue>-poison``, where ``fail_shard_poison`` reports the shard's items as
failed rows so that the batch still finishes ("Poison messages",
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger).

Messages are base64 text, the trigger's default encoding (``extensions.queues.messageEncoding``
is ``base64``), as ``functions.storage.shard_queue`` writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func
from azure.storage.blob import BlobServiceClient

from functions.storage import shard_parts
from shared.config import Settings
from shared.errors import InvalidBatch
from shared.model_loader import ModelRegistry, ModelSpec
from shared.shards import ShardMessage, fail_shard, run_shard
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)


def blueprint(settings: Settings, models: ModelRegistry,
              service: Callable[[], BlobServiceClient], telemetry: Telemetry) -> func.Blueprint:
    """The shard queue's function and its poison queue's, for ``settings.shard_queue``,
    recording through the app's ``telemetry``."""
    bp = func.Blueprint()

    def decoded(message: func.QueueMessage) -> ShardMessage | None:
        try:
            return ShardMessage.decode(message.get_body().decode("utf-8", "replace"))
        except InvalidBatch as error:  # not ours: retrying it would never help
            log.error("dropping a message that is no shard: %s", error.message)
            return None

    @bp.function_name("classify_shard")
    @bp.queue_trigger(arg_name="message", queue_name=settings.shard_queue,
                      connection="AzureWebJobsStorage")
    def classify_shard(message: func.QueueMessage) -> None:
        if (shard := decoded(message)) is None:
            return
        source, sink = shard_parts(shard, settings, service())
        status = run_shard(shard, source, sink, settings, models.get(ModelSpec.of(settings)),
                           instance=settings.instance, telemetry=telemetry)
        log.info("shard %d of %s: %s", shard.shard, shard.batch, status)

    @bp.function_name("fail_shard_poison")
    @bp.queue_trigger(arg_name="message", queue_name=f"{settings.shard_queue}-poison",
                      connection="AzureWebJobsStorage")
    def fail_shard_poison(message: func.QueueMessage) -> None:
        if (shard := decoded(message)) is None:
            return
        source, sink = shard_parts(shard, settings, service())
        status = fail_shard(shard, source, sink, models.get(ModelSpec.of(settings)),
                            instance=settings.instance)
        log.error("shard %d of %s failed on every delivery: %s", shard.shard, shard.batch,
                  status)

    return bp
