"""The local server's composition root: what each uvicorn worker process builds
(``uvicorn local.app:create --factory``): the settings, read once, the model registry, the app,
and with ``EMNIST_EDGE_METRICS`` on, OpenTelemetry's SDK and ``/metrics``."""

from __future__ import annotations

from fastapi import FastAPI, Response

from functions.http_api import create_app
from local.telemetry import install, metrics_response
from shared.config import Settings
from shared.model_loader import ModelRegistry
from shared.process_tuning import tune_process
from shared.telemetry import model_identity


def create() -> FastAPI:
    settings = Settings.from_env()
    tune_process()
    registry = install(model_identity(settings.manifest_path)) if settings.metrics else None
    app = create_app(settings, ModelRegistry())
    if registry is not None:
        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            return metrics_response(registry)
    return app
