"""HEAD answered as GET without the body (RFC 9110, 9.3.2), and the ``Allow`` header that says so.

FastAPI's routes list only the methods declared on them, so a HEAD to a GET route would be a 405.
Rather than declaring HEAD on every route (and doubling the OpenAPI document), a HEAD request
runs the GET route and its body is dropped here; the headers, Content-Length included, stay.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def allowed(methods: str) -> str:
    """The ``Allow`` value of a route: its methods, and HEAD wherever GET is (see above)."""
    names = [name.strip() for name in methods.split(",") if name.strip()]
    if "GET" in names and "HEAD" not in names:
        names.append("HEAD")
    return ", ".join(names)


class HeadAsGet:
    """ASGI middleware: a HEAD request is handled as a GET whose body is not sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
