"""The README's main command (``local.serve --batch``): the server plus Azurite and the
poller, so that a blob uploaded to ``batches`` gets results as it would in Azure."""

from __future__ import annotations

import io
import json
import re
import socket
from urllib.parse import urlsplit

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient

from local.azurite import is_installed
from tests.conftest import running_server
from tests.integration.conftest import wait_for_blob

pytestmark = pytest.mark.integration


def test_main_command_processes_an_uploaded_batch_and_stops_azurite(tiny_model_files, tmp_path):
    if not is_installed():
        pytest.skip("Azurite is not installed: run `npm ci` at the repository root")
    with running_server(tiny_model_files, tmp_path, "--batch", "--batch-port", "0"):
        log = next(tmp_path.glob("server-*.log")).read_text()
        connection = re.search(r"connection string: ([^)]+)\)", log).group(1)
        service = BlobServiceClient.from_connection_string(connection)
        buffer = io.BytesIO()
        np.save(buffer, np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))
        service.get_container_client("batches").upload_blob("three.npy", buffer.getvalue())
        results = service.get_container_client("results")
        wait_for_blob(results.get_blob_client("three.npy.summary.json"), "the poller")
        summary = json.loads(results.download_blob("three.npy.summary.json").readall())
        assert (summary["items"], summary["succeeded"]) == (3, 3)
        endpoint = urlsplit(service.url)
    with pytest.raises(OSError):  # the server's exit stopped Azurite too
        socket.create_connection((endpoint.hostname, endpoint.port), timeout=2).close()
