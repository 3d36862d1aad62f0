"""Request bodies built from corpus samples: a multipart form of several images, a batch zip.

Built by hand rather than by an HTTP client's ``files=`` so that every load generator (Locust's
FastHttpUser, the benchmark's http.client threads) sends byte-for-byte the same body.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Sequence

from loadtests.corpus import Sample


def multipart(samples: Sequence[Sample]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file part per sample, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for index, sample in enumerate(samples):
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; "
            f"filename=\"{index}-{sample.filename}\"\r\nContent-Type: {sample.content_type}"
            "\r\n\r\n"
        )
        parts.append(head.encode("ascii") + sample.data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode("ascii")
    return body, f"multipart/form-data; boundary={boundary}"


def batch_zip(samples: Sequence[Sample]) -> tuple[bytes, list[str]]:
    """A zip of the samples (stored: images are compressed already) and each entry's expected
    label, in archive order (the order of the results CSV)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, sample in enumerate(samples):
            archive.writestr(f"{index:04d}-{sample.filename}", sample.data)
    return buffer.getvalue(), [sample.label for sample in samples]
