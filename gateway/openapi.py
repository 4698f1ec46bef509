"""The OpenAPI document tells the truth about errors, derived from the ``GatewayError`` classes.

Each dependency and endpoint names the refusals it can raise with ``@declares(...)``, next to
the code that raises them. ``install_openapi`` walks every route's dependency tree (when the
document is generated; the routes are not changed), adds what the transport layer refuses
(``GuardMiddleware``: 413 for every POST/PUT/PATCH, 415/400 for a body; validation: 422, for a
body and for parameters that can fail it) and turns the classes into responses with
``problem_responses``: one ``application/problem+json`` response per status, whose schema pins
``status`` and lists the possible ``code`` values as an enum, with one example per code built
from the class itself (``cls().problem()``), so no code or title is written twice.

Response headers are declared where they appear: ``RateLimit-Policy`` and ``RateLimit`` on the
answers of routes that count against the limiter (``rate_limit=True``), ``Retry-After`` (and
the RateLimit fields) on 429s, ``Retry-After`` on the 503s that send it, ``WWW-Authenticate``
on 401s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from fastapi import FastAPI, params
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from gateway.catalogue.exceptions import CatalogueUnavailable
from gateway.exceptions import (
    BadRequest,
    GatewayError,
    InvalidRequest,
    MalformedJSON,
    NotAuthenticated,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.limits.exceptions import LimiterUnavailable, RateLimited, SuspiciousUsageBlocked
from gateway.problems import PROBLEM_JSON

F = TypeVar("F", bound=Callable[..., Any])

#: What GuardMiddleware and request validation refuse for a request with a body.
BODY_ERRORS: tuple[type[GatewayError], ...] = (
    BadRequest,
    MalformedJSON,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidRequest,
)
#: What GuardMiddleware refuses for every POST, PUT and PATCH (a too-large Content-Length).
WRITE_ERRORS: tuple[type[GatewayError], ...] = (BadRequest, PayloadTooLarge)
#: The public example VIN used in every example (Honda Accord 2003, in many decoders' docs).
EXAMPLE_VIN = "1HGCM82633A004352"


class ProblemItem(BaseModel):
    """One entry of ``errors``: a schema violation (``field``) or a VIN problem (``position``)."""

    model_config = ConfigDict(extra="allow", title="ProblemItem")
    code: str | None = None
    message: str | None = None
    field: str | None = Field(
        default=None, description="Dotted path of the field (never its value)"
    )
    position: int | None = Field(default=None, description="1-based position in the VIN")


class Problem(BaseModel):
    """An RFC 9457 problem. Clients branch on ``code`` (stable), never on ``title``/``detail``;
    the members after ``code`` appear only with the codes named in their descriptions. A problem
    never contains a VIN, a token, a password or an email (docs/problems.md)."""

    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="urn:vin-gateway:problem:<code>")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable code (docs/problems.md)")
    instance: str | None = None
    errors: list[ProblemItem] | None = Field(
        default=None, description="invalid_request, malformed_json, invalid_vin"
    )
    policy: str | None = Field(
        default=None,
        description="429s: flood, ip, guessing, distinct_vins or sequential; see Retry-After",
    )
    privacy_policy_version: str | None = Field(
        default=None, description="privacy_policy_acceptance_required: the version in force"
    )
    requirements: list[str] | None = Field(default=None, description="weak_password")
    vehicle_type_ids: list[str] | None = Field(
        default=None, description="vehicle_type_not_matching"
    )
    kid: str | None = Field(default=None, description="attestation_key_exists")
    checks: dict[str, str] | None = Field(
        default=None, description="service_unavailable from /readyz"
    )


#: Reusable response headers (components/headers).
HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Policy": {
        "description": "The quota policy (IETF RateLimit header fields): name, quota, window (s)",
        "schema": {"type": "string"},
        "example": '"vin";q=40;w=8',
    },
    "RateLimit": {
        "description": "What is left of the quota: remaining units and seconds to a full bucket",
        "schema": {"type": "string"},
        "example": '"vin";r=38;t=1',
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
        "example": 30,
    },
    "WWW-Authenticate": {
        "description": "The authentication scheme to use",
        "schema": {"type": "string"},
        "example": "Bearer",
    },
}
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit")

#: Headers a refusal carries, by class (subclasses included).
_HEADERS_OF: tuple[tuple[type[GatewayError], tuple[str, ...]], ...] = (
    (NotAuthenticated, ("WWW-Authenticate",)),
    (RateLimited, ("Retry-After", *RATE_LIMIT_HEADERS)),
    (SuspiciousUsageBlocked, ("Retry-After", *RATE_LIMIT_HEADERS)),
    (LimiterUnavailable, ("Retry-After",)),
    (CatalogueUnavailable, ("Retry-After",)),
)

VIN_ATTESTATION_PARAMETER: dict[str, Any] = {
    "name": "VIN-Attestation",
    "in": "header",
    "required": True,
    "description": (
        "The per-query owner-authorization attestation: a compact JWS (typ "
        "`vin-attestation+jwt`) bound to this account and to the body's VIN by `vin_sha256`, "
        "accepted once (docs/attestation.md). Get one from `POST /v1/attestations` or sign it "
        "with a registered attestation key. Without it the answer is the 403 problem "
        "`attestation_missing`."
    ),
    "schema": {"type": "string", "maxLength": 8192},
    "example": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtfZXhhbXBsZSIsInR5cCI6InZpbi1hdHRlc3RhdGlvbitqd3QifQ"
    ".eyJpc3MiOiJhY2N0X2V4YW1wbGUifQ.c2lnbmF0dXJl",
}


# --- declarations ----------------------------------------------------------------------------


def declares(
    *errors: type[GatewayError],
    rate_limit: bool = False,
    parameters: Iterable[dict[str, Any]] = (),
    body: type[BaseModel] | None = None,
) -> Callable[[F], F]:
    """Mark a dependency or endpoint: the refusals it raises, whether its answers carry the
    RateLimit fields, header parameters it reads but declares itself, and the JSON body model
    of an endpoint that reads and validates its body itself (the VIN endpoints do, so that a
    malformed body is recorded like any refusal)."""

    def mark(fn: F) -> F:
        if body is not None:
            fn.__body__ = body  # type: ignore[attr-defined]
        fn.__problems__ = (*getattr(fn, "__problems__", ()), *errors)  # type: ignore[attr-defined]
        fn.__rate_limit__ = rate_limit or getattr(fn, "__rate_limit__", False)  # type: ignore[attr-defined]
        fn.__parameters__ = (*getattr(fn, "__parameters__", ()), *parameters)  # type: ignore[attr-defined]
        return fn

    return mark


def _calls(dependant: Dependant) -> Iterator[Any]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _validates_parameters(dependant: Dependant) -> bool:
    """Whether a parameter can fail validation (``422 invalid_request``): any query parameter,
    and a path parameter with constraints (``gateway.text.PathId``) or another type than str."""
    if dependant.query_params or any(
        p.field_info.metadata or p.field_info.annotation is not str for p in dependant.path_params
    ):
        return True
    return any(_validates_parameters(d) for d in dependant.dependencies)


def route_errors(route: Any) -> list[type[GatewayError]]:
    """Every refusal a route can answer with: its declarations and the transport's."""
    found: list[type[GatewayError]] = []
    for call in _calls(route.dependant):
        found.extend(getattr(call, "__problems__", ()))
    if route.methods & {"POST", "PUT", "PATCH"}:
        found.extend(WRITE_ERRORS)
    if route.body_field is None and route_body(route) is not None:
        found.extend(BODY_ERRORS)
    elif route.body_field is not None:
        is_form = isinstance(route.body_field.field_info, params.Form)
        found.extend(e for e in BODY_ERRORS if not (is_form and e is MalformedJSON))
    if _validates_parameters(route.dependant):
        found.append(InvalidRequest)
    return list(dict.fromkeys(found))  # first-seen order, no duplicates


def route_body(route: Any) -> type[BaseModel] | None:
    """The JSON body model an endpoint validates itself (``declares(body=...)``), if any."""
    for call in _calls(route.dependant):
        model: type[BaseModel] | None = getattr(call, "__body__", None)
        if model is not None:
            return model
    return None


def route_rate_limited(route: Any) -> bool:
    return any(getattr(call, "__rate_limit__", False) for call in _calls(route.dependant))


def route_parameters(route: Any) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for call in _calls(route.dependant):
        params.extend(p for p in getattr(call, "__parameters__", ()) if p not in params)
    return params


# --- responses -------------------------------------------------------------------------------


def _header_refs(names: Iterable[str]) -> dict[str, dict[str, str]]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in dict.fromkeys(names)}


def _example(cls: type[GatewayError]) -> dict[str, Any]:
    return {"summary": cls.title, "value": cls().problem()}


def problem_responses(
    *errors: type[GatewayError], rate_limit: bool = False
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these refusal classes, grouped by status.

    Each status gets a problem+json schema (``Problem`` with that ``status`` and an enum of the
    classes' codes), a description listing each code and title, one example per code, and the
    response headers those classes send (plus the RateLimit fields with ``rate_limit``)."""
    by_status: dict[int, list[type[GatewayError]]] = {}
    for cls in dict.fromkeys(errors):
        by_status.setdefault(cls.status, []).append(cls)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        classes = by_status[status]
        headers = [
            h for c in classes for base, hs in _HEADERS_OF if issubclass(c, base) for h in hs
        ]
        if rate_limit:
            headers.extend(RATE_LIMIT_HEADERS)
        schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {
                    "type": "object",
                    "properties": {
                        "status": {"type": "integer", "enum": [status]},
                        "code": {"type": "string", "enum": [c.code for c in classes]},
                    },
                },
            ]
        }
        response: dict[str, Any] = {
            "description": "Problem: " + "; ".join(f"`{c.code}` ({c.title})" for c in classes),
            "content": {
                PROBLEM_JSON: {
                    "schema": schema,
                    "examples": {c.code: _example(c) for c in classes},
                }
            },
        }
        if headers:
            response["headers"] = _header_refs(headers)
        responses[status] = response
    return responses


def _merge(base: dict[Any, Any], extra: dict[Any, Any]) -> dict[Any, Any]:
    """A deep merge into a copy."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every documented API route as FastAPI sees it once included (prefix and router-level
    dependencies applied): ``RouteContext`` objects on FastAPI versions that include routers
    lazily (0.16x), the ``APIRoute`` copies on older ones."""
    contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    if contexts is None:
        yield from (r for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema)
        return
    for context in contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def document_operation(operation: dict[str, Any], route: Any) -> None:
    """Add a route's problems, RateLimit fields and declared header parameters."""
    rate_limit = route_rate_limited(route)
    declared = problem_responses(*route_errors(route), rate_limit=rate_limit)
    responses = operation.setdefault("responses", {})
    unprocessable = responses.get("422", {}).get("content", {}).get("application/json", {})
    if 422 in declared and _references(unprocessable, "HTTPValidationError"):
        del responses["422"]  # FastAPI's default: replaced by the invalid_request problem
    for status, response in declared.items():
        responses[str(status)] = _merge(responses.get(str(status), {}), response)
    if rate_limit:
        success = responses.setdefault(str(route.status_code or 200), {})
        success["headers"] = {**success.get("headers", {}), **_header_refs(RATE_LIMIT_HEADERS)}
    operation["responses"] = dict(sorted(responses.items()))
    model = route_body(route)
    if model is not None:
        ref = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        body = {"required": True, "content": {"application/json": ref}}
        operation["requestBody"] = _merge(body, operation.get("requestBody", {}))
    parameters = operation.setdefault("parameters", [])
    for param in route_parameters(route):
        if not any(
            p.get("name") == param["name"] and p.get("in") == param["in"] for p in parameters
        ):
            parameters.append(copy.deepcopy(param))
    if not parameters:
        del operation["parameters"]


# --- the document ----------------------------------------------------------------------------


def _references(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        if node.get("$ref") == f"#/components/schemas/{name}":
            return True
        return any(_references(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_references(v, name) for v in node)
    return False


#: Request bodies FastAPI reads as forms (the OAuth2 password form of /v1/auth/token).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _form_fields(model: dict[str, Any]) -> None:
    """A form's schema as FastAPI reads the form: a member sent empty counts as absent (so a
    required text member needs a character), and a member cannot be null (one left out is its
    default): the model's ``anyOf [..., null]`` is a JSON body's, not a form's."""
    required = set(model.get("required", ()))
    for name, field in model.get("properties", {}).items():
        options = field.get("anyOf")
        if options and any(option.get("type") == "null" for option in options):
            kept = [option for option in options if option.get("type") != "null"]
            del field["anyOf"]
            if len(kept) == 1:
                field.update(kept[0])
            else:
                field["anyOf"] = kept
        if name in required and field.get("type") == "string":
            field["minLength"] = max(field.get("minLength", 0), 1)


def _count_refs(node: Any, ref: str) -> int:
    if isinstance(node, dict):
        return (node.get("$ref") == ref) + sum(_count_refs(v, ref) for v in node.values())
    if isinstance(node, list):
        return sum(_count_refs(v, ref) for v in node)
    return 0


def _forms(schema: dict[str, Any]) -> None:
    """Apply ``_form_fields`` to every form body (to a copy of its model if others use it)."""
    schemas = schema.get("components", {}).get("schemas", {})
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type in set(FORM_TYPES) & set(content):
                body = content[media_type]
                ref = body.get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                if name in schemas and _count_refs(schema, ref) == 1:
                    _form_fields(schemas[name])
                else:
                    if name in schemas:
                        body["schema"] = copy.deepcopy(schemas[name])
                    _form_fields(body.get("schema", {}))


def complete(schema: dict[str, Any], bodies: Iterable[type[BaseModel]] = ()) -> None:
    """Add the Problem schema, the body models endpoints validate themselves and the headers;
    drop FastAPI's JSON 422, which is never sent (validation failures are ``invalid_request``
    problems); describe form bodies as forms (``_form_fields``)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [Problem, *bodies]
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    components.setdefault("headers", {}).update(copy.deepcopy(HEADERS))
    _forms(schema)
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if set(responses.get("422", {}).get("content", {PROBLEM_JSON: None})) == {
                "application/json"
            }:
                del responses["422"]  # FastAPI's default: the route declares no 422 of its own
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas:
            rest = {k: v for k, v in schema.items() if k != "components"}
            others = {k: v for k, v in schemas.items() if k != name}
            if not _references(rest, name) and not _references(others, name):
                del schemas[name]


def install_openapi(app: FastAPI) -> None:
    """Complete the generated document once: every route's problems, then ``complete``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            bodies: dict[str, type[BaseModel]] = {}
            for route in api_routes(app):
                item = schema.get("paths", {}).get(route.path_format, {})
                for method in sorted(route.methods or ()):
                    if method.lower() in item:
                        document_operation(item[method.lower()], route)
                model = route_body(route)
                if model is not None:
                    bodies[model.__name__] = model
            complete(schema, bodies.values())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
