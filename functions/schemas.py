"""Pydantic models of the HTTP API's JSON documents.

The request models validate what clients send (and turn into 400s with readable messages); the
response models are what the OpenAPI document shows. Responses are built as plain dicts from
the core's own ``to_dict`` methods and checked against these models by the unit tests, so the
documentation cannot drift from what the service answers without a test failing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def describe_validation_errors(errors: list[Any]) -> str:
    """Pydantic's error list -> one sentence a person can act on (location: problem; ...)."""
    parts = []
    for error in errors[:3]:
        location = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        parts.append(f"{location}: {error['msg']}" if location else error["msg"])
    more = len(errors) - 3
    return "; ".join(parts) + (f" (and {more} more problems)" if more > 0 else "")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place: pasted into an OpenAPI
    operation, pydantic's ``#/$defs/...`` references would point at nothing (the document's
    root has no ``$defs``). The request models nest without cycles, so inlining ends."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


class ClassifyOptions(BaseModel):
    """Options of a classify request that may travel in its body (form fields or JSON)."""

    top_k: int | None = Field(None, description="Labels per image (a query top_k wins).")
    include_processed: bool | None = Field(
        None, description="Add each image's 28x28 model input as a PNG data: URL."
    )


class ClassifyJson(ClassifyOptions):
    """``POST /api/classify`` with ``Content-Type: application/json``."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(
        min_length=1,
        description="Each image as base64 or as a data: URL (data:image/png;base64,...).",
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine code, e.g. invalid_image, blank_image.")
    message: str = Field(description="What went wrong, in words.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class RankedLabel(BaseModel):
    label: str
    probability: float


class ModelRef(BaseModel):
    name: str
    version: str
    sha256: str


class ImageResult(BaseModel):
    """One image's answer: a prediction, or an error that concerns this image alone."""

    index: int = Field(description="Position of the image in the request.")
    name: str | None = Field(description="The uploaded file's name, where the request had one.")
    label: str | None = None
    probability: float | None = None
    top_k: list[RankedLabel] | None = None
    processed: str | None = Field(
        None, description="The 28x28 model input, upright, as a PNG data: URL (if asked for)."
    )
    error: ErrorDetail | None = None


class Timings(BaseModel):
    decode: float = Field(description="Reading and unpacking the request body (ms).")
    preprocess: float = Field(description="Decoding images and normalising them to 28x28 (ms).")
    inference: float = Field(description="One batched forward pass and top-k (ms).")
    total: float = Field(
        description="From the start of the request to the answer, including any wait for a "
        "free worker while other requests are classified (ms)."
    )


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[ImageResult]
    timings_ms: Timings
    error: ErrorDetail | None = Field(
        None, description="Only when every image failed: the first failure (also the status)."
    )


class InferInput(BaseModel):
    """An Open Inference Protocol v2 input tensor."""

    name: str = Field(description='Must be "input".')
    shape: list[int] = Field(description="[N, 28, 28] or [N, 1, 28, 28].")
    datatype: str = Field(description="UINT8 (0-255) or FP32 (0-1).")
    data: list[Any] = Field(description="Row-major values, flat or nested.")
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``POST /api/v2/models/{name}/infer``: tiles upright, white ink on black."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class InferOutput(TensorMetadata):
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class V2Error(BaseModel):
    error: str
