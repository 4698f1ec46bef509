"""The root of every refusal, and the refusals no single domain owns. Free of the web framework.

Every refusal the gateway makes is a ``GatewayError`` subclass declared statically, with a stable
``code`` (documented in docs/problems.md, tested to stay so), an HTTP ``status`` and a ``title``.
Each domain declares its own in its ``exceptions.py``; ``gateway.problems`` renders them all as
RFC 9457 problem+json. Messages never contain a VIN, a token or an email: they say what is
wrong, not the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROBLEM_TYPE_BASE = "urn:vin-gateway:problem:"  # each code is documented in docs/problems.md


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


# --- generic request problems -------------------------------------------------------------


class BadRequest(GatewayError):
    code, status, title = "bad_request", 400, "The request could not be read"


class InvalidRequest(GatewayError):
    code, status, title = "invalid_request", 422, "The request body is not valid"


class InvalidVIN(GatewayError):
    """The VIN does not validate; ``errors`` lists every problem (code, position, message).
    Shared by every endpoint that takes a VIN (``gateway.vins``)."""

    code, status, title = "invalid_vin", 422, "The VIN is not valid"


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


class Forbidden(GatewayError):
    code, status, title = "forbidden", 403, "Forbidden"


class Conflict(GatewayError):
    code, status, title = "conflict", 409, "Conflict"


def validation_problem(found: Iterable[Mapping[str, Any]]) -> GatewayError:
    """A body or parameter that does not validate: 400 if it is not JSON at all, else 422 with
    every error (field, pydantic's error type, message). The input itself is never echoed: it
    may be a VIN, a password or a token."""
    errors = []
    for err in found:
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
