"""The load test is a client of the app like any other (issue 12): it talks HTTP and blob
storage, and runs with nothing but ``loadtests/requirements.txt``.

So it imports nothing of the app (``shared``, ``functions``, ``model``), nor of this repository's
local stand-ins, benchmarks or tests, not even lazily inside a function; and where it must agree
with the app (the result blobs' names, the settings' names and defaults), it agrees.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.blobs import ResultNames
from loadtests.settings import ClientSettings
from shared import batch
from shared.config import Settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "loadtests"
# The repository's own top-level packages, none of which the client may use.
FORBIDDEN = ("shared", "functions", "model", "local", "bench", "tests", "function_app")
# What the app needs and the client must not: it would make the load generator heavy.
HEAVY = ("torch", "numpy", "fastapi")


def modules() -> list[str]:
    return sorted("loadtests" if path.name == "__init__.py" else f"loadtests.{path.stem}"
                  for path in PACKAGE.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every import statement in a file, wherever it stands."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_no_module_of_the_client_imports_the_app_or_the_repository(path):
    assert imported_roots(path) & {*FORBIDDEN, *HEAVY} == set()


def test_the_client_imports_and_runs_alone(tmp_path):
    """Every module imported in a fresh interpreter from a copy of the package alone (the rest
    of the repository out of reach), a storage client built: nothing of the app is loaded."""
    shutil.copytree(PACKAGE, tmp_path / "loadtests",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "from loadtests.blobs import blob_service\n"
        "from loadtests.settings import ClientSettings\n"
        "blob_service(ClientSettings(storage_connection_string='UseDevelopmentStorage=true'))\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert loaded & {*FORBIDDEN, *HEAVY} == set()
    assert {"loadtests", "locust", "PIL", "azure"} <= loaded


def test_benchmarks_do_not_borrow_from_the_tests():
    for path in (REPO / "bench").glob("*.py"):
        assert "tests" not in imported_roots(path), path.name


def test_result_names_are_the_apps():
    assert ResultNames.of("a/b.zip") == ResultNames(*vars(batch.ResultNames.of("a/b.zip")).values())


@pytest.mark.parametrize("environ", [
    {},
    {"EMNIST_EDGE_FUNCTION_KEY": "k3y", "EMNIST_EDGE_BATCH_CONTAINER": "in",
     "EMNIST_EDGE_RESULTS_CONTAINER": "out", "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
    {"EMNIST_EDGE_FUNCTION_KEY": " ", "EMNIST_EDGE_BATCH_CONTAINER": "",
     "AzureWebJobsStorage__blobServiceUri": "https://a.blob.core.windows.net",
     "AzureWebJobsStorage__clientId": "id"},
])
def test_the_client_reads_the_settings_as_the_app_does(monkeypatch, environ):
    for name in ("EMNIST_EDGE_FUNCTION_KEY", "EMNIST_EDGE_BATCH_CONTAINER",
                 "EMNIST_EDGE_RESULTS_CONTAINER", "AzureWebJobsStorage",
                 "AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__clientId"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    client, app = ClientSettings.from_env(), Settings.from_env()
    # The function key is the client's alone (the Functions host checks it, not the app).
    key = environ.get("EMNIST_EDGE_FUNCTION_KEY", "").strip() or None
    assert client == ClientSettings(
        function_key=key, storage_connection_string=app.storage_connection_string,
        storage_blob_uri=app.storage_blob_uri, storage_client_id=app.storage_client_id,
        batch_container=app.batch_container, results_container=app.results_container)
    assert client.headers == ({"x-functions-key": key} if key else {})
    assert client.has_storage == bool(app.storage_connection_string or app.storage_blob_uri)


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip()):
            found[match[1].lower()] = match[2]
    return found


def test_the_clients_requirements_pin_what_the_app_pins_alike():
    client = pins(PACKAGE / "requirements.txt")
    assert {"locust", "pillow", "azure-storage-blob", "azure-identity"} <= set(client)
    assert not {"torch", "numpy", "fastapi"} & set(client)
    app = {**pins(REPO / "requirements.txt"), **pins(REPO / "requirements-dev.txt")}
    assert {name: pin for name, pin in client.items() if app.get(name, pin) != pin} == {}
    assert "-r loadtests/requirements.txt" in (REPO / "requirements-dev.txt").read_text()
