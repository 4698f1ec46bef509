"""The one place refusals become HTTP answers: RFC 9457 problem+json.

``install_error_handlers`` registers the handlers (every ``GatewayError``, request validation,
the framework's own HTTP errors); ``validation_problem`` turns pydantic's error list into the
gateway's 422 (or 400 for unparsable JSON) without echoing the input. Crashes are answered by
``main.GuardMiddleware``, which logs the exception's type only.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Mount
from starlette.types import Scope

from gateway.exceptions import (
    BadRequest,
    GatewayError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    validation_problem,
)

PROBLEM_JSON = "application/problem+json"


def problem_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    merged = {**error.headers, **(headers or {})}
    return Response(
        orjson.dumps(error.problem()),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=merged,
    )


_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


#: The methods a 405's ``Allow`` can name (every one some route of the gateway may answer).
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route answers at this path: a 405's ``Allow``. The router's own 405
    names only the first route whose path matched, while a path such as ``/v1/me`` has one
    route per method. Mounts (the frontend, the docs' assets) answer their own 405s."""
    found: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Mount):
            continue
        for method in _METHODS:
            if method not in found and route.matches({**scope, "method": method})[0] is Match.FULL:
                found.add(method)
    return sorted(found)


def install_error_handlers(app: FastAPI) -> None:
    """Problems for every refusal. Crashes are answered by ``main.GuardMiddleware``, which
    logs the exception's type only and never lets uvicorn print a traceback."""

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return problem_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        fallback = BadRequest if exc.status_code < 500 else InternalError
        err = _STATUS_ERRORS.get(exc.status_code, fallback)()
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(app, request.scope)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return problem_response(err, headers)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def problem_bytes(error: GatewayError) -> bytes:
    return orjson.dumps(error.problem())
