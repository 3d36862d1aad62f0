"""The batch path against a real Azurite (conftest's ``azurite``): upload -> process -> results,
redelivery, new versions, the poller, the blob function's user code and the command line."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from functools import partial
from types import SimpleNamespace

import azurefunctions.extensions.bindings.blob as blob
import numpy as np
import pytest
from azurefunctions.extensions.base import Datum

from functions.storage import QueueShards, blob_service, process_blob, shard_queue
from local.azurite import start_local_batch_stack
from local.poller import BatchPoller
from shared import batch as process_batch_module
from shared.config import REPO_ROOT, Settings
from shared.model_loader import ModelRegistry, ModelSpec
from tests.conftest import STROKES, draw_character
from tests.integration.conftest import wait_for_blob
from tests.unit.test_blob_function import indexed_batch_function

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tiny_model_files) -> Settings:
    return dataclasses.replace(Settings.from_env(), model_path=tiny_model_files[0],
                               manifest_path=tiny_model_files[1])


@pytest.fixture(scope="module")
def model(settings, models):
    return models.get(ModelSpec.of(settings))


@pytest.fixture(scope="module")
def service(azurite, settings):
    return blob_service(settings, azurite.connection_string)


@pytest.fixture(scope="module")
def shards(azurite, settings):
    return QueueShards(partial(shard_queue, settings, azurite.connection_string))


@pytest.fixture
def name() -> str:
    """A fresh batch name per test: the session's Azurite is shared."""
    return f"t-{uuid.uuid4().hex[:8]}/forms.zip"


def forms_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("p1/seven.png", draw_character(STROKES["7"]))
        archive.writestr("p1/notes.txt", b"not an image")
        archive.writestr("p2/ell.png", draw_character(STROKES["L"]))
    return buffer.getvalue()


def npy(count: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(count).integers(1, 256, (count, 28, 28), np.uint8))
    return buffer.getvalue()


def result(service, settings, name: str):
    return service.get_blob_client(settings.results_container, name)


def read_json(service, settings, name: str) -> dict:
    return json.loads(result(service, settings, name).download_blob().readall())


def test_upload_process_read_results(service, settings, model, name):
    source = service.get_blob_client(settings.batch_container, name)
    source.upload_blob(forms_zip())
    outcome = process_blob(source, settings, service, model)
    assert outcome.status == "processed"
    summary = read_json(service, settings, f"{name}.summary.json")
    assert (summary["items"], summary["skipped"], summary["format"]) == (2, 1, "zip")
    assert summary["source"]["etag"] == source.get_blob_properties().etag
    text = result(service, settings, f"{name}.csv").download_blob().readall().decode()
    assert [row["item"] for row in csv.DictReader(io.StringIO(text))] == ["p1/seven.png",
                                                                          "p2/ell.png"]
    assert result(service, settings, f"{name}.csv").get_blob_properties().content_settings[
        "content_type"].startswith("text/csv")


def test_redelivery_writes_nothing_and_a_new_version_is_redone(service, settings, model, name):
    source = service.get_blob_client(settings.batch_container, name)
    source.upload_blob(forms_zip())
    process_blob(source, settings, service, model)
    outputs = [f"{name}.csv", f"{name}.summary.json"]
    before = [result(service, settings, n).get_blob_properties() for n in outputs]

    assert process_blob(source, settings, service, model).status == "unchanged"
    after = [result(service, settings, n).get_blob_properties() for n in outputs]
    assert [(p.etag, p.last_modified) for p in after] == [(p.etag, p.last_modified)
                                                          for p in before]

    source.upload_blob(npy(4), overwrite=True)  # same name, new content: a new etag
    assert process_blob(source, settings, service, model).status == "processed"
    summary = read_json(service, settings, f"{name}.summary.json")
    assert (summary["format"], summary["items"]) == ("npy", 4)
    assert summary["source"]["etag"] == source.get_blob_properties().etag


def test_a_bad_version_replaces_results_with_an_error(service, settings, model, name):
    source = service.get_blob_client(settings.batch_container, name)
    source.upload_blob(npy(3))
    process_blob(source, settings, service, model)
    source.upload_blob(b"PK\x03\x04 not really a zip", overwrite=True)
    assert process_blob(source, settings, service, model).status == "failed"
    container = service.get_container_client(settings.results_container)
    assert [b.name for b in container.list_blobs(name_starts_with=name)] == [
        f"{name}.error.json"]
    assert read_json(service, settings, f"{name}.error.json")["code"] == "invalid_batch"


def test_the_poller_picks_up_an_upload(service, settings, model, name, models, shards):
    poller = BatchPoller(service, settings, models, shards, interval=0.1)
    poller.start()
    try:
        service.get_blob_client(settings.batch_container, name).upload_blob(npy(5))
        wait_for_blob(result(service, settings, f"{name}.summary.json"), "the poller")
    finally:
        poller.stop()
    assert read_json(service, settings, f"{name}.summary.json")["items"] == 5
    assert all(o.status == "unchanged" for o in poller.poll_once()
               if o.source and o.source.name == name)


def test_the_blob_function_against_azurite(azurite, service, settings, tiny_model_files,
                                           monkeypatch, name):
    """The user function with the BlobClient the SDK-type binding builds from the host's
    reference, its connection setting pointing at Azurite."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("EMNIST_EDGE_MODEL_PATH", str(tiny_model_files[0]))
    monkeypatch.setenv("EMNIST_EDGE_MANIFEST_PATH", str(tiny_model_files[1]))
    service.get_blob_client(settings.batch_container, name).upload_blob(forms_zip())
    reference = SimpleNamespace(version="1.0", source="AzureStorageBlobs",
                                content_type="application/json",
                                content=json.dumps({"Connection": "AzureWebJobsStorage",
                                                    "ContainerName": settings.batch_container,
                                                    "BlobName": name}))
    client = blob.BlobClientConverter.decode(Datum(reference, "model_binding_data"),
                                             trigger_metadata=None, pytype=blob.BlobClient)
    indexed_batch_function().get_user_function()(client)
    assert read_json(service, settings, f"{name}.summary.json")["items"] == 2


def test_the_batch_command_on_a_blob(azurite, service, settings, tiny_model_files, name):
    service.get_blob_client(settings.batch_container, name).upload_blob(npy(3))
    env = {**os.environ, "EMNIST_EDGE_MODEL_PATH": str(tiny_model_files[0]),
           "EMNIST_EDGE_MANIFEST_PATH": str(tiny_model_files[1])}
    url = f"{azurite.blob_endpoint}/{settings.batch_container}/{name}"
    for target, status in ((f"{settings.batch_container}/{name}", "processed"),
                           (url, "unchanged")):
        done = subprocess.run(
            [sys.executable, "-m", "shared", "batch", target, "--connection-string",
             azurite.connection_string, "--top-k", "5"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == status
    assert read_json(service, settings, f"{name}.summary.json")["top_k"] == 5


def test_the_local_stack_processes_uploads(tmp_path, tiny_model_files, monkeypatch):
    """What the local run command starts: its own Azurite with both containers, and the poller."""
    monkeypatch.setenv("EMNIST_EDGE_MODEL_PATH", str(tiny_model_files[0]))
    monkeypatch.setenv("EMNIST_EDGE_MANIFEST_PATH", str(tiny_model_files[1]))
    monkeypatch.setenv("EMNIST_EDGE_BATCH_POLL_S", "0.1")
    settings = Settings.from_env()
    stack = start_local_batch_stack(settings, ModelRegistry())
    try:
        service = blob_service(settings, stack.connection_string)
        service.get_blob_client(settings.batch_container, "a.npy").upload_blob(npy(2))
        summary = service.get_blob_client(settings.results_container, "a.npy.summary.json")
        wait_for_blob(summary, "the local stack")
    finally:
        stack.stop()
    assert stack.azurite.process.poll() is not None
    assert not stack.azurite.location.exists()


def test_the_poller_remembers_what_it_handled(service, settings, model, name, models, shards):
    """Listed etags come without quotes, a blob's properties with them: compared in one form,
    a second poll reads nothing about a blob it has handled."""
    service.get_blob_client(settings.batch_container, name).upload_blob(npy(2))
    poller = BatchPoller(service, settings, models, shards)
    assert any(o.source.name == name and o.status == "processed" for o in poller.poll_once())
    assert [o for o in poller.poll_once() if o.source and o.source.name == name] == []


def test_a_corrupt_batch_never_blocks_the_ones_after_it(service, settings, model, monkeypatch,
                                                       models, shards):
    """A batch whose reading fails unexpectedly gets a final internal_error; the poller goes
    on to the next blob in the same poll, and does not retry the failed one."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    first, second = f"{prefix}/a-bad.npy", f"{prefix}/b-good.npy"
    service.get_blob_client(settings.batch_container, first).upload_blob(npy(3))
    service.get_blob_client(settings.batch_container, second).upload_blob(npy(4))
    original = process_batch_module.BatchReader.chunks

    def chunks(self):
        if self.name == first:
            raise LookupError("a reader bug")
        return original(self)

    monkeypatch.setattr(process_batch_module.BatchReader, "chunks", chunks)
    poller = BatchPoller(service, settings, models, shards)
    outcomes = {o.source.name: o for o in poller.poll_once() if o.source.name.startswith(prefix)}
    assert outcomes[first].status == "failed"
    assert read_json(service, settings, f"{first}.error.json")["code"] == "internal_error"
    assert read_json(service, settings, f"{second}.summary.json")["items"] == 4
    assert [o for o in poller.poll_once() if o.source.name.startswith(prefix)] == []


def test_a_single_image_blob_is_read_whole(service, settings, model, name):
    """A blob download is no seekable file: the image (well over the 512 bytes sniffed to tell
    its format) must still be read to its end."""
    image = draw_character(STROKES["7"], size=400)
    assert len(image) > 512
    source = service.get_blob_client(settings.batch_container, name + ".png")
    source.upload_blob(image)
    assert process_blob(source, settings, service, model).status == "processed"
    text = result(service, settings, f"{name}.png.csv").download_blob().readall().decode()
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["label"] and not row["error_code"], row
