"""Faults injected into the real stack: storage going away mid-batch, a server worker killed
under load, the server told to stop under load. Each time the service must end in a correct
state: the batch completes exactly once, the worker comes back, the requests in flight are
answered.
"""

from __future__ import annotations

import csv
import dataclasses
import http.client
import io
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path

import httpx2
import numpy as np
import psutil
import pytest

from functions.storage import QueueShards, blob_service, shard_queue
from local import server
from local.azurite import is_installed, start_azurite
from local.poller import BatchPoller
from shared import batch as batch_module
from shared.config import MODEL_DIR, Settings
from shared.model_loader import ModelRegistry
from tests.conftest import shipped_model_exists
from tests.integration.conftest import wait_for_blob
from tests.payloads import PNG_7, ink

pytestmark = pytest.mark.integration

PNG = {"Content-Type": "image/png"}


def model_files(tiny_model_files) -> tuple[Path, Path]:
    if shipped_model_exists():
        return MODEL_DIR / "emnist_edge.pt", MODEL_DIR / "manifest.json"
    return tiny_model_files


# --- storage -------------------------------------------------------------------------------


def test_azurite_restarted_mid_batch_completes_the_batch_once(tiny_model_files, tmp_path,
                                                              monkeypatch):
    """Azurite (data kept in --location) is stopped as soon as the first chunk is classified and
    started again a second later; the poller, as the trigger would, carries on or retries."""
    if not is_installed():
        pytest.skip("Azurite is not installed: run `npm ci` at the repository root")
    # One batch processed in place (no fan-out): the poller itself must ride out the restart.
    settings = dataclasses.replace(Settings.from_env(), model_path=tiny_model_files[0],
                                   manifest_path=tiny_model_files[1], batch_shard_items=10**9)
    containers = (settings.batch_container, settings.results_container)
    location = tmp_path / "azurite"
    location.mkdir()
    storage = start_azurite(location, containers, port=server.free_port())
    count = 100_000  # 78 MB: about ten ranged GETs of the blob, so most of it is read after
    name = "restart/big.npy"
    first_chunk = threading.Event()
    original_write = batch_module.ResultWriter.write

    def write(self, *args, **kwargs):
        first_chunk.set()
        return original_write(self, *args, **kwargs)

    monkeypatch.setattr(batch_module.ResultWriter, "write", write)
    service = blob_service(settings, storage.connection_string)
    buffer = io.BytesIO()
    np.save(buffer, ink(count))
    service.get_blob_client(settings.batch_container, name).upload_blob(buffer.getvalue())
    unused = QueueShards(partial(shard_queue, settings, storage.connection_string))
    poller = BatchPoller(service, settings, ModelRegistry(), unused, interval=0.2)
    poller.start()
    try:
        assert first_chunk.wait(60), "the poller never started the batch"
        port = storage.port
        storage.stop()
        time.sleep(1.0)
        storage = start_azurite(location, containers, port=port)
        results = service.get_container_client(settings.results_container)
        wait_for_blob(results.get_blob_client(f"{name}.summary.json"), "the poller", 120)
    finally:
        poller.stop()
        storage.stop()
        storage = start_azurite(location, containers, port=storage.port)
    try:
        results = blob_service(settings, storage.connection_string).get_container_client(
            settings.results_container)
        assert sorted(b.name for b in results.list_blobs()) == [f"{name}.csv",
                                                                f"{name}.summary.json"]
        text = results.get_blob_client(f"{name}.csv").download_blob().readall().decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [row["item"] for row in rows] == [str(i) for i in range(count)]  # once, in order
        assert all(row["label"] and not row["error_code"] for row in rows)
    finally:
        storage.stop()


# --- the server's processes ----------------------------------------------------------------


def workers(process) -> list[psutil.Process]:
    """uvicorn's worker processes (spawned; the supervisor also has a resource tracker)."""
    found = []
    for child in psutil.Process(process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(
                    child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:  # gone while being looked at: not a worker any more
            continue
    return found


def classify_ok(client: httpx2.Client) -> bool:
    try:
        return client.post("/api/classify", content=PNG_7, headers=PNG).status_code == 200
    except httpx2.TransportError:
        return False


def test_a_killed_worker_is_replaced_and_readiness_returns(tiny_model_files, tmp_path):
    files = model_files(tiny_model_files)
    settings = {"MODEL_PATH": str(files[0]), "MANIFEST_PATH": str(files[1]),
                "TORCH_THREADS": "1"}
    with open(tmp_path / "server.log", "wb") as log, \
            server.running(log, settings, workers=2) as started:
        before = workers(started.process)
        assert len(before) == 2
        stop = threading.Event()
        answered: list[bool] = []

        def load() -> None:
            with httpx2.Client(base_url=started.url, timeout=10) as client:
                while not stop.is_set() and len(answered) < 5000:
                    answered.append(classify_ok(client))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            victim = before[0]
            os.kill(victim.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                children = workers(started.process)
                if len(children) == 2 and victim.pid not in [c.pid for c in children] and \
                        server.is_ready(started.port):
                    break
                assert time.monotonic() < deadline, "the killed worker was not replaced"
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert answered and any(answered)
        with httpx2.Client(base_url=started.url, timeout=10) as client:
            # Fresh connections reach both workers again: every one of them is answered.
            assert all(classify_ok(client) for _ in range(50))


def test_sigterm_under_load_answers_the_requests_in_flight(tiny_model_files, tmp_path):
    files = model_files(tiny_model_files)
    settings = {"MODEL_PATH": str(files[0]), "MANIFEST_PATH": str(files[1]),
                "TORCH_THREADS": "1", "MAX_IMAGES": "32"}
    # 16 requests of 32 images each, all sent in full before the signal, on one worker: most
    # of them still queued behind the first when it comes.
    body = b"".join(b"--xyz\r\nContent-Disposition: form-data; name=images; filename=%d.png\r\n"
                    b"Content-Type: image/png\r\n\r\n%s\r\n" % (i, PNG_7) for i in range(32))
    body += b"--xyz--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    with open(tmp_path / "server.log", "wb") as log:
        started = server.start(log, settings, workers=1)
        try:
            connections = [http.client.HTTPConnection("127.0.0.1", started.port, timeout=60)
                           for _ in range(16)]
            for connection in connections:
                connection.request("POST", "/api/classify", body=body, headers=headers)
            time.sleep(0.3)
            started.process.send_signal(signal.SIGTERM)
            statuses = [connection.getresponse().status for connection in connections]
            assert statuses == [200] * 16
            assert started.process.wait(timeout=60) == 0
        finally:
            server.stop(started.process)
