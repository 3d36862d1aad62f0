"""The drawing page and the interactive API docs (Swagger UI from bundled assets: they work
offline, where FastAPI's default loads them from a CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from functions.http_runtime import API

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI 5 (OpenAPI 3.1) files from the swagger-ui-bundle-v2 package, mounted by create_app.
DOCS_ASSETS = API + "/docs/assets"
OPENAPI_URL = API + "/openapi.json"
# The page loads nothing from elsewhere, so it can forbid everything else.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
PAGE = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

router = APIRouter(include_in_schema=False)


@router.get(API + "/docs")
async def interactive_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="emnist-edge API",
        swagger_js_url=DOCS_ASSETS + "/swagger-ui-bundle.js",
        swagger_css_url=DOCS_ASSETS + "/swagger-ui.css",
        swagger_favicon_url=DOCS_ASSETS + "/favicon-32x32.png",
    )


@router.get("/")
@router.get(API)
@router.get(API + "/")
@router.get(API + "/page")
async def drawing_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=PAGE_HEADERS)
