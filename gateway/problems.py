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


def install_error_handlers(app: FastAPI) -> None:
    """Problems for every refusal. Crashes are answered by ``main.GuardMiddleware``, which
    logs the exception's type only and never lets uvicorn print a traceback."""

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return problem_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc.errors()))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        fallback = BadRequest if exc.status_code < 500 else InternalError
        err = _STATUS_ERRORS.get(exc.status_code, fallback)()
        return problem_response(err, exc.headers)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def problem_bytes(error: GatewayError) -> bytes:
    return orjson.dumps(error.problem())
