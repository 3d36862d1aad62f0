"""The HTTP API: one ASGI app that runs unchanged under uvicorn and inside Azure Functions.

FastAPI (on Starlette) rather than bare Starlette: the OpenAPI document and interactive docs come
from the route declarations themselves, query parameters are validated and documented for free,
and it is the most used ASGI framework with uvicorn, with a mature path into Azure Functions
(``func.AsgiMiddleware``). Every route lives under ``/api``, Azure Functions' route prefix, so
the same URLs work locally and in the cloud; the page is also served at ``/`` locally.

Bodies are read by hand rather than declared as parameters: classify accepts four content types
on one route, and reading the stream ourselves is what lets the byte limits hold before the
body is buffered. CPU work (unpacking, preprocessing, inference) runs in worker threads, at most
``classify_concurrency`` at once, so the event loop keeps answering (health checks included)
while the model works, and concurrent requests queue instead of fighting over the cores.
Classify requests queue in a dynamic batcher (``shared.dynamic_batcher``): those that wait
together are classified together, in one forward pass, with one thread hop.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from opentelemetry import trace
from opentelemetry.trace import Span
from pydantic import ValidationError
from swagger_ui_bundle import swagger_ui_path

from functions import v2_protocol
from functions.classify import ClassifyOutcome, Upload, classify_uploads, elapsed_ms
from functions.http_errors import UnexpectedErrors, add_error_handlers, typed_error_response
from functions.http_methods import HeadAsGet
from functions.request_body import BodyKind, body_kind, parse_classify_body, read_body
from functions.request_telemetry import RequestTelemetry
from functions.schemas import (
    ClassifyJson,
    ClassifyResponse,
    ErrorResponse,
    InferRequest,
    InferResponse,
    ModelMetadata,
    V2Error,
    describe_validation_errors,
    inline_schema,
)
from shared.classifier import DEFAULT_TOP_K, check_top_k
from shared.config import Settings
from shared.dynamic_batcher import DynamicBatcher
from shared.errors import (
    EmnistEdgeError,
    InvalidParameter,
    InvalidRequest,
    ModelLoadError,
    ModelNotReady,
    UnsupportedMediaType,
)
from shared.model_loader import LoadedModel, get_model, is_loaded
from shared.preprocess import DecodeBudget
from shared.telemetry import Telemetry

API = "/api"
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI 5 (OpenAPI 3.1) files from the swagger-ui-bundle-v2 package: docs work offline.
DOCS_ASSETS = API + "/docs/assets"
# The page loads nothing from elsewhere, so it can forbid everything else.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": _BINARY,
            "application/octet-stream": _BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": _BINARY["schema"]},
                        "top_k": {"type": "integer"},
                        "include_processed": {"type": "boolean"},
                    },
                },
            },
            "application/json": {"schema": inline_schema(ClassifyJson)},
        },
    }
}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(InferRequest)}},
    }
}
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 408, 413, 415, 422, 503)}
_V2_ERRORS = {status: {"model": V2Error} for status in (400, 404, 408, 413, 503)}

TOP_K_HELP = (f"Labels per image, best first, at most the model's label count (62 for EMNIST "
              f"byclass; default {DEFAULT_TOP_K}; wins over the body's).")
PROCESSED_HELP = "Add each image's 28x28 model input as a PNG data: URL."

T = TypeVar("T")

log = logging.getLogger("emnist_edge.http")


def _first(*values: T | None) -> T:
    """The first value given (query parameters win over body fields, both over defaults)."""
    return next(value for value in values if value is not None)


def _install_local_telemetry(settings: Settings) -> Any:
    """The local server's SDK (Prometheus, OTLP when configured), the loaded model's identity
    as resource attributes; imported only here, since Azure's package has no SDK of its own."""
    from functions.local_telemetry import install

    model = get_model(settings).manifest if is_loaded() else None
    return install({"name": model.name, "version": model.version, "sha256": model.sha256}
                   if model else {})


def _load_model(settings: Settings) -> str | None:
    """Load and warm the model; the error message if that failed (the process serves on)."""
    started = time.perf_counter_ns()
    try:
        model = get_model(settings)
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


@dataclass(frozen=True)
class ClassifyCall:
    """One classify request, its body read, waiting for the batcher."""

    path: str
    kind: BodyKind
    body: bytes
    content_type: str
    top_k: int | None
    include_processed: bool | None
    started_ns: int
    read_ms: float
    span: Span  # the request's server span: its stages become children of it


@dataclass(frozen=True)
class _Unpacked:
    slot: int
    call: ClassifyCall
    uploads: list[Upload]
    decode_ms: float


def classify_calls(
    calls: Sequence[ClassifyCall], settings: Settings, telemetry: Telemetry
) -> list[JSONResponse | BaseException]:
    """The dynamic batcher's batch function: each call's answer, or the typed error that
    rejects it as a whole (bad body, bad top_k). Calls asking for the same options share one
    ``classify_uploads``, so one forward pass, then each gets its own share of the results."""
    model = get_model(settings)
    telemetry.dynamic_batch(len(calls))
    answers: dict[int, JSONResponse | BaseException] = {}
    groups: dict[tuple[int, bool], list[_Unpacked]] = defaultdict(list)
    for slot, call in enumerate(calls):
        unpacking = time.perf_counter_ns()
        try:
            parsed = parse_classify_body(call.kind, call.body, call.content_type,
                                         settings.max_images)
            top_k = check_top_k(_first(call.top_k, parsed.options.top_k, DEFAULT_TOP_K), model)
        except EmnistEdgeError as error:
            answers[slot] = error
            continue
        include = _first(call.include_processed, parsed.options.include_processed, False)
        decode_ms = call.read_ms + elapsed_ms(unpacking)
        groups[top_k, include].append(_Unpacked(slot, call, parsed.uploads, decode_ms))
    for (top_k, include), members in groups.items():
        uploads = [upload for member in members for upload in member.uploads]
        budgets = [budget for member in members
                   for budget in [DecodeBudget.for_request(settings)] * len(member.uploads)]
        outcome = classify_uploads(uploads, budgets, top_k, include, model, settings)
        for member, share in zip(members, outcome.split([len(m.uploads) for m in members]),
                                 strict=True):
            answers[member.slot] = _respond(member, share, model, telemetry)
    return [answers[slot] for slot in range(len(calls))]


def _respond(unpacked: _Unpacked, outcome: ClassifyOutcome, model: LoadedModel,
             telemetry: Telemetry) -> JSONResponse:
    manifest = model.manifest
    stages = {"decode": unpacked.decode_ms, "preprocess": outcome.preprocess_ms,
              "inference": outcome.inference_ms}
    document = {
        "model": {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256},
        "results": outcome.results,
        "timings_ms": {**stages, "total": elapsed_ms(unpacked.call.started_ns)},
    }
    telemetry.stages(stages)
    telemetry.stage_spans(unpacked.call.span, stages)
    predicted = [result for result in outcome.results if "label" in result]
    telemetry.predictions([r["label"] for r in predicted], [r["probability"] for r in predicted])
    if outcome.failure is not None:
        return typed_error_response(unpacked.call.path, outcome.failure, **document)
    return JSONResponse(document)


def create_app(settings: Settings | None = None, telemetry: Telemetry | None = None) -> FastAPI:
    """The app for ``settings`` (read from the environment when not given), recording through
    ``telemetry`` (by default the global OpenTelemetry providers)."""
    settings = settings or Settings.from_env()
    telemetry = telemetry or Telemetry()
    cpu = anyio.CapacityLimiter(max(1, settings.classify_concurrency))
    batcher: DynamicBatcher[ClassifyCall, JSONResponse] = DynamicBatcher(
        partial(classify_calls, settings=settings, telemetry=telemetry),
        max_size=settings.dynamic_batch_max_size if settings.dynamic_batching else 1,
        max_wait_s=settings.dynamic_batch_max_wait_ms / 1000 if settings.dynamic_batching else 0,
        concurrency=cpu.total_tokens,
        run_in_thread=partial(anyio.to_thread.run_sync, limiter=cpu),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.model_error = await anyio.to_thread.run_sync(_load_model, settings)
        if settings.metrics:
            app.state.metrics = _install_local_telemetry(settings)
        yield
        await batcher.close()

    app = FastAPI(
        title="emnist-edge",
        description="Handwritten character recognition (EMNIST byclass: 0-9, A-Z, a-z). "
        "In Azure, POST /api/classify and POST /api/v2/models/{name}/infer need a function key "
        "(header x-functions-key or ?code=); every GET route and POST /api/demo/classify (the "
        "drawing page's demo, while it is on: see GET /api/demo) are anonymous.",
        version="1.0.0",
        openapi_url=API + "/openapi.json",
        docs_url=None,  # served below from bundled assets: FastAPI's default loads from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.model_error = None
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestTelemetry, telemetry=telemetry)
    app.add_middleware(HeadAsGet)
    add_error_handlers(app)
    app.include_router(_api_router(settings, cpu, batcher, lambda: app.state.model_error))
    app.include_router(_demo_router(settings, batcher))
    app.mount(API + "/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(API + "/docs", include_in_schema=False)
    async def interactive_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=API + "/openapi.json",
            title="emnist-edge API",
            swagger_js_url=DOCS_ASSETS + "/swagger-ui-bundle.js",
            swagger_css_url=DOCS_ASSETS + "/swagger-ui.css",
            swagger_favicon_url=DOCS_ASSETS + "/favicon-32x32.png",
        )
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    if settings.metrics:
        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            from functions.local_telemetry import metrics_response

            return metrics_response(app.state.metrics)

    @app.get("/", include_in_schema=False)
    @app.get(API, include_in_schema=False)
    @app.get(API + "/", include_in_schema=False)
    @app.get(API + "/page", include_in_schema=False)
    async def drawing_page() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    return app


def _api_router(
    settings: Settings,
    cpu: anyio.CapacityLimiter,
    batcher: DynamicBatcher[ClassifyCall, JSONResponse],
    model_error: Callable[[], str | None],
) -> APIRouter:
    router = APIRouter(prefix=API)

    def not_ready() -> ModelNotReady:
        error = model_error()
        return ModelNotReady(
            f"the model failed to load: {error}" if error else "the model is still loading"
        )

    async def loaded_model() -> LoadedModel:
        # Loaded at startup; a process that failed then tries again here (the file may be fixed).
        if is_loaded():
            return get_model(settings)
        return await anyio.to_thread.run_sync(get_model, settings)

    @router.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: 200 while the process runs, whatever the model's state."""
        return {"status": "alive"}

    @router.get("/health/ready", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def ready() -> dict[str, Any]:
        """Readiness: 200 once the model is loaded and warmed, 503 before (or if it failed)."""
        if not is_loaded():
            raise not_ready()
        manifest = get_model(settings).manifest
        return {"status": "ready", "model": {"name": manifest.name, "version": manifest.version}}

    @router.get("/model", tags=["model"], responses={503: {"model": ErrorResponse}})
    async def model_info() -> dict[str, Any]:
        """The model's manifest: labels, input spec, architecture, size and test metrics."""
        return (await loaded_model()).manifest.public()

    @router.post(
        "/classify",
        tags=["classify"],
        response_model=None,
        responses={200: {"model": ClassifyResponse}, **_ERRORS},
        openapi_extra=_CLASSIFY_BODY,
    )
    async def classify(
        request: Request,
        top_k: Annotated[int | None, Query(ge=1, description=TOP_K_HELP)] = None,
        include_processed: Annotated[bool | None, Query(description=PROCESSED_HELP)] = None,
    ) -> JSONResponse:
        """Classify one or more images of a handwritten character in one batched pass.

        Send one image as the raw body (image/* or application/octet-stream), several as
        multipart/form-data file parts, or JSON ``{"images": [base64 or data: URL, ...]}``.
        Results come back in request order; an image that fails carries its own error. The
        status is 200 if any image succeeded, else the first failure's (400, 413 or 422).
        """
        started = time.perf_counter_ns()
        content_type = request.headers.get("content-type", "")
        kind = body_kind(content_type)
        limit = settings.max_json_bytes if kind is BodyKind.JSON else settings.max_body_bytes
        body = await read_body(request, limit, settings.body_timeout_s)
        return await batcher.submit(ClassifyCall(
            request.url.path, kind, body, content_type, top_k, include_processed, started,
            elapsed_ms(started), trace.get_current_span(),
        ))

    @router.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready", tags=["v2"], responses={503: {"model": V2Error}})
    async def v2_ready() -> dict[str, bool]:
        if not is_loaded():
            raise not_ready()
        return {"ready": True}

    @router.get("/v2/models/{name}", tags=["v2"], response_model=ModelMetadata,
                responses=_V2_ERRORS)
    async def v2_metadata(name: str) -> dict[str, Any]:
        model = await loaded_model()
        v2_protocol.check_model_name(name, model)
        return v2_protocol.metadata(model)

    @router.get("/v2/models/{name}/ready", tags=["v2"], responses=_V2_ERRORS)
    async def v2_model_ready(name: str) -> dict[str, Any]:
        if not is_loaded():
            raise not_ready()
        v2_protocol.check_model_name(name, get_model(settings))
        return {"name": name, "ready": True}

    @router.post("/v2/models/{name}/infer", tags=["v2"], response_model=None,
                 responses={200: {"model": InferResponse}, **_V2_ERRORS},
                 openapi_extra=_INFER_BODY)
    async def v2_infer(name: str, request: Request) -> JSONResponse:
        """Probabilities of every label for tiles ``[N,28,28]`` (UINT8 0-255 or FP32 0-1),
        upright, white ink on black."""
        model = await loaded_model()
        v2_protocol.check_model_name(name, model)
        body = await read_body(request, settings.max_json_bytes, settings.body_timeout_s)

        def work() -> JSONResponse:
            try:
                infer_request = InferRequest.model_validate_json(body)
            except ValidationError as exc:
                raise InvalidRequest(describe_validation_errors(exc.errors())) from exc
            return JSONResponse(v2_protocol.infer(infer_request, model, settings.max_images))

        return await anyio.to_thread.run_sync(work, limiter=cpu)

    return router


DEMO_TOP_K = 3
_DEMO_BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/*": _BINARY, "application/octet-stream": _BINARY},
    }
}


def _demo_router(
    settings: Settings, batcher: DynamicBatcher[ClassifyCall, JSONResponse]
) -> APIRouter:
    """The drawing page's public demo: anonymous in Azure, so it takes one image of at most
    ``demo_max_bytes`` as the raw body and nothing else (top 3 and the model input, fixed),
    and is served only while ``public_demo`` is on. ``GET /demo`` tells the page which route
    to use, so the page never has to guess from an error."""
    router = APIRouter(prefix=API, tags=["demo"])

    @router.get("/demo")
    async def demo_info() -> dict[str, Any]:
        """Anonymous. Whether the demo route is on, and where the page classifies."""
        if settings.public_demo:
            return {"enabled": True, "classify_url": API + "/demo/classify",
                    "needs_key": False, "max_bytes": settings.demo_max_bytes}
        return {"enabled": False, "classify_url": API + "/classify", "needs_key": True}

    if not settings.public_demo:
        return router

    @router.post("/demo/classify", response_model=None,
                 responses={200: {"model": ClassifyResponse}, **_ERRORS},
                 openapi_extra=_DEMO_BODY)
    async def demo_classify(request: Request) -> JSONResponse:
        """Anonymous (no function key). One image as the raw body (image/* or
        application/octet-stream) within the demo's byte limit; the top 3 labels and the
        28x28 model input, as POST /api/classify answers them. No parameters."""
        started = time.perf_counter_ns()
        if request.query_params:
            raise InvalidParameter("the demo route takes no parameters: use /api/classify")
        content_type = request.headers.get("content-type", "")
        if body_kind(content_type) is not BodyKind.RAW:
            raise UnsupportedMediaType(
                "the demo route takes one image as the raw body (image/* or "
                "application/octet-stream)")
        body = await read_body(request, settings.demo_max_bytes, settings.body_timeout_s)
        return await batcher.submit(ClassifyCall(
            request.url.path, BodyKind.RAW, body, content_type, DEMO_TOP_K, True, started,
            elapsed_ms(started), trace.get_current_span(),
        ))

    return router


app = create_app()
