"""The drawing page's public demo: anonymous in Azure, so ``POST /api/demo/classify`` takes one
image of at most ``demo_max_bytes`` as the raw body and nothing else (top 3 and the model
input, fixed), and is served only while ``public_demo`` is on (``create_app`` includes
``classify_router`` only then). ``GET /api/demo`` tells the page which route to use, so the
page never has to guess from an error."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from functions.http_classify import ClassifyCall
from functions.http_runtime import API, BINARY, ERRORS, RuntimeDep
from functions.request_body import BodyKind, body_kind, read_body
from functions.schemas import ClassifyResponse
from shared.errors import InvalidParameter, UnsupportedMediaType

DEMO_TOP_K = 3
DEMO_BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/*": BINARY, "application/octet-stream": BINARY},
    }
}

info_router = APIRouter(prefix=API, tags=["demo"])
classify_router = APIRouter(prefix=API, tags=["demo"])


@info_router.get("/demo")
async def demo_info(runtime: RuntimeDep) -> dict[str, Any]:
    """Anonymous. Whether the demo route is on, and where the page classifies."""
    settings = runtime.settings
    if settings.public_demo:
        return {"enabled": True, "classify_url": API + "/demo/classify",
                "needs_key": False, "max_bytes": settings.demo_max_bytes}
    return {"enabled": False, "classify_url": API + "/classify", "needs_key": True}


@classify_router.post("/demo/classify", response_model=None,
                      responses={200: {"model": ClassifyResponse}, **ERRORS},
                      openapi_extra=DEMO_BODY)
async def demo_classify(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Anonymous (no function key). One image as the raw body (image/* or
    application/octet-stream) within the demo's byte limit; the top 3 labels and the
    28x28 model input, as POST /api/classify answers them. No parameters."""
    started = time.perf_counter_ns()
    if request.query_params:
        raise InvalidParameter("the demo route takes no parameters: use /api/classify")
    if body_kind(request.headers.get("content-type", "")) is not BodyKind.RAW:
        raise UnsupportedMediaType(
            "the demo route takes one image as the raw body (image/* or "
            "application/octet-stream)")
    settings = runtime.settings
    body = await read_body(request, settings.demo_max_bytes, settings.body_timeout_s)
    return await runtime.batcher.submit(
        ClassifyCall.of(request, BodyKind.RAW, body, DEMO_TOP_K, True, started))
