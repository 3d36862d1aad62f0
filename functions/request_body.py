"""Request bodies: read within a byte limit, and a classify request unpacked from any of its forms.

The body is read from the stream chunk by chunk and refused as soon as it passes the limit (or
before the first byte, when Content-Length already says so), so no client can make the server
buffer more than the limit. Unpacking is synchronous and CPU-bound (base64, multipart), so the
caller runs it off the event loop.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum

import anyio
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request

from functions.multipart import parse_multipart
from functions.schemas import ClassifyJson, ClassifyOptions, describe_validation_errors
from shared.batch_formats import safe_text
from shared.errors import (
    InvalidParameter,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from shared.uploads import Upload

ACCEPTED = (
    "one image as image/* or application/octet-stream, images as multipart/form-data file "
    'parts, or application/json {"images": ["<base64>", ...]}'
)
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


class BodyKind(StrEnum):
    RAW = "raw"
    MULTIPART = "multipart"
    JSON = "json"


@dataclass(frozen=True)
class ClassifyBody:
    uploads: list[Upload]
    options: ClassifyOptions


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_image_type(media: str) -> bool:
    """Whether a media type is one a single image may be sent as (content decides the format)."""
    return media.startswith("image/") or media == "application/octet-stream"


def body_kind(content_type: str | None) -> BodyKind:
    """Which form a classify body takes, from its Content-Type; raises UnsupportedMediaType."""
    media = media_type(content_type)
    if media == "application/json" or media.endswith("+json"):
        return BodyKind.JSON
    if media == "multipart/form-data":
        return BodyKind.MULTIPART
    if is_image_type(media):
        return BodyKind.RAW
    raise UnsupportedMediaType(
        f"cannot read a body of type {media or '(no Content-Type)'}: send {ACCEPTED}"
    )


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed ``limit`` bytes, or
    RequestTimeout when it has not all arrived within ``timeout_s`` seconds."""
    too_large = PayloadTooLarge(f"the request body is larger than the {limit} bytes allowed")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise InvalidRequest(f"the Content-Length header {declared!r} is not a byte count")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    received = 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s ({received} bytes came)"
        ) from exc
    except ClientDisconnect as exc:
        raise InvalidRequest("the client closed the connection before sending the body") from exc
    return b"".join(chunks)


def parse_classify_body(
    kind: BodyKind, body: bytes, content_type: str, max_images: int
) -> ClassifyBody:
    """The images of a classify request, in request order, with any options from its body."""
    if kind is BodyKind.RAW:
        return ClassifyBody([Upload(None, body)], ClassifyOptions())
    if kind is BodyKind.MULTIPART:
        form = parse_multipart(body, content_type, max_images)
        if not form.images:
            raise InvalidRequest("the multipart/form-data body holds no image: send files")
        try:
            options = ClassifyOptions.model_validate(form.fields)
        except ValidationError as exc:
            raise InvalidParameter(describe_validation_errors(exc.errors())) from exc
        return ClassifyBody(form.images, options)
    try:
        # Strict: JSON's own types only (top_k true or "3" is refused, not read as 1 or 3).
        document = ClassifyJson.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise InvalidRequest(
            f"the JSON body is not valid: {describe_validation_errors(exc.errors())}"
        ) from exc
    if len(document.images) > max_images:
        raise PayloadTooLarge(
            f"too many images: {len(document.images)}, at most {max_images} per request"
        )
    uploads = [Upload(None, decode_base64(text, i)) for i, text in enumerate(document.images)]
    return ClassifyBody(uploads, document)


def decode_base64(text: str, index: int) -> bytes:
    """Plain or URL-safe base64, padded or not, line breaks allowed, or a base64 data: URL.

    A data: URL's media type must be one a raw body may have (image/*, application/octet-stream,
    or none): the same rule as the Content-Type of a single image, so ``data:text/html`` is a 415
    here as it is there. What the bytes are is still decided by their content.
    """
    payload = text
    if text[:5].lower() == "data:":
        header, comma, payload = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise InvalidRequest(f"images[{index}] is a data: URL without base64 data")
        declared = media_type(header[5:])
        if declared and not is_image_type(declared):
            raise UnsupportedMediaType(
                f"images[{index}] is a data: URL of type {safe_text(declared, 64)}: an image "
                "(image/*) or application/octet-stream is expected"
            )
    payload = "".join(payload.split()).translate(_URLSAFE_TO_STANDARD)
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text (a plain ValueError)
        raise InvalidRequest(f"images[{index}] is not valid base64: {exc}") from exc
