"""The Open Inference Protocol (KServe v2 / Triton REST) over the served model.

Clients that already speak v2 send tensors of 28x28 tiles and get the probability of every
label back, with no image decoding or preprocessing on the way: the tiles must already be
upright, white ink on black, as the page's preview shows them. Errors are the core's typed
errors (InvalidRequest, ModelNotFound, PayloadTooLarge); the HTTP layer renders them in v2's
``{"error": "..."}`` shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from functions.schemas import InferRequest
from shared.errors import InvalidRequest, ModelNotFound, PayloadTooLarge
from shared.model_loader import LoadedModel

PLATFORM = "pytorch_torchscript"
INPUT = "input"
OUTPUT = "probabilities"
# Datatype -> the factor that brings its values to the tiles' 0-255 scale.
DATATYPES = {"UINT8": 1.0, "FP32": 255.0}
_RANGES = {"UINT8": "integers 0-255", "FP32": "numbers 0-1"}


def check_model_name(name: str, model: LoadedModel) -> None:
    if name != model.manifest.name:
        raise ModelNotFound(f"no model named {name!r}; this server serves {model.manifest.name!r}")


def metadata(model: LoadedModel) -> dict[str, Any]:
    manifest = model.manifest
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": "UINT8", "shape": [-1, 28, 28]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(model.labels)]}],
    }


def tiles_from_input(request: InferRequest, max_images: int) -> np.ndarray:
    """The request's one input tensor as float32 tiles ``[N,28,28]`` on the 0-255 scale."""
    tensor = request.inputs[0]
    if tensor.name != INPUT:
        raise InvalidRequest(f"unknown input {tensor.name!r}: the model's input is {INPUT!r}")
    for output in request.outputs or ():
        if output.name != OUTPUT:
            raise InvalidRequest(f"unknown output {output.name!r}: the only output is {OUTPUT!r}")
    if tensor.datatype not in DATATYPES:
        raise InvalidRequest(
            f"datatype {tensor.datatype!r} is not supported: use {' or '.join(DATATYPES)}"
        )
    shape = tensor.shape
    if not (shape[1:] == [28, 28] or shape[1:] == [1, 28, 28]) or shape[0] < 1:
        raise InvalidRequest(f"shape {shape} is not [N, 28, 28] or [N, 1, 28, 28] with N >= 1")
    if shape[0] > max_images:
        raise PayloadTooLarge(f"batch of {shape[0]} tiles: at most {max_images} per request")
    try:
        values = np.asarray(tensor.data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"data is not a regular array of numbers: {exc}") from exc
    # JSON numbers only: strings ("1"), booleans and integers too large for any number type
    # (numpy keeps those as objects) are refused rather than coerced.
    if values.dtype.kind not in "iuf":
        raise InvalidRequest("data must hold only JSON numbers (no strings, booleans or null)")
    values = values.astype(np.float64)
    if values.size != math.prod(shape):
        raise InvalidRequest(
            f"data holds {values.size} values, but shape {shape} needs {math.prod(shape)}"
        )
    scale = DATATYPES[tensor.datatype]
    in_range = np.isfinite(values).all() and values.min() >= 0 and values.max() * scale <= 255
    if not in_range or (tensor.datatype == "UINT8" and not (values == np.round(values)).all()):
        raise InvalidRequest(f"{tensor.datatype} data must be {_RANGES[tensor.datatype]}")
    return (values.reshape(shape[0], 28, 28) * scale).astype(np.float32)


def infer(request: InferRequest, model: LoadedModel, max_images: int) -> dict[str, Any]:
    tiles = tiles_from_input(request, max_images)
    probabilities = model.probabilities(tiles)
    response: dict[str, Any] = {
        "model_name": model.manifest.name,
        "model_version": model.manifest.version,
        "outputs": [
            {
                "name": OUTPUT,
                "shape": list(probabilities.shape),
                "datatype": "FP32",
                "data": probabilities.flatten().tolist(),
            }
        ],
    }
    if request.id is not None:
        response["id"] = request.id
    return response
