"""/docs (Swagger UI) and /redoc (ReDoc), served offline: every script, style sheet and icon
comes from the gateway itself, never from a CDN or Google Fonts.

Where the assets come from
--------------------------
The files in ``gateway/docs_assets/`` are copied byte for byte from the npm registry's
``swagger-ui-dist`` (Apache-2.0, SmartBear, the Swagger UI project's own distribution) and
``redoc`` 2.x (MIT, Redocly), with their licence and notice files; versions, sources and
SHA-256 sums are in ``docs_assets/VENDORED.md`` (checked by tests/gateway/test_openapi.py).

Why vendored rather than a PyPI package: ``swagger-ui-bundle`` (last release 2023) ships Swagger
UI 4.15 and no ReDoc; ``fastapi-offline`` ships both but as a third party's repackaging without
the upstream licence files or a record of which upstream versions, and would put the assets
outside this package. The upstream npm packages are the projects' own maintained releases; a
copy inside ``gateway`` ships in the wheel, needs no runtime dependency, and an upgrade is a
reviewed diff (``npm pack`` and copy, see VENDORED.md). ReDoc stays on the 2.x line (the one
FastAPI's recipe names): ReDoc 3 bundles a telemetry client and loads icons from a CDN.

Content-Security-Policy
-----------------------
The pages are FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``: the documented
self-hosting recipe). Their inline blocks (Swagger UI's ``SwaggerUIBundle({...})`` call, the
OAuth2 redirect page's script, ReDoc's ``body`` margin style) are allowed by their SHA-256
hashes, computed from the exact HTML that is sent, so ``'unsafe-inline'`` is never needed for
scripts. ReDoc writes its styles at run time (styled-components ``<style>`` elements), so its
page's ``style-src`` also has ``'unsafe-inline'`` (styles only, not scripts) and its search
runs in a ``blob:`` worker (``worker-src blob:``). Swagger UI's validator badge (an image from a
third-party host) is turned off. ReDoc 2.x always renders an "API docs by Redocly" logo from
its CDN (no option turns it off): the page's ``img-src 'self' data:`` refuses it, the image
hides itself, and nothing leaves the browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

ASSETS_DIR = Path(__file__).resolve().parent / "docs_assets"
ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

#: Swagger UI options on top of FastAPI's defaults: no validator badge (a third-party image).
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)
_COMMON_CSP = (
    "default-src 'none'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
#: Headers of every docs page and asset (the CSP of a page is added by ``page``).
DOCS_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def inline_hashes(html: str) -> dict[str, list[str]]:
    """CSP source expressions (``'sha256-...'``) of every inline script and style block."""
    found: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        found[kind].append(f"'sha256-{digest}'")
    return found


def csp_for(html: str, *, redoc: bool = False) -> str:
    """The page's strict policy: 'self' plus the hashes of exactly the inline blocks it has."""
    hashes = inline_hashes(html)
    script = " ".join(["'self'", *hashes["script"]])
    # ReDoc injects its styles at run time: a hash cannot name them (and with a hash in the
    # list a browser would ignore 'unsafe-inline'), so its page allows inline styles instead
    style = "'self' 'unsafe-inline'" if redoc else " ".join(["'self'", *hashes["style"]])
    worker = "; worker-src 'self' blob:" if redoc else ""
    return f"{_COMMON_CSP}; script-src {script}; style-src {style}{worker}"


def page(html_response: HTMLResponse, *, redoc: bool = False) -> HTMLResponse:
    html = bytes(html_response.body).decode()
    headers = {**DOCS_HEADERS, "Content-Security-Policy": csp_for(html, redoc=redoc)}
    return HTMLResponse(html, headers={**headers, "Cache-Control": "no-cache"})


class DocsAssets(StaticFiles):
    """The vendored files, with nosniff and friends (a CSP on a script file does nothing)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = [(k.lower().encode(), v.encode()) for k, v in DOCS_HEADERS.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def install_docs(app: FastAPI) -> None:
    """FastAPI's self-hosting recipe: create the app with ``docs_url=None, redoc_url=None``,
    then this adds /docs, its OAuth2 redirect page, /redoc and the assets under /docs/assets."""
    assert app.docs_url is None and app.redoc_url is None, "create the app without its docs"
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> Response:
        base = root(request)
        return page(
            get_swagger_ui_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
                swagger_js_url=f"{base}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{base}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{base}{ASSETS_URL}/favicon-32x32.png",
                swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
            )
        )

    async def oauth2_redirect(_: Request) -> Response:
        return page(get_swagger_ui_oauth2_redirect_html())

    async def redoc(request: Request) -> Response:
        base = root(request)
        return page(
            get_redoc_html(
                openapi_url=base + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{base}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{base}{ASSETS_URL}/favicon-32x32.png",
                with_google_fonts=False,
            ),
            redoc=True,
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    app.mount(ASSETS_URL, DocsAssets(directory=ASSETS_DIR), name="docs_assets")
