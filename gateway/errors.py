"""Transitional: the names that lived here, while the domains' own modules take them over.

Refusals are declared in ``gateway.exceptions`` and each domain's ``exceptions.py``; rendering is
``gateway.problems``. Import from those; this module goes when the last importer has moved."""

from gateway.accounts.exceptions import (
    AccountSuspended,
    AdminRequired,
    ConsentWithdrawn,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    PolicyAcceptanceRequired,
)
from gateway.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    InternalError,
    InvalidRequest,
    MalformedJSON,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    validation_problem,
)
from gateway.problems import PROBLEM_JSON, install_error_handlers, problem_bytes, problem_response

__all__ = [
    "PROBLEM_JSON",
    "AccountSuspended",
    "AdminRequired",
    "BadRequest",
    "Conflict",
    "ConsentWithdrawn",
    "EmailTaken",
    "Forbidden",
    "GatewayError",
    "InternalError",
    "InvalidCredentials",
    "InvalidRequest",
    "InvalidToken",
    "MalformedJSON",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PolicyAcceptanceRequired",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "install_error_handlers",
    "problem_bytes",
    "problem_response",
    "validation_problem",
]
