"""The app factory. Its lifespan owns the engines, the Redis client, caches and the log writer."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.accounts.endpoints import router as accounts_router
from gateway.admin.endpoints import router as admin_router
from gateway.apidocs import install_docs
from gateway.config import Settings
from gateway.deps import StateDep
from gateway.exceptions import (
    BadRequest,
    GatewayError,
    InternalError,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from gateway.grants.endpoints import router as grants_router
from gateway.kv import cluster_state
from gateway.lookups.endpoints import VinDispatch
from gateway.lookups.endpoints import router as lookups_router
from gateway.openapi import declares, install_openapi
from gateway.privacy.endpoints import router as privacy_router
from gateway.problems import install_error_handlers, problem_bytes
from gateway.state import build_state

access_log = logging.getLogger("vin_gateway.access")
error_log = logging.getLogger("vin_gateway.errors")

REQUESTS = Counter(
    "vingw_requests_total", "HTTP requests by route template and status", ["route", "status"]
)
LATENCY = Histogram(
    "vingw_request_seconds",
    "Request latency by route template",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

#: Bodies that are not JSON: the OAuth2 form at /v1/auth/token.
FORM_PATHS = frozenset({"/v1/auth/token"})

#: The catalogue web frontend (static files, no build step), served at / when enabled.
WEB_DIR = Path(__file__).resolve().parent / "web"
#: Security headers of the frontend's responses (/docs and /redoc have their own: ``apidocs``).
FRONTEND_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
        b"object-src 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]


class FrontendFiles(StaticFiles):
    """The frontend's static files, each response with ``FRONTEND_HEADERS``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *FRONTEND_HEADERS]}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


class FrontendMount(Mount):
    """Mounted at / after every API route; never claims /v1/ nor a path another route answers
    with some other method (``POST /healthz``, ``HEAD /readyz``), so a wrong method stays a 405
    whose ``Allow`` names the path's methods."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("path", "").startswith("/v1/") or self._routed(scope):
            return Match.NONE, {}
        return super().matches(scope)

    @staticmethod
    def _routed(scope: Scope) -> bool:
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
        return any(
            not isinstance(route, Mount) and route.matches(scope)[0] is not Match.NONE
            for route in routes
        )


class GuardMiddleware:
    """Body size and content type checks, the scrubbed access log, and the VIN endpoints.

    Given ``vin`` (the instance ``GatewayApp`` puts in front of FastAPI), it hands the three
    VIN endpoints to ``VinDispatch`` after its checks (the same service the FastAPI routes call,
    without FastAPI's per-request layers); everything else goes on to the app.

    The access log names the route *template* (never a raw path), the method, the status and the
    duration: no query string, no header, no body. VINs travel only in bodies anyway.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, *, vin: VinDispatch | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.vin = vin
        # metric children per route template (labels() lookups are not free on every request)
        self._counters: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 0}
        headers = dict(scope.get("headers") or [])
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await self._send_problem(send_wrapper, refusal)
            elif self.vin is not None and self.vin.claims(scope):
                await self.vin(scope, self._limited(receive), send_wrapper, headers)
            else:
                await self.app(scope, self._limited(receive), send_wrapper)
        except Exception as exc:
            # Never re-raised: uvicorn would log the traceback and the exception's message,
            # which may carry request data. The type and the route template are enough.
            log_route = getattr(scope.get("route"), "path", "unmatched")
            error_log.error("unhandled %s on %s %s", type(exc).__name__, method, log_route)
            if not status_holder["status"]:
                await self._send_problem(
                    send_wrapper, InternalError("The gateway failed; the request was not served")
                )
        finally:
            self._observe(scope, method, status_holder["status"] or 500, started)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> GatewayError | None:
        if scope["method"] not in {"POST", "PUT", "PATCH"}:
            return None
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            return BadRequest("Content-Length is not a number")
        if length is not None and int(length) > self.max_body_bytes:
            return PayloadTooLarge(f"At most {self.max_body_bytes} bytes are accepted")
        if not scope["path"].startswith("/v1/"):
            return None
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        wanted_form = scope["path"] in FORM_PATHS
        ok = (
            ctype in {b"application/x-www-form-urlencoded", b"multipart/form-data"}
            if wanted_form
            else ctype == b"application/json" or ctype.endswith(b"+json")
        )
        if not ok and (length not in (None, b"0") or b"transfer-encoding" in headers):
            expected = "a form" if wanted_form else "application/json"
            return UnsupportedMediaType(f"Send the body as {expected}")
        return None

    @staticmethod
    async def _send_problem(send: Send, error: GatewayError) -> None:
        body = problem_bytes(error)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, method: str, status: int, started: float) -> None:
        template = getattr(scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - started
        counter = self._counters.get((template, status))
        if counter is None:
            counter = self._counters[(template, status)] = REQUESTS.labels(template, str(status))
        counter.inc()
        histogram = self._histograms.get(template)
        if histogram is None:
            histogram = self._histograms[template] = LATENCY.labels(template)
        histogram.observe(elapsed)
        access_log.info("%s %s %d %.1fms", method, template, status, elapsed * 1000)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413)
            return message

        return wrapped


class GatewayApp(FastAPI):
    """FastAPI, with the VIN endpoints answered by a guard in front of FastAPI's own outer
    layers (error, telemetry and body-limit middleware, exception handling, router): the same
    checks, the same dispatch and observation as the ``GuardMiddleware`` inside the stack,
    which serves every other request."""

    vin_guard: GuardMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.vin_guard
        if guard is not None and scope["type"] == "http" and guard.vin and guard.vin.claims(scope):
            scope["app"] = self
            await guard(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, vin_dispatch: bool = True) -> FastAPI:
    """The gateway. ``vin_dispatch=False`` leaves the VIN endpoints to their FastAPI routes
    (tests compare both ways; production always dispatches)."""
    settings = settings or Settings()
    migrate_on_start = settings.run_migrations_on_start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await build_state(settings, migrate_on_start=migrate_on_start)
        app.state.gw = state
        try:
            yield
        finally:
            await state.close()

    app = GatewayApp(
        title="vin-gateway",
        version="0.1.0",
        description=(
            "Parts-catalogue lookups by VIN with a per-query owner-authorization attestation. "
            "VINs travel only in POST bodies. Errors are RFC 9457 problem+json with a stable "
            "`code`."
        ),
        lifespan=lifespan,
        docs_url=None,  # served offline with a strict CSP by ``install_docs``
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes)
    if vin_dispatch:
        # the VIN endpoints' guard, in front of FastAPI: it answers only what VinDispatch
        # claims, so its inner app (the whole FastAPI stack) is never reached from it
        app.vin_guard = GuardMiddleware(
            super(GatewayApp, app).__call__, settings.max_body_bytes, vin=VinDispatch()
        )
    for router in (privacy_router, accounts_router, grants_router, lookups_router, admin_router):
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    @declares(ServiceUnavailable)
    async def readyz(state: StateDep) -> dict[str, Any]:
        checks: dict[str, str] = {}
        for name, db in (("accounts", state.accounts_db), ("searchlog", state.searchlog_db)):
            try:
                async with db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = type(exc).__name__
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
            if isinstance(state.redis, RedisCluster):  # every node's view of the slots
                checks["redis"] = await cluster_state(state.redis)
        except Exception as exc:
            checks["redis"] = type(exc).__name__
        if any(v != "ok" for v in checks.values()):
            raise ServiceUnavailable("Not ready", checks=checks)
        ready: dict[str, Any] = {"status": "ready", "checks": checks}
        durability = state.redis_durability  # the start-up check (docs/deploy.md "Redis")
        if durability is not None and (durability.problems() or durability.warnings()):
            # ready all the same (VINGW_REDIS_REQUIRE_DURABLE=true refuses to start instead);
            # a code only: this endpoint is public, the details are in the log and the metric
            ready["warnings"] = [
                "redis_not_durable" if durability.problems() else "redis_durability_degraded"
            ]
        return ready

    if settings.metrics_enabled:

        @app.get("/metrics", include_in_schema=False)
        async def metrics(request: Request) -> PlainTextResponse:
            # with several workers each one writes its samples to PROMETHEUS_MULTIPROC_DIR
            # (set by `vin-gateway serve --workers N`) and any worker reports them all
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
                return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
            return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    install_docs(app)
    install_openapi(app)

    if settings.frontend_enabled:  # last, so that every API route wins
        app.router.routes.append(
            FrontendMount("/", app=FrontendFiles(directory=WEB_DIR, html=True), name="frontend")
        )
    return app
