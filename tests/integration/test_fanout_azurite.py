"""Fan-out on real Azurite (blob and queue): the blob trigger's code plans, the queue consumer
classifies shards, and the results are those of the in-place path; redeliveries, duplicate
events, an overwritten blob and a poison shard change nothing they should not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from functools import partial

import pytest

from functions.storage import QueueShards, blob_service, process_blob, shard_queue, submit_blob
from local import shard_workers
from local.azurite import start_local_batch_stack
from local.shard_workers import ShardWorker
from shared.config import REPO_ROOT, Settings
from shared.model_loader import ModelRegistry, ModelSpec
from shared.shards import ShardMessage
from tests.conftest import STROKES, draw_character
from tests.integration.conftest import wait_for_blob
from tests.payloads import ink, npy_bytes, zip_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tiny_model_files) -> Settings:
    # Shards a multiple of the chunk: forward passes group items as in place (equal CSVs).
    return dataclasses.replace(Settings.from_env(), model_path=tiny_model_files[0],
                               manifest_path=tiny_model_files[1], batch_shard_items=6,
                               batch_chunk_items=3, batch_progress_s=0.0, batch_poll_s=0.1,
                               shard_max_deliveries=2)


@pytest.fixture(scope="module")
def service(azurite, settings):
    return blob_service(settings, azurite.connection_string)


@pytest.fixture(scope="module")
def model(settings, models):
    return models.get(ModelSpec.of(settings))


@pytest.fixture(scope="module")
def queue(azurite, settings):
    return shard_queue(settings, azurite.connection_string)


@pytest.fixture
def worker(settings, models, service, queue) -> ShardWorker:
    return ShardWorker(settings, models, service, queue, "test-worker")


def drain(worker: ShardWorker, timeout_s: float = 60) -> None:
    """Handle messages until the queue stays empty for a moment (retries come back after
    ``RETRY_S``)."""
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if worker.poll_once():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > shard_workers.RETRY_S + 1:
            return
        time.sleep(0.05)
    raise AssertionError("the shard queue did not drain")


def upload(service, settings, name: str, data: bytes):
    blob = service.get_blob_client(settings.batch_container, name)
    blob.upload_blob(data, overwrite=True)
    return blob


def result(service, settings, name: str) -> bytes:
    return service.get_blob_client(settings.results_container, name).download_blob().readall()


def submit(blob, settings, service, azurite, model):
    shards = QueueShards(partial(shard_queue, settings, azurite.connection_string))
    return submit_blob(blob, settings, service, shards, model)


def seven_zip(count: int) -> bytes:
    images = [draw_character(STROKES[c]) for c in "7LT"]
    return zip_bytes({f"p/{i:03d}.png": images[i % 3] for i in range(count)})


@pytest.mark.parametrize("data", [lambda: npy_bytes(ink(20)), lambda: seven_zip(20)],
                         ids=["npy", "zip"])
def test_a_sharded_batch_equals_the_in_place_one(data, azurite, settings, service, model,
                                                 worker):
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    payload = data()
    upload(service, settings, f"{prefix}/inplace", payload)
    in_place = process_blob(service.get_blob_client(settings.batch_container,
                                                    f"{prefix}/inplace"),
                            settings, service, model)
    assert in_place.status == "processed"
    blob = upload(service, settings, f"{prefix}/sharded", payload)
    assert submit(blob, settings, service, azurite, model).status == "planned"
    drain(worker)
    assert result(service, settings, f"{prefix}/sharded.csv") == result(
        service, settings, f"{prefix}/inplace.csv")
    summary = json.loads(result(service, settings, f"{prefix}/sharded.summary.json"))
    assert (summary["items"], summary["shards"], summary["instances"]) == (20, 4, 1)


def test_a_redelivered_message_and_a_duplicate_event_change_nothing(azurite, settings,
                                                                   service, model, worker,
                                                                   queue):
    name = f"f-{uuid.uuid4().hex[:8]}/a.npy"
    blob = upload(service, settings, name, npy_bytes(ink(20)))
    plan = submit(blob, settings, service, azurite, model).document
    drain(worker)
    csv, summary = result(service, settings, f"{name}.csv"), result(
        service, settings, f"{name}.summary.json")
    assert submit(blob, settings, service, azurite, model).status == "unchanged"
    queue.send_message(ShardMessage(name, plan["etag"], 2).encode())
    drain(worker)
    assert result(service, settings, f"{name}.csv") == csv
    assert result(service, settings, f"{name}.summary.json") == summary


def test_a_blob_overwritten_mid_run_ends_with_the_new_version_only(azurite, settings, service,
                                                                   model, worker, queue):
    name = f"f-{uuid.uuid4().hex[:8]}/a.npy"
    blob = upload(service, settings, name, npy_bytes(ink(20)))
    assert submit(blob, settings, service, azurite, model).status == "planned"
    worker.poll_once()  # one shard of the old version done
    blob = upload(service, settings, name, npy_bytes(ink(26, seed=3)))
    new = submit(blob, settings, service, azurite, model)  # the new version's own event
    drain(worker)
    summary = json.loads(result(service, settings, f"{name}.summary.json"))
    assert summary["source"]["etag"] == new.source.etag
    assert (summary["items"], summary["shards"]) == (26, 5)
    assert len(result(service, settings, f"{name}.csv").decode().splitlines()) == 27


def test_a_shard_that_keeps_failing_is_reported_and_the_batch_finishes(
        azurite, settings, service, model, worker, monkeypatch):
    name = f"f-{uuid.uuid4().hex[:8]}/a.npy"
    real = shard_workers.run_shard

    def flaky(message, *args, **kwargs):
        if message.batch == name and message.shard == 1:
            raise ConnectionError("this shard's instance keeps dying")
        return real(message, *args, **kwargs)

    monkeypatch.setattr(shard_workers, "run_shard", flaky)
    blob = upload(service, settings, name, npy_bytes(ink(20)))
    submit(blob, settings, service, azurite, model)
    drain(worker)
    summary = json.loads(result(service, settings, f"{name}.summary.json"))
    assert summary["errors"] == {"shard_failed": 6} and summary["items"] == 20
    rows = result(service, settings, f"{name}.csv").decode().splitlines()
    assert [row.split(",")[0] for row in rows if "shard_failed" in row] == [
        str(i) for i in range(6, 12)]


def test_the_local_stack_fans_out_over_worker_processes(tiny_model_files, monkeypatch):
    """What `make run` starts: Azurite with the shard queue, the poller, and worker processes
    (spawned, reading their settings from the environment as any root does)."""
    for key, value in {"MODEL_PATH": str(tiny_model_files[0]),
                       "MANIFEST_PATH": str(tiny_model_files[1]), "BATCH_SHARD_ITEMS": "6",
                       "BATCH_POLL_S": "0.1", "BATCH_WORKERS": "2"}.items():
        monkeypatch.setenv(f"EMNIST_EDGE_{key}", value)
    settings = Settings.from_env()
    stack = start_local_batch_stack(settings, ModelRegistry())
    try:
        service = blob_service(settings, stack.connection_string)
        upload(service, settings, "big.npy", npy_bytes(ink(30)))
        summary = service.get_blob_client(settings.results_container, "big.npy.summary.json")
        wait_for_blob(summary, "the local stack's shard workers", timeout_s=120)
        document = json.loads(summary.download_blob().readall())
        assert (document["items"], document["shards"]) == (30, 5)
        assert all(":" in timing["instance"] for timing in document["shard_timings"])
    finally:
        stack.stop()
    assert all(not process.is_alive() for process in stack.workers)


def test_the_status_command_follows_a_running_batch(azurite, settings, service, model, worker):
    name = f"f-{uuid.uuid4().hex[:8]}/a.npy"
    blob = upload(service, settings, name, npy_bytes(ink(20)))
    submit(blob, settings, service, azurite, model)
    worker.poll_once()

    def status() -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "shared", "status", name, "--connection-string",
             azurite.connection_string], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=60, check=True)
        return json.loads(done.stdout)

    running = status()
    assert (running["status"], running["shards"], running["shards_done"]) == ("running", 4, 1)
    drain(worker)
    assert status()["status"] == "processed"
