"""Fixtures shared by the test layers: the EMNIST directory, a tiny model, drawn characters."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The drawing helper lives with the load test's corpus; the tests import it from here.
from loadtests.corpus import STROKES as STROKES
from loadtests.corpus import draw_character as draw_character
from shared.config import MODEL_DIR, Settings


@pytest.fixture
def spng_calls(monkeypatch) -> list[tuple[bytes, str]]:
    """The PNG and output format of every call to libspng (``shared.png_decoder``) while the
    test runs; the calls still decode."""
    from shared import png_decoder

    calls: list[tuple[bytes, str]] = []
    load = png_decoder.pyspng.load
    monkeypatch.setattr(png_decoder.pyspng, "load",
                        lambda data, fmt: calls.append((data, fmt)) or load(data, fmt))
    return calls


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    raw = os.environ.get("EMNIST_DIR")
    if not raw or not Path(raw).is_dir():
        pytest.skip("EMNIST data not available: set EMNIST_DIR to the folder of the gzip IDX files")
    return Path(raw)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The defaults, as the test run's environment sets them."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def models():
    """One model registry for the session, as each entry point has one per process: models
    are keyed by path, so tests with different models share it without resetting anything."""
    from shared.model_loader import ModelRegistry

    return ModelRegistry()


@pytest.fixture(scope="session")
def shipped_model():
    from shared.model_loader import load_model

    return load_model(MODEL_DIR / "emnist_edge.pt", MODEL_DIR / "manifest.json")


# --- The HTTP service: a tiny model, and the real server in a subprocess --------------------

BYCLASS_LABELS = [*"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 62-class model of a few hundred parameters: loads in milliseconds, predicts noise."""
    import torch

    from model.architectures import EdgeNet
    from model.export import write_model

    torch.manual_seed(0)
    model_path, manifest_path, _ = write_model(
        EdgeNet((2, 2, 2), 4), tmp_path_factory.mktemp("tiny_model"), BYCLASS_LABELS
    )
    return model_path, manifest_path


def shipped_model_exists() -> bool:
    return (MODEL_DIR / "emnist_edge.pt").is_file() and (MODEL_DIR / "manifest.json").is_file()


class HttpServer:
    """A running ``python -m local.serve`` and the limits it was started with."""

    max_body_bytes = 1024 * 1024
    max_images = 8

    def __init__(self, url: str, real_model: bool) -> None:
        self.url = url
        self.real_model = real_model


@contextlib.contextmanager
def running_server(model_files: tuple[Path, Path], log_dir: Path, *args: str,
                   **settings: str) -> Iterator[str]:
    """``python -m local.serve ARGS`` on a free loopback port, with EMNIST_EDGE_* settings:
    its URL once ready; stopped by its PID on exit. Its log is ``log_dir/server-<port>.log``."""
    from local import server

    names = {"MODEL_PATH": str(model_files[0]), "MANIFEST_PATH": str(model_files[1]),
             **{name.upper(): value for name, value in settings.items()}}
    port = server.free_port()
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        try:
            started = server.start(log, names, port=port, timeout_s=60, args=args)
        except RuntimeError:
            pytest.fail(f"the server did not become ready:\n{log_path.read_text()[-3000:]}")
    try:
        yield started.url
    finally:
        server.stop(started.process)


@pytest.fixture(scope="session")
def http_server(tiny_model_files, tmp_path_factory) -> Iterator[HttpServer]:
    """The local server for the whole session, with the shipped model where it exists (else
    the tiny one), small limits so that the limit tests stay fast, and one torch thread."""
    real = shipped_model_exists()
    model_files = (
        (MODEL_DIR / "emnist_edge.pt", MODEL_DIR / "manifest.json") if real else tiny_model_files
    )
    with running_server(
        model_files, tmp_path_factory.mktemp("http_server"),
        max_body_bytes=str(HttpServer.max_body_bytes),
        max_json_bytes=str(HttpServer.max_body_bytes),
        max_images=str(HttpServer.max_images), torch_threads="1",
    ) as url:
        yield HttpServer(url, real)
