"""Typed errors: every failure a caller can cause or meet has a class, a stable code and a status.

The HTTP layer maps an error to a response by ``http_status`` and ``code`` alone, so this module
is the one place that decides which status a failure gets.
"""

from __future__ import annotations


class EmnistEdgeError(Exception):
    """Base class: a message a person can read, a machine code, and the HTTP status it maps to."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidImage(EmnistEdgeError):
    """The bytes are not a decodable image (unknown format, corrupt or truncated data)."""

    code = "invalid_image"
    http_status = 400


class ImageTooLarge(EmnistEdgeError):
    """The image has more pixels than allowed (this also stops decompression bombs)."""

    code = "image_too_large"
    http_status = 413


class BlankImage(EmnistEdgeError):
    """The image decodes but holds no ink to classify."""

    code = "blank_image"
    http_status = 422


class InvalidBatch(EmnistEdgeError):
    """A batch (archive, array or IDX file) cannot be read as a whole."""

    code = "invalid_batch"
    http_status = 400


class ModelLoadError(EmnistEdgeError):
    """The model file or its manifest is missing, corrupt or inconsistent."""

    code = "model_load_error"
    http_status = 503


class InvalidParameter(EmnistEdgeError):
    """A request parameter is out of range or malformed (e.g. ``top_k``)."""

    code = "invalid_parameter"
    http_status = 400


class InvalidRequest(EmnistEdgeError):
    """The request as a whole is malformed: bad JSON, bad base64, a broken multipart body."""

    code = "invalid_request"
    http_status = 400


class PayloadTooLarge(EmnistEdgeError):
    """The request is over a size limit (body bytes or images per request)."""

    code = "payload_too_large"
    http_status = 413


class RequestTimeout(EmnistEdgeError):
    """The client did not send its whole request body in the time allowed."""

    code = "request_timeout"
    http_status = 408


class UnsupportedMediaType(EmnistEdgeError):
    """The request body comes in a content type the endpoint does not read."""

    code = "unsupported_media_type"
    http_status = 415


class ModelNotReady(EmnistEdgeError):
    """The model is not loaded (yet, or it failed to load): the service cannot answer now."""

    code = "model_not_ready"
    http_status = 503


class ModelNotFound(EmnistEdgeError):
    """A request names a model this service does not serve."""

    code = "model_not_found"
    http_status = 404


class BatchTooLarge(InvalidBatch):
    """A batch is over a safety limit (items, uncompressed bytes, compression ratio): it is
    refused whole, like an unreadable one, so it shares InvalidBatch's handling."""

    code = "batch_too_large"
    http_status = 413


class ShardFailed(EmnistEdgeError):
    """One shard of a fanned-out batch kept failing (its queue message went to the poison
    queue): its items are reported failed with this code, and the batch still finishes."""

    code = "shard_failed"
    http_status = 500
