"""What the HTTP routes share, built once per app by ``create_app`` and reached by each route
through a FastAPI dependency (``RuntimeDep``), never through a module global.

Also the pieces of the OpenAPI document that several routers declare the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request

from functions.schemas import ErrorResponse
from shared.config import Settings
from shared.dynamic_batcher import DynamicBatcher
from shared.errors import ModelNotReady
from shared.model_loader import LoadedModel, ModelRegistry, ModelSpec
from shared.telemetry import Telemetry

API = "/api"
BINARY = {"schema": {"type": "string", "format": "binary"}}
ERRORS = {status: {"model": ErrorResponse} for status in (400, 408, 413, 415, 422, 503)}


@dataclass
class Runtime:
    """The app's settings, its model (through the registry), the CPU limiter and dynamic
    batcher its classify routes share, and its telemetry. ``model_error`` is set at startup
    when the model failed to load (the process serves on and says why)."""

    settings: Settings
    models: ModelRegistry
    telemetry: Telemetry
    cpu: anyio.CapacityLimiter
    batcher: DynamicBatcher  # of http_classify.ClassifyCall -> JSONResponse
    model_error: str | None = None
    spec: ModelSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = ModelSpec.of(self.settings)

    @property
    def model(self) -> LoadedModel | None:
        """The model if it is loaded; never loads."""
        return self.models.loaded(self.spec)

    def load_model(self) -> LoadedModel:
        """The model, loading it now if needed (blocking: call it in a worker thread)."""
        return self.models.get(self.spec)

    async def loaded_model(self) -> LoadedModel:
        """Loaded at startup; a process that failed then tries again here (the file may be
        fixed since)."""
        return self.model or await anyio.to_thread.run_sync(self.load_model)

    def ready_model(self) -> LoadedModel:
        """The loaded model, or 503 while it is not (readiness routes: they never load)."""
        model = self.model
        if model is None:
            raise ModelNotReady(f"the model failed to load: {self.model_error}"
                                if self.model_error else "the model is still loading")
        return model


async def runtime(request: Request) -> Runtime:
    """The app's runtime. Async, though it awaits nothing: FastAPI runs a plain function
    dependency in a worker thread, a hop there and back on every request."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime)]
