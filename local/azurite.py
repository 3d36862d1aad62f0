"""Azurite, the local Azure Storage emulator, started and stopped from Python.

Azurite comes from npm, installed project-locally (``npm ci`` reads package.json and
package-lock.json at the repository root). Tests, the local run command and load tests start
their own: blob storage for batches and results, and the queue service for the shards of a
fanned-out batch (Event Grid's role is played by ``local.poller``, the queue trigger's by
``local.shard_workers``), by default on ports the OS picks (``--blobPort 0``, read back from
Azurite's own "listening at" lines, so parallel runs never race for a port), with its data in a
temporary folder. It is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from functions.storage import QueueShards, blob_service, quiet_sdk_http_logging, shard_queue
from local.poller import BatchPoller
from local.shard_workers import start_workers, stop_workers
from shared.config import REPO_ROOT, Settings
from shared.model_loader import ModelRegistry
from shared.process_tuning import tune_process

log = logging.getLogger(__name__)

AZURITE = REPO_ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account (public, documented, the same on every machine).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(
    r"(Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")
SERVICES = ("Blob", "Queue", "Table")


class AzuriteNotInstalled(RuntimeError):
    """node_modules has no Azurite: run ``npm ci`` at the repository root."""


def is_installed() -> bool:
    return AZURITE.is_file() and shutil.which("node") is not None


@dataclass
class Azurite:
    """A running Azurite: blob and queue services (and table, which nothing here uses)."""

    process: subprocess.Popen[str]
    port: int
    queue_port: int
    location: Path
    _owns_location: bool = field(default=False, repr=False)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
        )

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate by PID (then kill if it lingers) and remove a temporary data folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._owns_location:
            shutil.rmtree(self.location, ignore_errors=True)


def start_azurite(
    location: Path | None = None,
    containers: tuple[str, ...] = (),
    port: int = 0,
    timeout: float = 30.0,
    queues: tuple[str, ...] = (),
    queue_port: int = 0,
) -> Azurite:
    """Start Azurite on loopback and create ``containers`` and ``queues``.

    Ports 0 let the OS pick free ones (tests, benchmarks); 10000 and 10001, the emulator's
    usual blob and queue ports, are what ``UseDevelopmentStorage=true`` and Storage Explorer
    expect.
    """
    if not is_installed():
        raise AzuriteNotInstalled(
            f"Azurite is not installed ({AZURITE} or node missing): run `npm ci` in "
            f"{REPO_ROOT}"
        )
    owns = location is None
    location = location or Path(tempfile.mkdtemp(prefix="azurite-"))
    process = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
         "--tableHost", "127.0.0.1", "--tablePort", "0",
         "--location", str(location), "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
    ports = _wait_for_ports(process, lines, timeout)
    azurite = Azurite(process, ports["Blob"], ports["Queue"], location, owns)
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for name in containers:
            with contextlib.suppress(ResourceExistsError):
                service.create_container(name)
        queue_service = QueueServiceClient.from_connection_string(azurite.connection_string)
        for name in queues:
            with contextlib.suppress(ResourceExistsError):
                queue_service.create_queue(name)
    except BaseException:
        azurite.stop()
        raise
    log.info("Azurite blob service on %s (data in %s)", azurite.blob_endpoint, location)
    return azurite


def _drain(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Read Azurite's output for its whole life, so a full pipe never blocks it."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)


def _wait_for_ports(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout: float
) -> dict[str, int]:
    """Each service's port from its "listening at" line (printed once it accepts
    connections)."""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:  # it exited
            break
        seen.append(line)
        if match := _LISTENING.search(line):
            ports[match.group(1)] = int(match.group(2))
            if len(ports) == len(SERVICES):
                return ports
    if process.poll() is None:
        process.kill()
        process.wait()
    raise RuntimeError("Azurite did not start listening:\n" + "".join(seen[-20:]))


@dataclass
class LocalBatchStack:
    """Azurite with the batches and results containers and the shard queue, a poller that
    hands each new blob in ``batches`` to the blob trigger's code, and the worker processes
    that consume the shard queue: what Event Grid, the blob trigger and the queue trigger do
    in Azure."""

    azurite: Azurite
    poller: BatchPoller
    workers: list[multiprocessing.Process]

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def stop(self) -> None:
        self.poller.stop()
        stop_workers(self.workers)
        self.azurite.stop()


def start_local_batch_stack(
    settings: Settings, models: ModelRegistry, location: Path | None = None, port: int = 0,
) -> LocalBatchStack:
    """Start Azurite, the poller and the shard workers in the background (for the local run
    command). The queue service listens on the port after the blob port (10001 after 10000,
    as ``UseDevelopmentStorage=true`` expects), or on a free one with ``port`` 0. The poller
    runs in this process: its image memory is pooled as the workers' is."""
    tune_process()
    azurite = start_azurite(
        location, containers=(settings.batch_container, settings.results_container), port=port,
        queues=(settings.shard_queue,), queue_port=port + 1 if port else 0,
    )
    try:
        connection = azurite.connection_string
        shards = QueueShards(partial(shard_queue, settings, connection))
        poller = BatchPoller(blob_service(settings, connection), settings, models, shards)
        workers = start_workers(settings, connection)
        poller.start()
    except BaseException:
        azurite.stop()
        raise
    return LocalBatchStack(azurite, poller, workers)


def main(argv: list[str] | None = None) -> int:
    """``python -m local.azurite``: the local batch side on its own, until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m local.azurite",
        description="Start Azurite with the batches and results containers, and process each "
        "blob uploaded to batches as the blob trigger does in Azure.",
    )
    parser.add_argument("--port", type=int, default=10000,
                        help="blob port (default 10000, as UseDevelopmentStorage=true expects; "
                        "0 picks a free one)")
    parser.add_argument("--location", type=Path, help="Azurite's data folder (default: a "
                        "temporary one, removed on exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_sdk_http_logging()
    settings = Settings.from_env()
    stack = start_local_batch_stack(settings, ModelRegistry(), args.location, args.port)
    print(f"Azurite blob service: {stack.azurite.blob_endpoint}, queue service: "
          f"{stack.azurite.queue_endpoint} ({settings.batch_workers} shard workers)\n"
          f"connection string: {stack.connection_string}\n"
          f"upload batches to container {settings.batch_container!r}; results appear in "
          f"{settings.results_container!r}. Ctrl-C stops.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
