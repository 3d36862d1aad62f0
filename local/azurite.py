"""Azurite, the local Azure Storage emulator, started and stopped from Python.

Azurite comes from npm, installed project-locally (``npm ci`` reads package.json and
package-lock.json at the repository root). Tests, the local run command and load tests start
their own: the blob service only (the batch path needs no queue; Event Grid's role is played by
``local.poller``), by default on a port the OS picks (``--blobPort 0``, read back from
Azurite's own "listens on" line, so parallel runs never race for a port), with its data in a
temporary folder. It is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from functions.storage import blob_service, quiet_sdk_http_logging
from local.poller import BatchPoller
from shared.config import REPO_ROOT, Settings
from shared.model_loader import ModelRegistry

log = logging.getLogger(__name__)

AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented, the same on every machine).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(r"Blob service successfully listens on http://[^:]+:(\d+)")


class AzuriteNotInstalled(RuntimeError):
    """node_modules has no Azurite: run ``npm ci`` at the repository root."""


def is_installed() -> bool:
    return AZURITE_BLOB.is_file() and shutil.which("node") is not None


@dataclass
class Azurite:
    """A running Azurite blob service."""

    process: subprocess.Popen[str]
    port: int
    location: Path
    _owns_location: bool = field(default=False, repr=False)

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

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
) -> Azurite:
    """Start Azurite's blob service on loopback and create ``containers``.

    ``port`` 0 lets the OS pick a free one (tests, benchmarks); 10000, the emulator's usual
    port, is what ``UseDevelopmentStorage=true`` and Storage Explorer expect.
    """
    if not is_installed():
        raise AzuriteNotInstalled(
            f"Azurite is not installed ({AZURITE_BLOB} or node missing): run `npm ci` in "
            f"{REPO_ROOT}"
        )
    owns = location is None
    location = location or Path(tempfile.mkdtemp(prefix="azurite-"))
    process = subprocess.Popen(
        [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(location), "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
    azurite = Azurite(process, _wait_for_port(process, lines, timeout), location, owns)
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for name in containers:
            with contextlib.suppress(ResourceExistsError):
                service.create_container(name)
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


def _wait_for_port(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout: float
) -> int:
    """The port from Azurite's "listens on" line (printed once it accepts connections)."""
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
            return int(match.group(1))
    if process.poll() is None:
        process.kill()
        process.wait()
    raise RuntimeError("Azurite did not start listening:\n" + "".join(seen[-20:]))


@dataclass
class LocalBatchStack:
    """Azurite with the batches and results containers, and a poller that processes each new
    blob in ``batches``: what Event Grid and the blob trigger do in Azure."""

    azurite: Azurite
    poller: BatchPoller

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def stop(self) -> None:
        self.poller.stop()
        self.azurite.stop()


def start_local_batch_stack(
    settings: Settings, models: ModelRegistry, location: Path | None = None, port: int = 0
) -> LocalBatchStack:
    """Start Azurite and the poller in the background (for the local run command)."""
    azurite = start_azurite(
        location, containers=(settings.batch_container, settings.results_container), port=port
    )
    try:
        poller = BatchPoller(blob_service(settings, azurite.connection_string), settings, models)
        poller.start()
    except BaseException:
        azurite.stop()
        raise
    return LocalBatchStack(azurite, poller)


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
    print(f"Azurite blob service: {stack.azurite.blob_endpoint}\n"
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
