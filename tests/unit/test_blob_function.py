"""The blob-triggered function, tested as Microsoft documents for the v2 model: index the app,
check the trigger's generated metadata, and call the user function with the input the host
gives it (here an in-memory stand-in for the storage SDK's BlobClient; against real Azurite in
tests/integration/test_batch_azurite.py)."""

from __future__ import annotations

import io
import itertools
import json
import runpy
import typing
from types import SimpleNamespace

import azurefunctions.extensions.bindings.blob as blob
import numpy as np
import pytest
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError, ServiceRequestError
from azure.storage.blob import BlobClient
from azurefunctions.extensions.base import Datum

from functions import storage
from local.azurite import ACCOUNT, ACCOUNT_KEY
from shared.config import REPO_ROOT

ETAGS = itertools.count(1)


class MemoryStorage:
    """The part of the Blob API the batch path uses, over dicts: (container, name) -> blob."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.staged: dict[tuple[str, str], dict[str, bytes]] = {}
        self.writes: list[str] = []
        self.fail_downloads = False

    def put(self, container: str, name: str, data: bytes) -> None:
        self.blobs[container, name] = (data, f'"0x{next(ETAGS):X}"')

    def get_container_client(self, container: str) -> SimpleNamespace:
        return SimpleNamespace(get_blob_client=lambda name: MemoryBlob(self, container, name))


class MemoryBlob:
    def __init__(self, storage: MemoryStorage, container: str, name: str) -> None:
        self._storage, self._key = storage, (container, name)
        self.container_name, self.blob_name = container, name

    def _get(self) -> tuple[bytes, str]:
        if self._key not in self._storage.blobs:
            raise ResourceNotFoundError("BlobNotFound")
        return self._storage.blobs[self._key]

    def get_blob_properties(self) -> SimpleNamespace:
        data, etag = self._get()
        return SimpleNamespace(etag=etag, size=len(data))

    def download_blob(self, offset: int = 0, length: int | None = None, etag: str | None = None,
                      match_condition=None) -> io.BytesIO:
        if self._storage.fail_downloads:
            raise ServiceRequestError("storage unavailable")
        data, current = self._get()
        if etag is not None and etag != current:
            raise ResourceModifiedError("ConditionNotMet")
        download = io.BytesIO(data[offset : None if length is None else offset + length])
        download.readall = download.read  # the SDK downloader's name for "everything"
        return download

    def upload_blob(self, data: bytes, overwrite: bool, content_settings=None) -> None:
        self._storage.put(*self._key, data)
        self._storage.writes.append(self.blob_name)

    def stage_block(self, block_id: str, data: bytes, length: int) -> None:
        self._storage.staged.setdefault(self._key, {})[block_id] = data

    def commit_block_list(self, block_ids: list[str], content_settings=None) -> None:
        staged = self._storage.staged.pop(self._key)
        self._storage.put(*self._key, b"".join(staged[i] for i in block_ids))
        self._storage.writes.append(self.blob_name)

    def delete_blob(self) -> None:
        self._get()
        del self._storage.blobs[self._key]
        self._storage.writes.append(f"delete {self.blob_name}")


def indexed_batch_function():
    """``classify_batch`` as the worker indexes it from a fresh run of function_app.py (one
    FunctionApp indexes only once, and the HTTP tests index the imported one)."""
    app = runpy.run_path(str(REPO_ROOT / "function_app.py"))["app"]
    [function] = [f for f in app.get_functions() if f.get_function_name() == "classify_batch"]
    return function


@pytest.fixture(scope="module")
def function():
    return indexed_batch_function()


@pytest.fixture
def memory(monkeypatch, tiny_model_files) -> MemoryStorage:
    """Storage in memory behind ``functions.storage.blob_service``, and the tiny model, for the
    function that ``run`` indexes afresh."""
    memory = MemoryStorage()
    monkeypatch.setattr(storage, "blob_service", lambda settings, connection=None: memory)
    monkeypatch.setenv("EMNIST_EDGE_MODEL_PATH", str(tiny_model_files[0]))
    monkeypatch.setenv("EMNIST_EDGE_MANIFEST_PATH", str(tiny_model_files[1]))
    return memory


@pytest.fixture
def run(memory):
    """The user function of ``classify_batch`` from a fresh run of function_app.py, whose
    composition root now builds the memory storage and the tiny model."""
    return indexed_batch_function().get_user_function()


def npy(count: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).integers(1, 256, (count, 28, 28), dtype=np.uint8))
    return buffer.getvalue()


def test_trigger_metadata(function):
    [binding] = json.loads(function.get_function_json())["bindings"]
    assert binding == {"direction": "IN", "type": "blobTrigger", "name": "client",
                       "path": "batches/{name}", "connection": "AzureWebJobsStorage",
                       "source": "EventGrid"}
    assert not function.is_http_function()


def test_the_parameter_is_an_sdk_type_binding(function):
    """What the Python worker decides at indexing: the annotation is the extension's BlobClient,
    so the host is asked for a reference (deferred binding), not for the blob's bytes."""
    user_function = function.get_user_function()
    annotation = typing.get_type_hints(user_function)["client"]
    assert annotation is blob.BlobClient
    assert blob.BlobClientConverter.check_input_type_annotation(annotation)
    input_types = {"client": SimpleNamespace(binding_name="blobTrigger", pytype=annotation)}
    [raw], _ = blob.BlobClientConverter.get_raw_bindings(function, input_types)
    assert json.loads(raw)["properties"] == {"SupportsDeferredBinding": True}


def test_the_extension_turns_the_hosts_reference_into_a_blob_client(monkeypatch):
    """The host sends model binding data naming the connection, container and blob; the
    extension builds the storage SDK client the function receives."""
    monkeypatch.setenv("AzureWebJobsStorage", (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:1/{ACCOUNT};"))
    reference = SimpleNamespace(version="1.0", source="AzureStorageBlobs",
                                content_type="application/json",
                                content=json.dumps({"Connection": "AzureWebJobsStorage",
                                                    "ContainerName": "batches",
                                                    "BlobName": "forms/a.zip"}))
    client = blob.BlobClientConverter.decode(Datum(reference, "model_binding_data"),
                                             trigger_metadata=None, pytype=blob.BlobClient)
    assert isinstance(client, BlobClient)
    assert (client.container_name, client.blob_name) == ("batches", "forms/a.zip")


def test_an_upload_becomes_results(run, memory):
    memory.put("batches", "digits.npy", npy(5))
    run(MemoryBlob(memory, "batches", "digits.npy"))
    summary = json.loads(memory.blobs["results", "digits.npy.summary.json"][0])
    assert (summary["items"], summary["succeeded"]) == (5, 5)
    assert summary["source"]["etag"] == memory.blobs["batches", "digits.npy"][1]
    lines = memory.blobs["results", "digits.npy.csv"][0].decode().splitlines()
    assert lines[0].startswith("item,label,probability,") and len(lines) == 6
    assert memory.writes[-1] == "digits.npy.summary.json"  # the completion marker comes last


def test_a_redelivered_event_writes_nothing(run, memory):
    memory.put("batches", "a.npy", npy(2))
    trigger = MemoryBlob(memory, "batches", "a.npy")
    run(trigger)
    written = list(memory.writes)
    run(trigger)
    assert memory.writes == written


def test_a_bad_batch_is_final_and_does_not_raise(run, memory):
    memory.put("batches", "junk.bin", b"junk")
    run(MemoryBlob(memory, "batches", "junk.bin"))
    error = json.loads(memory.blobs["results", "junk.bin.error.json"][0])
    assert error["code"] == "invalid_batch"
    assert ("results", "junk.bin.csv") not in memory.blobs


def test_storage_trouble_raises_so_the_trigger_retries(run, memory):
    memory.put("batches", "a.npy", npy(2))
    memory.fail_downloads = True
    with pytest.raises(ServiceRequestError):
        run(MemoryBlob(memory, "batches", "a.npy"))
    assert not [key for key in memory.blobs if key[0] == "results"]


def test_a_blob_deleted_before_processing_is_nothing_to_do(run, memory):
    run(MemoryBlob(memory, "batches", "gone.zip"))
    assert memory.writes == []
