"""The HTTP side attacked: one row per hostile request against the real local server (uvicorn
in a subprocess), each with the status and error code it must get. After every row the server
is still live and still answers a good image correctly, so no attack leaves damage behind.
Rows that need a lying or slow client speak raw HTTP over a socket.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from PIL import Image

from shared.config import MODEL_DIR
from tests.conftest import running_server, shipped_model_exists
from tests.payloads import (
    PNG_7,
    WEBP_7,
    animated,
    encode,
    exif_rotated_jpeg,
    flat_png,
    gif_claiming,
    grey16_png,
    png_claiming,
    png_damaged,
    seven,
    thin_jpeg,
    webp_damaged,
)

pytestmark = pytest.mark.integration

MAX_BODY = 1024 * 1024
MAX_IMAGES = 4
BODY_TIMEOUT_S = 1.5
DEMO_MAX_BYTES = 64 * 1024
MODEL = "emnist-edge"


@dataclass(frozen=True)
class Attack:
    """One request and what it must get: ``status``, and ``code`` in the error body (``None``
    for a success); ``label``: the character a correct model reads, where the image has one."""

    method: str
    path: str
    status: int
    code: str | None = None
    content: bytes | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    label: str | None = None


def image(data: bytes, status: int = 200, code: str | None = None, label: str | None = None,
          content_type: str = "image/png") -> Attack:
    return Attack("POST", "/api/classify", status, code, content=data,
                  headers={"Content-Type": content_type}, label=label)


def images_json(document: Any, status: int, code: str | None, query: str = "") -> Attack:
    return Attack("POST", "/api/classify" + query, status, code, json=document)


def raw_json(text: bytes, status: int, code: str | None) -> Attack:
    return Attack("POST", "/api/classify", status, code, content=text,
                  headers={"Content-Type": "application/json"})


def multipart(body: bytes, status: int, code: str | None, boundary: str = "xyz") -> Attack:
    return Attack("POST", "/api/classify", status, code, content=body,
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body of (field name, file name, data) parts, boundary ``xyz``."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                      else "")
        out += f"--xyz\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--xyz--\r\n"


def infer(tensor: dict[str, Any] | None = None, status: int = 400, code: str | None = None,
          model: str = MODEL, **document: Any) -> Attack:
    body = {"inputs": [tensor]} if tensor is not None else {}
    return Attack("POST", f"/api/v2/models/{model}/infer", status, code,
                  json={**body, **document})


def tensor(data: Any, shape: list[int] | None = None, datatype: str = "UINT8",
           name: str = "input") -> dict[str, Any]:
    return {"name": name, "shape": shape or [1, 28, 28], "datatype": datatype, "data": data}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ZEROS = [0] * 784
ROWS: dict[str, Attack] = {
    # not images, truncated, bombs
    "text-as-png": image(b"hello, not an image", 400, "invalid_image"),
    "empty-body": image(b"", 400, "invalid_image"),
    "truncated-png": image(PNG_7[: len(PNG_7) // 2], 400, "invalid_image"),
    "truncated-jpeg": image(encode(seven(), "JPEG")[:600], 400, "invalid_image"),
    "png-header-only": image(PNG_7[:33], 400, "invalid_image"),
    "random-bytes": image(bytes(range(256)) * 40, 400, "invalid_image"),
    "svg": image(b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>', 400,
                 "invalid_image", content_type="image/svg+xml"),
    "eps-never-runs-ghostscript": image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n", 400,
                                        "invalid_image"),
    "tiff-not-accepted": image(encode(seven(), "TIFF"), 400, "invalid_image"),
    "pixel-bomb-png": image(png_claiming(30_000, 30_000), 413, "image_too_large"),
    "pixel-bomb-gif": image(gif_claiming(65_535, 65_535), 413, "image_too_large"),
    "costly-16-bit-png": image(grey16_png(6300), 413, "image_too_large"),
    "costly-rgba-png": image(flat_png("RGBA", 4000), 413, "image_too_large"),
    "blank-image": image(encode(Image.new("L", (200, 200), 255)), 422, "blank_image"),
    "one-pixel": image(encode(Image.new("L", (1, 1), 0)), 422, "blank_image"),
    # a JPEG large enough to decode at a fraction, a pixel thin the other way
    "jpeg-one-pixel-tall": image(thin_jpeg(640, 1), 422, "blank_image"),
    "jpeg-one-pixel-wide": image(thin_jpeg(1, 4000), 422, "blank_image"),
    # bit depths, modes, frames, EXIF: all read as the '7' they show
    **{f"mode-{mode}": image(encode(seven(mode)), label="7")
       for mode in ("1", "L", "P", "LA", "RGBA", "I;16")},
    "cmyk-jpeg": image(encode(seven("CMYK"), "JPEG"), label="7"),
    "grey-jpeg": image(encode(seven("L"), "JPEG"), label="7"),
    "bmp": image(encode(seven(), "BMP"), label="7"),
    "webp": image(encode(seven(), "WEBP"), label="7"),
    "animated-gif-first-frame": image(animated("GIF"), label="7"),
    "animated-png-first-frame": image(animated("PNG"), label="7"),
    "exif-rotated-jpeg": image(exif_rotated_jpeg(), label="7"),
    # damaged PNGs (libspng decodes the common ones, their pixels inflated by libdeflate,
    # Pillow the rest: shared/png_decoder.py): whole pixels are read whatever is damaged around
    # them or after them, damaged or missing pixels are refused
    **{f"png-damaged-{damage}": image(png_damaged(PNG_7, damage), label="7")
       for damage in ("pixels-crc", "zlib-checksum", "text-bomb-after-pixels", "no-end",
                      "rows-then-bomb", "pixels-in-tiny-chunks")},
    **{f"png-damaged-{damage}": image(png_damaged(PNG_7, damage), 400, "invalid_image")
       for damage in ("zlib-stream", "rows-missing")},
    "grey-png-damaged-zlib-stream": image(png_damaged(encode(seven("L")), "zlib-stream"), 400,
                                          "invalid_image"),
    # damaged simple lossy WebPs (libwebp decodes their grey, Pillow the rest:
    # shared/webp_decoder.py): a damaged frame still decodes (as any lossy decoder's does), one
    # cut short or with its header broken is refused, a size that lies is refused at opening
    "webp-damaged-junk-after": image(webp_damaged(WEBP_7, "junk-after"), label="7",
                                     content_type="image/webp"),
    "webp-damaged-frame-zeroed": image(webp_damaged(WEBP_7, "frame-zeroed"),
                                       content_type="image/webp"),
    **{f"webp-damaged-{damage}": image(webp_damaged(WEBP_7, damage), 400, "invalid_image",
                                       content_type="image/webp")
       for damage in ("frame-cut-short", "header-zeroed", "riff-size-lies")},
    "transparent-canvas": image(encode(Image.new("RGBA", (200, 200), (0, 0, 0, 0))), 422,
                                "blank_image"),
    # media types
    "text-plain": image(PNG_7, 415, "unsupported_media_type", content_type="text/plain"),
    "no-content-type": Attack("POST", "/api/classify", 415, "unsupported_media_type",
                              content=PNG_7),
    "form-urlencoded": image(b"images=x", 415, "unsupported_media_type",
                             content_type="application/x-www-form-urlencoded"),
    # JSON: encodings, depth, size, types
    "json-not-json": raw_json(b"{not json", 400, "invalid_request"),
    "json-deeply-nested": raw_json(b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                   400, "invalid_request"),
    "json-utf16": raw_json('{"images": ["x"]}'.encode("utf-16"), 400, "invalid_request"),
    "json-latin1-bytes": raw_json(b'{"images": ["\xe9"]}', 400, "invalid_request"),
    "json-bom": raw_json(b'\xef\xbb\xbf{"images": ["' + b64(PNG_7).encode() + b'"]}', 400,
                         "invalid_request"),
    "json-nan": raw_json(b'{"images": ["x"], "top_k": NaN}', 400, "invalid_request"),
    "json-over-the-limit": raw_json(b'{"images": ["' + b"A" * MAX_BODY + b'"]}', 413,
                                    "payload_too_large"),
    "json-empty-list": images_json({"images": []}, 400, "invalid_request"),
    "json-images-not-a-list": images_json({"images": "abc"}, 400, "invalid_request"),
    "json-images-numbers": images_json({"images": [1, 2]}, 400, "invalid_request"),
    "json-unknown-field": images_json({"images": [b64(PNG_7)], "debug": True}, 400,
                                      "invalid_request"),
    "json-non-ascii-base64": images_json({"images": ["é"]}, 400, "invalid_request"),
    "json-bad-base64": images_json({"images": ["!!!!"]}, 400, "invalid_request"),
    "json-base64-of-text": images_json({"images": [b64(b"text")]}, 400, "invalid_image"),
    "json-data-url-html": images_json({"images": ["data:text/html;base64," + b64(PNG_7)]}, 415,
                                      "unsupported_media_type"),
    "json-data-url-not-base64": images_json({"images": ["data:image/png,abc"]}, 400,
                                            "invalid_request"),
    "json-too-many-images": images_json({"images": [b64(PNG_7)] * (MAX_IMAGES + 1)}, 413,
                                        "payload_too_large"),
    "json-top-k-true": images_json({"images": [b64(PNG_7)], "top_k": True}, 400,
                                   "invalid_request"),
    "json-top-k-string": images_json({"images": [b64(PNG_7)], "top_k": "3"}, 400,
                                     "invalid_request"),
    "json-top-k-float": images_json({"images": [b64(PNG_7)], "top_k": 2.5}, 400,
                                    "invalid_request"),
    "json-top-k-huge": images_json({"images": [b64(PNG_7)], "top_k": 10**30}, 400,
                                   "invalid_parameter"),
    # query flags
    **{f"query-top-k-{value}": replace(image(PNG_7, 400, "invalid_parameter"),
                                       path=f"/api/classify?top_k={value}")
       for value in ("0", "63", "-1", "abc", "1e3", "", "true")},
    "query-include-processed-maybe": replace(image(PNG_7, 400, "invalid_parameter"),
                                             path="/api/classify?include_processed=maybe"),
    "query-unknown-is-ignored": replace(image(PNG_7, label="7"), path="/api/classify?x=1"),
    # multipart abuse
    "multipart-no-boundary": Attack("POST", "/api/classify", 400, "invalid_request",
                                    content=form(("images", "a.png", PNG_7)),
                                    headers={"Content-Type": "multipart/form-data"}),
    "multipart-wrong-boundary": multipart(form(("images", "a.png", PNG_7)), 400,
                                          "invalid_request", boundary="other"),
    "multipart-unterminated": multipart(form(("images", "a.png", PNG_7))[:-10], 400,
                                        "invalid_request"),
    "multipart-no-file": multipart(form(("top_k", None, b"3")), 400, "invalid_request"),
    "multipart-too-many-files": multipart(form(*[("images", f"{i}.png", PNG_7)
                                                 for i in range(MAX_IMAGES + 1)]), 413,
                                          "payload_too_large"),
    "multipart-flood-of-empty-parts": multipart(form(*[("images", "x.png", b"")] * 5000), 413,
                                                "payload_too_large"),
    "multipart-bad-top-k-field": multipart(form(("images", "a.png", PNG_7),
                                                ("top_k", None, b"abc")), 400,
                                           "invalid_parameter"),
    "multipart-garbage": multipart(b"\x00" * 1000, 400, "invalid_request"),
    "multipart-huge-header": multipart(b"--xyz\r\nX: " + b"a" * 200_000 + b"\r\n\r\nx\r\n--xyz--",
                                       400, "invalid_request"),
    # v2 shapes, datatypes, values, lengths
    "v2-no-inputs": infer(None, 400),
    "v2-two-inputs": infer(None, 400, inputs=[tensor(ZEROS), tensor(ZEROS)]),
    "v2-wrong-shape": infer(tensor([0] * 100, [1, 10, 10])),
    "v2-zero-batch": infer(tensor([], [0, 28, 28])),
    "v2-negative-shape": infer(tensor(ZEROS, [-1, 28, 28])),
    "v2-length-mismatch": infer(tensor([0] * 783)),
    "v2-ragged-data": infer(tensor([[0] * 28] * 27 + [[0] * 27])),
    "v2-strings": infer(tensor(["1"] * 784)),
    "v2-booleans": infer(tensor([True] * 784)),
    "v2-nulls": infer(tensor([None] * 784)),
    "v2-huge-integer": infer(tensor([10**400] + [0] * 783)),
    "v2-out-of-range": infer(tensor([300] + [0] * 783)),
    "v2-fractional-uint8": infer(tensor([0.5] + [0] * 783)),
    "v2-fp32-over-one": infer(tensor([2.0] + [0] * 783, datatype="FP32")),
    "v2-bool-datatype": infer(tensor(ZEROS, datatype="BOOL")),
    "v2-unknown-input": infer(tensor(ZEROS, name="x")),
    "v2-unknown-output": infer(tensor(ZEROS), outputs=[{"name": "logits"}]),
    "v2-too-many-tiles": infer(tensor([0] * 784 * (MAX_IMAGES + 1), [MAX_IMAGES + 1, 28, 28]),
                               413),
    "v2-unknown-model": infer(tensor(ZEROS), 404, model="other"),
    "v2-good": infer(tensor([255] * 784), 200),
    # the anonymous demo route: one raw image within its own byte limit, nothing else
    "demo-good": replace(image(PNG_7, label="7"), path="/api/demo/classify"),
    "demo-json": Attack("POST", "/api/demo/classify", 415, "unsupported_media_type",
                        json={"images": [b64(PNG_7)]}),
    "demo-multipart": replace(multipart(form(("images", "a.png", PNG_7)), 415,
                                        "unsupported_media_type"), path="/api/demo/classify"),
    "demo-query-parameters": replace(image(PNG_7, 400, "invalid_parameter"),
                                     path="/api/demo/classify?top_k=62"),
    "demo-not-an-image": replace(image(b"text", 400, "invalid_image"), path="/api/demo/classify"),
    "demo-pixel-bomb": replace(image(png_claiming(30_000, 30_000), 413, "image_too_large"),
                               path="/api/demo/classify"),
    "demo-over-its-byte-limit": replace(image(b"\x89PNG" + bytes(DEMO_MAX_BYTES), 413,
                                              "payload_too_large"), path="/api/demo/classify"),
    "demo-get": Attack("GET", "/api/demo/classify", 405, "method_not_allowed"),
    # methods and paths
    "put-classify": Attack("PUT", "/api/classify", 405, "method_not_allowed"),
    "delete-health": Attack("DELETE", "/api/health", 405, "method_not_allowed"),
    "trace-page": Attack("TRACE", "/", 405, "method_not_allowed"),
    "options-classify": Attack("OPTIONS", "/api/classify", 405, "method_not_allowed"),
    "unknown-path": Attack("GET", "/api/../../etc/passwd", 404, "not_found"),
    "static-traversal": Attack("GET", "/api/static/..%2f..%2fshared%2fconfig.py", 404,
                               "not_found"),
}


@pytest.fixture(scope="module")
def server(tiny_model_files, tmp_path_factory):
    """A server of its own with small limits and a short body deadline."""
    real = shipped_model_exists()
    files = (MODEL_DIR / "emnist_edge.pt", MODEL_DIR / "manifest.json") if real else (
        tiny_model_files)
    with running_server(files, tmp_path_factory.mktemp("hostile"), workers="1",
                        max_body_bytes=str(MAX_BODY), max_json_bytes=str(MAX_BODY),
                        max_images=str(MAX_IMAGES), body_timeout_s=str(BODY_TIMEOUT_S),
                        demo_max_bytes=str(DEMO_MAX_BYTES),
                        torch_threads="1") as url:
        yield url, real


@pytest.fixture(scope="module")
def client(server):
    with httpx2.Client(base_url=server[0], timeout=30) as session:
        yield session


def check_healthy(client: httpx2.Client, real_model: bool) -> None:
    """Live, ready, and a good image still read correctly."""
    assert client.get("/api/health/ready").status_code == 200
    response = client.post("/api/classify", content=PNG_7, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    if real_model:
        assert response.json()["results"][0]["label"] == "7"


def error_code(response: httpx2.Response) -> str | None:
    document = response.json()
    error = document.get("error")
    if isinstance(error, str):  # the v2 protocol's shape: no code, only the status
        return None
    if error is not None:
        return error["code"]
    failed = [r["error"]["code"] for r in document.get("results", []) if r.get("error")]
    return failed[0] if failed else None


@pytest.mark.parametrize("attack", ROWS.values(), ids=ROWS.keys())
def test_hostile_request(attack: Attack, client, server):
    response = client.request(attack.method, attack.path, content=attack.content,
                              json=attack.json, headers=attack.headers)
    assert response.status_code == attack.status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    if not attack.path.startswith("/api/v2"):
        assert error_code(response) == attack.code, response.text[:500]
    if response.status_code == 405:
        assert response.headers["allow"]
    if attack.label and server[1]:
        assert response.json()["results"][0]["label"] == attack.label
    check_healthy(client, server[1])


def test_allow_lists_head_beside_get(client):
    assert client.delete("/api/health").headers["allow"] == "GET, HEAD"
    assert client.get("/api/classify").headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/api/health", "/api/health/ready", "/api/model", "/",
                                  "/api/openapi.json", "/api/static/app.js"])
def test_head_is_get_without_a_body(client, path):
    get = client.get(path)
    head = client.head(path)
    assert (head.status_code, head.content) == (get.status_code, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


# --- clients that lie about lengths or trickle: raw HTTP over a socket -----------------------


def exchange(url: str, request: bytes, timeout_s: float = 10.0) -> tuple[bytes, float]:
    """Send ``request``; everything the server answers until it closes the connection or
    ``timeout_s`` passes, and the seconds that took."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer, time.monotonic() - started


def post(content_length: str, content_type: str = "image/png") -> bytes:
    return (f"POST /api/classify HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n").encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_content_length_over_the_limit_is_refused_before_the_body(server, client):
    answer, _ = exchange(server[0], post(str(MAX_BODY + 1)))
    assert status_of(answer) == 413 and b"payload_too_large" in answer
    check_healthy(client, server[1])


@pytest.mark.parametrize("value", ["abc", "-1", "1 2", "0x10"])
def test_content_length_that_is_no_number(server, client, value):
    answer, _ = exchange(server[0], post(value))
    assert status_of(answer) == 400  # refused by the HTTP parser or by the app
    check_healthy(client, server[1])


def test_content_length_shorter_than_the_body(server, client):
    """The extra bytes are the next request on the connection: garbage there is a 400."""
    answer, _ = exchange(server[0], post(str(len(PNG_7))) + PNG_7 + b"GARBAGE\r\n\r\n")
    assert status_of(answer) == 200
    check_healthy(client, server[1])


def test_content_length_longer_than_the_body_times_out(server, client):
    answer, took = exchange(server[0], post(str(len(PNG_7) + 100)) + PNG_7)
    assert status_of(answer) == 408 and b"request_timeout" in answer
    assert took < BODY_TIMEOUT_S + 3
    check_healthy(client, server[1])


def test_a_client_trickling_its_body_is_cut_off(server, client):
    parts = urlsplit(server[0])
    started = time.monotonic()
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(post("1000"))
        for _ in range(40):  # a byte every 0.1 s: 4 s if the server let it
            try:
                sock.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
    assert status_of(answer) == 408, answer
    assert time.monotonic() - started < BODY_TIMEOUT_S + 1.5
    check_healthy(client, server[1])


def test_chunked_body_over_the_limit(server, client):
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 65536 + 2))
    request = (b"POST /api/classify HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    answer, _ = exchange(server[0], request + body + b"0\r\n\r\n")
    assert status_of(answer) == 413
    check_healthy(client, server[1])


def test_json_error_bodies_parse(client):
    """Every error above is JSON a client can parse (spot check of the shapes)."""
    for response in (client.put("/api/classify"), client.post(
            "/api/v2/models/other/infer", json={})):
        json.loads(response.text)
