"""The local stand-in for the queue trigger: worker processes that consume the shard queue.

In Azure, ``classify_shard`` runs on as many instances as the queue's length calls for; here
``batch_workers`` processes (one per core by default) each receive one message at a time,
classify its shard with ``shared.shards.run_shard`` (the very call the trigger makes) and
delete it. A message that fails is made visible again after a short wait; once delivered
``shard_max_deliveries`` times it is poison, as the Functions host would move it to
``<queue>-poison``: its shard is reported failed (``fail_shard``) and the batch finishes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass, replace

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from functions.storage import blob_service, quiet_sdk_http_logging, shard_parts, shard_queue
from shared.config import Settings
from shared.errors import InvalidBatch
from shared.model_loader import ModelRegistry, ModelSpec
from shared.process_tuning import tune_process
from shared.shards import ShardMessage, fail_shard, run_shard

log = logging.getLogger(__name__)

# A shard of 10,000 items takes seconds; a message stays invisible this long while one worker
# has it, then comes back for another (a worker that died takes its message with it only
# until then).
VISIBILITY_S = 300
RETRY_S = 1


@dataclass
class ShardWorker:
    """One consumer: its own settings, model registry and clients (its composition root)."""

    settings: Settings
    models: ModelRegistry
    service: BlobServiceClient
    queue: QueueClient
    instance: str

    def poll_once(self) -> int:
        """Handle the messages visible now, one at a time; how many were handled."""
        handled = 0
        for message in self.queue.receive_messages(max_messages=1,
                                                   visibility_timeout=VISIBILITY_S):
            self.handle(message)
            handled += 1
        return handled

    def handle(self, message) -> None:
        try:
            shard = ShardMessage.decode(message.content)
        except InvalidBatch as error:
            log.error("dropping a message that is no shard: %s", error.message)
            self.queue.delete_message(message)
            return
        source, sink = shard_parts(shard, self.settings, self.service)
        model = self.models.get(ModelSpec.of(self.settings))
        try:
            if message.dequeue_count > self.settings.shard_max_deliveries:
                status = fail_shard(shard, source, sink, model, instance=self.instance)
            else:
                status = run_shard(shard, source, sink, self.settings, model,
                                   instance=self.instance)
        except Exception:
            log.exception("shard %d of %s (delivery %d): failed, will be retried", shard.shard,
                          shard.batch, message.dequeue_count)
            self.queue.update_message(message, visibility_timeout=RETRY_S)
            return
        log.info("shard %d of %s: %s", shard.shard, shard.batch, status)
        self.queue.delete_message(message)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                idle = self.poll_once() == 0
            except Exception:  # keep consuming: a local stand-in must not die on one bad poll
                log.exception("shard queue poll failed")
                idle = True
            if idle:
                stop.wait(self.settings.batch_poll_s)


def _worker_main(connection_string: str, poll_s: float) -> None:
    """A worker process's root: settings read here, once."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_sdk_http_logging()
    tune_process()
    settings = replace(Settings.from_env(), storage_connection_string=connection_string,
                       batch_poll_s=poll_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = ShardWorker(settings, ModelRegistry(), blob_service(settings),
                         shard_queue(settings), f"{settings.instance}:{os.getpid()}")
    worker.run(stop)


def start_workers(settings: Settings, connection_string: str) -> list[multiprocessing.Process]:
    """``settings.batch_workers`` consumer processes (spawned: no state is inherited)."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, name=f"shard-worker-{i}",
                                 args=(connection_string, settings.batch_poll_s), daemon=True)
                 for i in range(max(0, settings.batch_workers))]
    for process in processes:
        process.start()
    return processes


def stop_workers(processes: list[multiprocessing.Process], timeout: float = 30.0) -> None:
    """Ask each worker to stop after its shard, then end any that lingers."""
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker finishes its message first
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
