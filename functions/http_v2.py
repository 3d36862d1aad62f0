"""The Open Inference Protocol v2 routes (KServe, Triton): health, model metadata, infer.

Errors on these routes take the protocol's own shape (``functions.http_errors``); the tensor
logic is in ``functions.v2_protocol``.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from functions import v2_protocol
from functions.http_runtime import API, RuntimeDep
from functions.request_body import read_body
from functions.schemas import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    V2Error,
    describe_validation_errors,
    inline_schema,
)
from shared.errors import InvalidRequest

INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(InferRequest)}},
    }
}
V2_ERRORS = {status: {"model": V2Error} for status in (400, 404, 408, 413, 503)}

router = APIRouter(prefix=API + "/v2", tags=["v2"])


@router.get("/health/live")
async def v2_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses={503: {"model": V2Error}})
async def v2_ready(runtime: RuntimeDep) -> dict[str, bool]:
    runtime.ready_model()
    return {"ready": True}


@router.get("/models/{name}", response_model=ModelMetadata, responses=V2_ERRORS)
async def v2_metadata(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    model = await runtime.loaded_model()
    v2_protocol.check_model_name(name, model)
    return v2_protocol.metadata(model)


@router.get("/models/{name}/ready", responses=V2_ERRORS)
async def v2_model_ready(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    v2_protocol.check_model_name(name, runtime.ready_model())
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer", response_model=None,
             responses={200: {"model": InferResponse}, **V2_ERRORS}, openapi_extra=INFER_BODY)
async def v2_infer(name: str, request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Probabilities of every label for tiles ``[N,28,28]`` (UINT8 0-255 or FP32 0-1),
    upright, white ink on black."""
    model = await runtime.loaded_model()
    v2_protocol.check_model_name(name, model)
    settings = runtime.settings
    body = await read_body(request, settings.max_json_bytes, settings.body_timeout_s)

    def work() -> JSONResponse:
        try:
            infer_request = InferRequest.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest(describe_validation_errors(exc.errors())) from exc
        return JSONResponse(v2_protocol.infer(infer_request, model, settings.max_images))

    return await anyio.to_thread.run_sync(work, limiter=runtime.cpu)
