"""One error base class, rendered by one handler as RFC 9457 problem+json.

Every refusal the gateway makes is a ``GatewayError`` subclass with a stable ``code``. Messages
never contain a VIN, a token or an email: they describe what is wrong, not the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_TYPE_BASE = "urn:vin-gateway:problem:"  # each code is documented in docs/problems.md
PROBLEM_JSON = "application/problem+json"


class GatewayError(Exception):
    """Base of every refusal. Subclasses set ``code``, ``status`` and ``title``."""

    code: str = "error"
    status: int = 400
    title: str = "Request refused"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def problem_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    merged = {**error.headers, **(headers or {})}
    return Response(
        orjson.dumps(error.problem()),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=merged,
    )


# --- generic request problems -------------------------------------------------------------


class BadRequest(GatewayError):
    code, status, title = "bad_request", 400, "The request could not be read"


class InvalidRequest(GatewayError):
    code, status, title = "invalid_request", 422, "The request body is not valid"


class MalformedJSON(GatewayError):
    code, status, title = "malformed_json", 400, "The request body is not valid JSON"


class PayloadTooLarge(GatewayError):
    code, status, title = "payload_too_large", 413, "The request body is too large"


class UnsupportedMediaType(GatewayError):
    code, status, title = "unsupported_media_type", 415, "Unsupported content type"


class NotFound(GatewayError):
    code, status, title = "not_found", 404, "Not found"


class MethodNotAllowed(GatewayError):
    code, status, title = "method_not_allowed", 405, "Method not allowed"


class InternalError(GatewayError):
    code, status, title = "internal_error", 500, "Internal error"


class ServiceUnavailable(GatewayError):
    code, status, title = "service_unavailable", 503, "A backing service is unavailable"


# --- authentication and accounts ----------------------------------------------------------


class NotAuthenticated(GatewayError):
    code, status, title = "not_authenticated", 401, "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class InvalidToken(NotAuthenticated):
    code, title = "invalid_token", "The bearer token is invalid or expired"


class InvalidCredentials(NotAuthenticated):
    code, title = "invalid_credentials", "Incorrect email or password"


class Forbidden(GatewayError):
    code, status, title = "forbidden", 403, "Forbidden"


class AdminRequired(Forbidden):
    code, title = "admin_required", "This endpoint needs the admin role"


class AccountSuspended(Forbidden):
    code, title = "account_suspended", "The account is suspended"


class PolicyAcceptanceRequired(Forbidden):
    code, title = (
        "privacy_policy_acceptance_required",
        "Accept the privacy policy in force before querying VINs",
    )


class ConsentWithdrawn(PolicyAcceptanceRequired):
    code, title = "consent_withdrawn", "Consent was withdrawn: VIN queries are stopped"


class Conflict(GatewayError):
    code, status, title = "conflict", 409, "Conflict"


class EmailTaken(Conflict):
    code, title = "email_taken", "An account with this email already exists"


# --- rendering ---------------------------------------------------------------------------

_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def _validation_problem(exc: RequestValidationError) -> GatewayError:
    # Never echo the input: it may be a VIN, a password or a token.
    errors = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return MalformedJSON(
                "The body could not be parsed as JSON", errors=[{"message": err.get("msg", "")}]
            )
        if err.get("type") == "extra_forbidden":
            # the name of an unknown field is client input (it could be a VIN): not echoed
            errors.append(
                {
                    "field": None,
                    "code": "extra_forbidden",
                    "message": "the body has a field this endpoint does not accept",
                }
            )
            continue
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        errors.append(
            {"field": ".".join(loc) or None, "code": err.get("type"), "message": err.get("msg")}
        )
    return InvalidRequest("The request does not match the schema", errors=errors)


def install_error_handlers(app: FastAPI) -> None:
    """Problems for every refusal. Crashes are answered by ``main.GuardMiddleware``, which
    logs the exception's type only and never lets uvicorn print a traceback."""

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return problem_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc))

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
