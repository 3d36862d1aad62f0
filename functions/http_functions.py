"""The HTTP-triggered Azure Functions: thin forwarders from the Functions host to the ASGI app.

One function per access level rather than ``func.AsgiFunctionApp`` (one catch-all function, one
auth level for everything): classification costs CPU, so it needs a function key, while health
probes, model info, the page and the docs must stay open, and the page's demo route (one small
image, nothing else) is open while ``EMNIST_EDGE_PUBLIC_DEMO`` is on.

The host does not pick the most specific matching route: it tries the routes in the order it
loaded the functions (by name, not by specificity: Azure/azure-functions-host#9876,
Azure/azure-webjobs-sdk-extensions#842). So no two functions may both match a request. The
anonymous catch-all takes GET only, every other function POST only, on routes of its own: the
open door never leads to a keyed route, whatever the order.
"""

from __future__ import annotations

import azure.functions as func
from fastapi import FastAPI

from shared.config import Settings


class AsgiBridge:
    """One middleware for all functions, started once: the app's lifespan (which loads and warms
    the model) runs on the first request, as ``func.AsgiFunctionApp`` does it."""

    def __init__(self, app: FastAPI) -> None:
        self.middleware = func.AsgiMiddleware(app)
        self.started = False

    async def forward(self, req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        if not self.started:
            self.started = True  # before awaiting, so concurrent first requests start it once
            await self.middleware.notify_startup()
        return await self.middleware.handle_async(req, context)


def blueprint(bridge: AsgiBridge, settings: Settings) -> func.Blueprint:
    """The HTTP functions, each forwarding to ``bridge``."""
    bp = func.Blueprint()

    @bp.function_name("classify")
    @bp.route(route="classify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    async def classify(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return await bridge.forward(req, context)

    @bp.function_name("infer")
    @bp.route(route="v2/models/{name}/infer", methods=["POST"],
              auth_level=func.AuthLevel.FUNCTION)
    async def infer(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return await bridge.forward(req, context)

    @bp.function_name("public")
    @bp.route(route="{*route}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    async def public(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return await bridge.forward(req, context)

    # Indexed only while the demo is on: with it off, Azure has no anonymous POST route at all.
    if settings.public_demo:

        @bp.function_name("demo")
        @bp.route(route="demo/classify", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
        async def demo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            return await bridge.forward(req, context)

    return bp
