"""The classify API: health, readiness, the model's manifest, and ``POST /api/classify``.

Bodies are read by hand rather than declared as parameters: classify accepts four content types
on one route, and reading the stream ourselves is what lets the byte limits hold before the
body is buffered. Classify requests queue in the app's dynamic batcher
(``shared.dynamic_batcher``): those that wait together are classified together, in one forward
pass, with one thread hop (``classify_calls`` is its batch function).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.trace import Span
from starlette.background import BackgroundTask

from functions.http_errors import typed_error_response
from functions.http_runtime import API, BINARY, ERRORS, RuntimeDep
from functions.request_body import BodyKind, body_kind, parse_classify_body, read_body
from functions.schemas import ClassifyJson, ClassifyResponse, ErrorResponse, inline_schema
from shared.classifier import DEFAULT_TOP_K, check_top_k
from shared.config import Settings
from shared.errors import EmnistEdgeError
from shared.model_loader import LoadedModel
from shared.preprocess import DecodeBudget
from shared.telemetry import Telemetry
from shared.uploads import ClassifyOutcome, Upload, classify_uploads, elapsed_ms

CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": BINARY,
            "application/octet-stream": BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": BINARY["schema"]},
                        "top_k": {"type": "integer"},
                        "include_processed": {"type": "boolean"},
                    },
                },
            },
            "application/json": {"schema": inline_schema(ClassifyJson)},
        },
    }
}
TOP_K_HELP = (f"Labels per image, best first, at most the model's label count (62 for EMNIST "
              f"byclass; default {DEFAULT_TOP_K}; wins over the body's).")
PROCESSED_HELP = "Add each image's 28x28 model input as a PNG data: URL."

T = TypeVar("T")

router = APIRouter(prefix=API)


def _first(*values: T | None) -> T:
    """The first value given (query parameters win over body fields, both over defaults)."""
    return next(value for value in values if value is not None)


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

    @classmethod
    def of(cls, request: Request, kind: BodyKind, body: bytes, top_k: int | None,
           include_processed: bool | None, started_ns: int) -> ClassifyCall:
        return cls(request.url.path, kind, body, request.headers.get("content-type", ""),
                   top_k, include_processed, started_ns, elapsed_ms(started_ns),
                   trace.get_current_span())


@dataclass(frozen=True)
class _Unpacked:
    slot: int
    call: ClassifyCall
    uploads: list[Upload]
    decode_ms: float


def classify_calls(calls: Sequence[ClassifyCall], model: LoadedModel, settings: Settings,
                   telemetry: Telemetry) -> list[JSONResponse | BaseException]:
    """The dynamic batcher's batch function: each call's answer, or the typed error that
    rejects it as a whole (bad body, bad top_k). Calls asking for the same options share one
    ``classify_uploads``, so one forward pass, then each gets its own share of the results."""
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
    response = (typed_error_response(unpacked.call.path, outcome.failure, **document)
                if outcome.failure is not None else JSONResponse(document))
    # Recorded once the answer has been sent (Starlette runs a response's background task
    # then, still inside the request's span): the client does not wait for its telemetry.
    response.background = BackgroundTask(_record, telemetry, unpacked.call.span, stages,
                                         outcome.results, time.time_ns())
    return response


async def _record(telemetry: Telemetry, span: Span, stages: dict[str, float],
                  results: list[dict[str, Any]], answered_ns: int) -> None:
    """A classify answer's telemetry (async: a background task runs on the event loop, a
    plain function would be sent to a thread)."""
    telemetry.stages(stages)
    telemetry.stage_spans(span, stages, end_ns=answered_ns)
    telemetry.predictions((r["label"], r["probability"]) for r in results if "label" in r)


@router.get("/health", tags=["health"])
async def health() -> dict[str, str]:
    """Liveness: 200 while the process runs, whatever the model's state."""
    return {"status": "alive"}


@router.get("/health/ready", tags=["health"], responses={503: {"model": ErrorResponse}})
async def ready(runtime: RuntimeDep) -> dict[str, Any]:
    """Readiness: 200 once the model is loaded and warmed, 503 before (or if it failed)."""
    manifest = runtime.ready_model().manifest
    return {"status": "ready", "model": {"name": manifest.name, "version": manifest.version}}


@router.get("/model", tags=["model"], responses={503: {"model": ErrorResponse}})
async def model_info(runtime: RuntimeDep) -> dict[str, Any]:
    """The model's manifest: labels, input spec, architecture, size and test metrics."""
    return (await runtime.loaded_model()).manifest.public()


@router.post(
    "/classify",
    tags=["classify"],
    response_model=None,
    responses={200: {"model": ClassifyResponse}, **ERRORS},
    openapi_extra=CLASSIFY_BODY,
)
async def classify(
    request: Request,
    runtime: RuntimeDep,
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
    settings = runtime.settings
    kind = body_kind(request.headers.get("content-type", ""))
    limit = settings.max_json_bytes if kind is BodyKind.JSON else settings.max_body_bytes
    body = await read_body(request, limit, settings.body_timeout_s)
    return await runtime.batcher.submit(
        ClassifyCall.of(request, kind, body, top_k, include_processed, started))
