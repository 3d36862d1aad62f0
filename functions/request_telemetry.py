"""ASGI middleware: a server span and the request metrics for every HTTP request.

Hand-written rather than OpenTelemetry's ASGI instrumentation: it records exactly the
instruments of ``shared.telemetry`` (route template, method, status, and for an error answer
its code, read from the error body that ``functions.http_errors`` wrote), costs two clock reads
and one span, and needs no instrumentation package in the deployment.
"""

from __future__ import annotations

import json
import time

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.telemetry import Telemetry

UNMATCHED = "unmatched"
# An error body is a short JSON document; more than this is not read for its code.
MAX_ERROR_BODY = 4096


def error_code(body: bytes, status: int) -> str:
    """The ``error.code`` of an error body; the v2 protocol's bodies (a bare message) and
    anything unreadable are known by their status alone."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else f"http_{status}"


class RequestTelemetry:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        status = 500  # what the server answers if the app raises before it starts a response
        error_body = bytearray()

        async def send_tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status >= 400 and len(error_body) < MAX_ERROR_BODY:
                error_body.extend(message.get("body", b"")[:MAX_ERROR_BODY])
            await send(message)

        method = scope["method"]
        with self.telemetry.tracer.start_as_current_span(
                method, kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]}) as span:
            try:
                await self.app(scope, receive, send_tracked)
            finally:
                route = getattr(scope.get("route"), "path", UNMATCHED)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self.telemetry.request(route, method, status,
                                       (time.perf_counter_ns() - started) / 1e6)
                if status >= 400:
                    code = error_code(bytes(error_body), status)
                    span.set_attribute("error.type", code)
                    self.telemetry.error(route, code)
