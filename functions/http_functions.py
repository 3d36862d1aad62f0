"""The HTTP-triggered Azure Functions: thin forwarders from the Functions host to the ASGI app.

One function per access level rather than ``func.AsgiFunctionApp`` (one catch-all function, one
auth level for everything): classification costs CPU, so it needs a function key, while health
probes, model info, the page and the docs must stay open. The host routes a request to the most
specific matching route first, so ``classify`` and ``v2/models/{name}/infer`` catch their POSTs
before the anonymous catch-all, and the catch-all only takes GET: no keyed route
answers those methods, so the open door never leads to a keyed route.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_api import app as api

bp = func.Blueprint()


class AsgiBridge:
    """One middleware for all functions, started once: the app's lifespan (which loads and warms
    the model) runs on the first request, as ``func.AsgiFunctionApp`` does it."""

    def __init__(self) -> None:
        self.middleware = func.AsgiMiddleware(api)
        self.started = False

    async def forward(self, req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        if not self.started:
            self.started = True  # before awaiting, so concurrent first requests start it once
            await self.middleware.notify_startup()
        return await self.middleware.handle_async(req, context)


bridge = AsgiBridge()


@bp.function_name("classify")
@bp.route(route="classify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def classify(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await bridge.forward(req, context)


@bp.function_name("infer")
@bp.route(route="v2/models/{name}/infer", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def infer(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await bridge.forward(req, context)


@bp.function_name("public")
@bp.route(route="{*route}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def public(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await bridge.forward(req, context)
