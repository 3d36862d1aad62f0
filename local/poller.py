"""The local stand-in for Event Grid: watch the batches container and process what changes.

Azure tells the blob trigger about each upload; Azurite has no Event Grid, so locally a thread
lists the container every few seconds and hands each blob whose etag it has not yet handled to
``functions.storage.submit_blob``, the very call the trigger makes (a large batch is planned
and its shards queued for ``local.shard_workers``). The etags it remembers only
save work: ``process_batch`` is idempotent by etag anyway, so a restarted poller that sees every
blob again rewrites nothing.
"""

from __future__ import annotations

import logging
import threading

from azure.storage.blob import BlobServiceClient

from functions.storage import QueueShards, quoted_etag, submit_blob
from shared.batch import Outcome
from shared.config import Settings
from shared.model_loader import ModelRegistry, ModelSpec

log = logging.getLogger(__name__)


class BatchPoller:
    """Polls one container; ``poll_once`` for tests, ``start``/``stop`` for a background thread."""

    def __init__(
        self,
        service: BlobServiceClient,
        settings: Settings,
        models: ModelRegistry,
        shards: QueueShards,
        *,
        interval: float | None = None,
    ) -> None:
        self._service = service
        self._settings = settings
        self._models = models
        self._shards = shards
        self._interval = settings.batch_poll_s if interval is None else interval
        self._container = service.get_container_client(settings.batch_container)
        self._handled: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[Outcome]:
        """Process every blob that is new or changed since it was last handled.

        A blob whose processing fails for a transient reason (storage hiccup) is not marked
        handled, so the next poll tries it again, as the trigger's retry would, and the blobs
        listed after it are still handled in this poll.
        """
        outcomes = []
        for blob in self._container.list_blobs():
            if self._handled.get(blob.name) == quoted_etag(blob.etag):
                continue
            try:
                outcome = submit_blob(
                    self._container.get_blob_client(blob.name), self._settings, self._service,
                    self._shards, self._models.get(ModelSpec.of(self._settings)),
                )
            except Exception:  # storage hiccups: one blob never holds up the others
                log.exception("batch %s: failed, will retry on the next poll", blob.name)
                continue
            if outcome.source is not None:
                self._handled[blob.name] = outcome.source.etag
            outcomes.append(outcome)
        return outcomes

    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="batch-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for the batch in progress (if any) to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        log.info("watching container %r for batches every %.1f s", self._settings.batch_container,
                 self._interval)
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # keep watching: a local stand-in must not die on one bad poll
                log.exception("batch poll failed")
            self._stop.wait(self._interval)
