"""The local server's composition root: what each uvicorn worker process builds
(``uvicorn local.app:create --factory``): the settings, read once, the model registry, the app,
and with ``EMNIST_EDGE_METRICS`` on, OpenTelemetry's SDK and ``/metrics``."""

from __future__ import annotations

from fastapi import FastAPI, Response

from functions.http_api import create_app
from local.telemetry import install, metrics_response
from shared.config import Settings
from shared.errors import ModelLoadError
from shared.manifest import Manifest
from shared.model_loader import ModelRegistry


def model_identity(settings: Settings) -> dict[str, str]:
    """The model's name, version and sha256 from its manifest (none if it cannot be read:
    the app then reports the load error itself)."""
    try:
        manifest = Manifest.read(settings.manifest_path)
    except ModelLoadError:
        return {}
    return {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256}


def create() -> FastAPI:
    settings = Settings.from_env()
    registry = install(model_identity(settings)) if settings.metrics else None
    app = create_app(settings, ModelRegistry())
    if registry is not None:
        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            return metrics_response(registry)
    return app
