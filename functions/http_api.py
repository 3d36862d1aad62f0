"""The HTTP API: one ASGI app that runs unchanged under uvicorn and inside Azure Functions.

FastAPI (on Starlette) rather than bare Starlette: the OpenAPI document and interactive docs come
from the route declarations themselves, query parameters are validated and documented for free,
and it is the most used ASGI framework with uvicorn, with a mature path into Azure Functions
(``func.AsgiMiddleware``). Every route lives under ``/api``, Azure Functions' route prefix, so
the same URLs work locally and in the cloud; the page is also served at ``/`` locally.

``create_app`` assembles the module-level routers (``http_classify``, ``http_v2``,
``http_demo``, ``http_page``) around one ``Runtime`` (``http_runtime``) that they reach through
a dependency. CPU work (unpacking, preprocessing, inference) runs in worker threads, at most
``classify_concurrency`` at once, so the event loop keeps answering (health checks included)
while the model works, and concurrent requests queue instead of fighting over the cores. The
exception is a dynamic batch of single raw images, what realtime clients send (``run_batch``):
it runs on the event loop, in the same CPU slot. Each image costs a few milliseconds, and the
thread cost more than it saved: the hop there and back added about 0.6 ms to a lone request,
and the loop and the thread contending for the GIL cost 7-12 % of the requests/s at 16 and 64
clients (measured side by side, 2 workers, this 2-core machine).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from functions import http_classify, http_demo, http_page, http_v2
from functions.http_classify import ClassifyCall, classify_calls
from functions.http_errors import UnexpectedErrors, add_error_handlers
from functions.http_methods import HeadAsGet
from functions.http_runtime import API, Runtime
from functions.request_body import BodyKind
from functions.request_telemetry import RequestTelemetry
from shared.config import Settings
from shared.dynamic_batcher import DynamicBatcher
from shared.errors import ModelLoadError
from shared.model_loader import ModelRegistry
from shared.telemetry import Telemetry
from shared.uploads import elapsed_ms

DESCRIPTION = (
    "Handwritten character recognition (EMNIST byclass: 0-9, A-Z, a-z). In Azure, POST "
    "/api/classify and POST /api/v2/models/{name}/infer need a function key (header "
    "x-functions-key or ?code=); every GET route and POST /api/demo/classify (the drawing "
    "page's demo, while it is on: see GET /api/demo) are anonymous."
)

log = logging.getLogger("emnist_edge.http")


def _load_model(runtime: Runtime) -> str | None:
    """Load and warm the model; the error message if that failed (the process serves on)."""
    started = time.perf_counter_ns()
    try:
        model = runtime.load_model()
    except ModelLoadError as error:
        log.error("the model failed to load: %s", error.message)
        return error.message
    log.info("model %s %s loaded and warmed in %.0f ms",
             model.manifest.name, model.manifest.version, elapsed_ms(started))
    # What is loaded now (modules, torch, the model: ~200k objects) lives as long as the process.
    # Out of the collector's sight, a full collection no longer walks it all: that took ~100 ms,
    # a stall of every request in flight, every few seconds under load.
    gc.collect()
    gc.freeze()
    return None


async def run_batch(cpu: anyio.CapacityLimiter, calls: Sequence[ClassifyCall],
                    work: Callable[[], list[JSONResponse | BaseException]]
                    ) -> list[JSONResponse | BaseException]:
    """Where a dynamic batch runs: a batch of single raw images on the event loop, one with
    multi-image requests in a worker thread; either way in one of the ``cpu`` limiter's slots
    (the module docstring says why). The loop is held for at most the batch's images (up to
    ``dynamic_batch_max_size``), each bounded by its decoding budget: a few ms for an upload,
    about 0.2 s for the costliest image the limits let through (README, "Resource budget").
    Meanwhile new connections wait in the socket's backlog; the CPU was busy anyway."""
    if all(call.kind is BodyKind.RAW for call in calls):
        async with cpu:
            return work()
    return await anyio.to_thread.run_sync(work, limiter=cpu)


def create_app(settings: Settings, models: ModelRegistry,
               telemetry: Telemetry | None = None) -> FastAPI:
    """The app for ``settings``, its model from ``models``, recording through ``telemetry``
    (by default the global OpenTelemetry providers)."""
    telemetry = telemetry or Telemetry()
    cpu = anyio.CapacityLimiter(max(1, settings.classify_concurrency))

    def classify_batch(calls: Sequence[ClassifyCall]) -> list[JSONResponse | BaseException]:
        return classify_calls(calls, runtime.load_model(), settings, telemetry)

    batcher: DynamicBatcher[ClassifyCall, JSONResponse] = DynamicBatcher(
        classify_batch,
        max_size=settings.dynamic_batch_max_size if settings.dynamic_batching else 1,
        max_wait_s=settings.dynamic_batch_max_wait_ms / 1000 if settings.dynamic_batching else 0,
        concurrency=cpu.total_tokens,
        run=partial(run_batch, cpu),
    )
    runtime = Runtime(settings, models, telemetry, cpu, batcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.model_error = await anyio.to_thread.run_sync(_load_model, runtime)
        yield
        await batcher.close()

    app = FastAPI(
        title="emnist-edge",
        description=DESCRIPTION,
        version="1.0.0",
        openapi_url=http_page.OPENAPI_URL,
        docs_url=None,  # http_page serves them from bundled assets
        redoc_url=None,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry instrumentation (on by default since 0.16x, as soon as a
        # provider is installed) would record every request a second time: a second server
        # span (a second row of Application Insights' requests), spans per dependency and
        # endpoint, its own HTTP metrics. RequestTelemetry records what we publish.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestTelemetry, telemetry=telemetry)
    app.add_middleware(HeadAsGet)
    add_error_handlers(app)
    app.include_router(http_classify.router)
    app.include_router(http_v2.router)
    app.include_router(http_demo.info_router)
    if settings.public_demo:
        app.include_router(http_demo.classify_router)
    app.include_router(http_page.router)
    app.mount(API + "/static", StaticFiles(directory=http_page.STATIC_DIR), name="static")
    app.mount(http_page.DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    return app
