"""``/docs``: the interactive API page (Swagger UI), served from this server only.

FastAPI's default page loads Swagger UI's script from a CDN without subresource
integrity: whoever controls that CDN (or the network path to it) runs script in the
page of a logged-in admin. Here the script and stylesheet come from the
``fastapi-offline`` package's copy under ``/static-docs``, and the page gets a strict
Content-Security-Policy: scripts only from this server, plus the page's one inline
bootstrap script by nonce. Swagger UI sets inline styles, so styles may be inline;
nothing can frame the page.
"""

from __future__ import annotations

import secrets
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/static-docs"


def install_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` with its assets from this server (none from a CDN)."""
    assets = Path(str(files("fastapi_offline") / "static"))
    app.mount(ASSETS_URL, StaticFiles(directory=assets), name="static-docs")

    @app.get(DOCS_URL, include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png")
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        return HTMLResponse(html, headers={
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        })
