"""Failures -> responses, in one place: every error is JSON with a stable code and a message a
person can read, its status comes from the typed error itself, and no traceback ever leaves
the process.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.http_methods import allowed
from functions.schemas import describe_validation_errors
from shared.errors import EmnistEdgeError, InvalidParameter, RequestTimeout

V2 = "/api/v2"
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed"}

log = logging.getLogger("emnist_edge.http")


def error_response(
    path: str, status: int, code: str, message: str, **extra: Any
) -> JSONResponse:
    """The one place a failure becomes a response: v2 routes answer in the v2 protocol's shape
    ``{"error": "..."}``, every other route ``{"error": {"code", "message"}}``."""
    if path == V2 or path.startswith(V2 + "/"):
        return JSONResponse({"error": message}, status_code=status)
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status)


def typed_error_response(path: str, error: EmnistEdgeError, **extra: Any) -> JSONResponse:
    return error_response(path, error.http_status, error.code, error.message, **extra)


class UnexpectedErrors:
    """An exception that no handler knows becomes a logged traceback and a JSON 500.

    Starlette's catch-all handler re-raises after answering, which inside Azure Functions fails
    the invocation and loses the JSON body; this middleware answers and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if started:  # too late for a clean answer: let the server drop the connection
                raise
            response = typed_error_response(
                scope["path"], EmnistEdgeError("an unexpected error occurred; it has been logged")
            )
            await response(scope, receive, send)


def add_error_handlers(app: FastAPI) -> None:
    """Typed errors, invalid parameters and Starlette's 404/405 all answer through
    ``error_response``; ``UnexpectedErrors`` catches the rest."""

    @app.exception_handler(EmnistEdgeError)
    async def typed(request: Request, error: EmnistEdgeError) -> JSONResponse:
        response = typed_error_response(request.url.path, error)
        if isinstance(error, RequestTimeout):  # the rest of the body is not waited for
            response.headers["connection"] = "close"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problem = InvalidParameter(describe_validation_errors(list(error.errors())))
        return typed_error_response(request.url.path, problem)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, "http_error")
        response = error_response(request.url.path, error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # 405's Allow (RFC 9110, 15.5.6)
        if "allow" in response.headers:
            response.headers["allow"] = allowed(response.headers["allow"])
        return response
