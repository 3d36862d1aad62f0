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
