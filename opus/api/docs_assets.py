"""The Swagger UI page of the API, its script and stylesheet served by the API itself.

FastAPI's default page loads them from a CDN, so it is blank wherever that CDN cannot be reached (offline, a
network that blocks it) and inside the dashboard's embed. The files come from the `fastapi-offline` package,
which ships a current swagger-ui-dist build as package data: installed with the app, so the Function App (which
serves the API too) and `opus serve` serve the same files. Only its static files are used, not its app factory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

ASSET_PACKAGE: Final = "fastapi_offline"
# The files the page needs, by name, with their media types; nothing else of the package is served.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# The files change only with the package's version; a day's caching spares a reload the 1.5 MB script.
ASSET_CACHE: Final = "public, max-age=86400"


def assets_url(docs_url: str) -> str:
    return f"{docs_url}/assets"


def oauth2_redirect_url(docs_url: str) -> str:
    return f"{docs_url}/oauth2-redirect"


def public_paths(docs_url: str) -> frozenset[str]:
    """The page, its OAuth2 redirect and its assets: what must be readable without a key."""
    base = assets_url(docs_url)
    return frozenset({docs_url, oauth2_redirect_url(docs_url), *(f"{base}/{name}" for name in ASSETS)})


@cache
def asset(name: str) -> bytes:
    """One file of the package, read once per process."""
    return (files(ASSET_PACKAGE) / "static" / name).read_bytes()


def install_docs(app: FastAPI, *, docs_url: str, openapi_url: str) -> None:
    """Serve the Swagger UI at `docs_url` (create the app with `docs_url=None`), its assets beneath it."""
    base = assets_url(docs_url)

    async def page(request: Request) -> HTMLResponse:
        # As FastAPI's own page does: behind a proxy that mounts the app under a prefix, links keep it.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{base}/swagger-ui-bundle.js", swagger_css_url=f"{root}{base}/swagger-ui.css",
            swagger_favicon_url=f"{root}{base}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url(docs_url),
            # Swagger UI would send the document's URL to validator.swagger.io for a badge: not offline, and
            # not a third party's business.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route(docs_url, page, methods=["GET"], include_in_schema=False)
    app.add_api_route(oauth2_redirect_url(docs_url), redirect, methods=["GET"], include_in_schema=False)
    for name, media_type in ASSETS.items():
        app.add_api_route(f"{base}/{name}", _serve(name, media_type), methods=["GET"], include_in_schema=False)


def _serve(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(asset(name), media_type=media_type, headers={"Cache-Control": ASSET_CACHE})

    return serve
