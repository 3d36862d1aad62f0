"""infra/publish.py against a local stand-in for the one-deploy endpoint (real HTTP on
127.0.0.1): what it sends, how it waits for a new role, how it follows a deployment."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("emnist_edge_publish", ROOT / "infra" / "publish.py")
publish = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = publish  # dataclasses look their module up while building classes
_spec.loader.exec_module(publish)

FAST = ["--retry-delay", "0", "--poll-interval", "0", "--poll-timeout", "5"]


class FakeKudu:
    """Answers POST /api/publish with the queued replies, then GET /api/deployments/<id>
    with the queued status records; records every request."""

    def __init__(self, uploads: list[tuple[int, str]], statuses: list[dict]):
        self.uploads, self.statuses, self.requests = list(uploads), list(statuses), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append(("POST", self.path, dict(self.headers), body))
                self._answer(*fake.uploads.pop(0))

            def do_GET(self):
                fake.requests.append(("GET", self.path, dict(self.headers), b""))
                if self.path.endswith("/log"):
                    self._answer(200, json.dumps([{"message": "Oryx build failed"}]))
                else:
                    self._answer(200, json.dumps(fake.statuses.pop(0)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "app.zip"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    return path


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("AZURE_ACCESS_TOKEN", "arm-token")


def run(kudu: FakeKudu, package: Path, *extra: str) -> int:
    try:
        return publish.main(["--scm-url", kudu.url, "--zip", str(package), *FAST, *extra])
    finally:
        kudu.close()


def test_publishes_without_remote_build_and_follows_the_deployment(package):
    kudu = FakeKudu([(202, '"dep-1"')],
                    [{"status": 1, "complete": False}, {"status": 4, "complete": True}])
    assert run(kudu, package) == 0
    method, path, headers, body = kudu.requests[0]
    assert (method, body) == ("POST", package.read_bytes())
    assert path == "/api/publish?RemoteBuild=false&Deployer=emnist-edge"
    assert headers["Authorization"] == "Bearer arm-token"
    assert headers["Content-Type"] == "application/zip"
    assert [r[1] for r in kudu.requests[1:]] == ["/api/deployments/dep-1"] * 2


@pytest.mark.parametrize("refusal", [
    (403, "Forbidden"),
    (400, '{"Message": "BlobUploadFailedException: ... Status: 403 (This request is not '
          'authorized to perform this operation using this permission.)"}'),
])
def test_retries_while_the_new_role_propagates(package, refusal, capsys):
    kudu = FakeKudu([refusal, refusal, (200, "dep-2")], [{"status": 4, "complete": True}])
    assert run(kudu, package) == 0
    assert [r[0] for r in kudu.requests] == ["POST", "POST", "POST", "GET"]
    assert capsys.readouterr().out.count("role still propagating") == 2


def test_gives_up_after_the_bounded_attempts_and_names_the_role(package, capsys):
    kudu = FakeKudu([(403, "Forbidden")] * 3, [])
    assert run(kudu, package, "--attempts", "3") == 1
    assert len(kudu.requests) == 3
    assert "Storage Blob Data Owner" in capsys.readouterr().err


def test_other_refusals_fail_at_once(package, capsys):
    kudu = FakeKudu([(401, "Unauthorized")], [])
    assert run(kudu, package) == 1
    assert len(kudu.requests) == 1
    assert "answered 401: Unauthorized" in capsys.readouterr().err


def test_a_failed_deployment_fails_the_step_with_its_log(package, capsys):
    """Flex answers 200 for a failed deployment too: the status in the body decides."""
    kudu = FakeKudu([(202, "dep-3")], [{"status": 3, "complete": True,
                                        "status_text": "Deployment failed"}])
    assert run(kudu, package) == 1
    err = capsys.readouterr().err
    assert "deployment dep-3 failed (status 3)" in err and "Oryx build failed" in err


def test_a_deployment_that_never_completes_times_out(package, capsys):
    kudu = FakeKudu([(202, "dep-4")], [{"status": 1, "complete": False}] * 1000)
    assert run(kudu, package, "--poll-timeout", "0.05", "--poll-interval", "0.01") == 1
    assert "did not complete" in capsys.readouterr().err


def test_refuses_to_start_without_a_token(package, monkeypatch, capsys):
    monkeypatch.delenv("AZURE_ACCESS_TOKEN")
    assert publish.main(["--scm-url", "http://127.0.0.1:9", "--zip", str(package)]) == 2
    assert "AZURE_ACCESS_TOKEN" in capsys.readouterr().err
