"""``multipart/form-data`` -> image parts and text fields, in part order.

Starlette's own form parser turns "too many files" into a 400 and spools every part into a
temporary file object; here the limit on images must be a 413, checked while parsing (before a
flood of tiny parts costs memory), so the parts are collected with python-multipart's streaming
parser directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shared.errors import InvalidRequest, PayloadTooLarge
from shared.uploads import Upload


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)


@dataclass
class FormData:
    """The images (file parts, and any part whose type is not text) and the text fields."""

    images: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def parse_multipart(body: bytes, content_type: str, max_images: int) -> FormData:
    """Parse a whole multipart body; raises InvalidRequest (malformed) or PayloadTooLarge."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("a multipart/form-data body needs a boundary in its Content-Type")
    form = FormData()
    part = _Part()
    ended = False

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        part.headers[bytes(part.header_name).lower()] = bytes(part.header_value)
        part.header_name.clear()
        part.header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part.data += data[start:end]

    def on_part_end() -> None:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition"))
        media_type, _ = parse_options_header(part.headers.get(b"content-type"))
        filename = disposition.get(b"filename")
        if filename is None and media_type in (b"", b"text/plain"):
            name = disposition.get(b"name", b"").decode("utf-8", "replace")
            form.fields[name] = part.data.decode("utf-8", "replace")
            return
        if len(form.images) == max_images:
            raise PayloadTooLarge(f"too many images: at most {max_images} per request")
        name = filename.decode("utf-8", "replace") if filename else None
        form.images.append(Upload(name, bytes(part.data)))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
    except FormParserError as exc:
        raise InvalidRequest(f"the multipart/form-data body is malformed: {exc}") from exc
    if not ended:
        raise InvalidRequest(
            "the multipart/form-data body is truncated: its closing boundary is missing"
        )
    return form
