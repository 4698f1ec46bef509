"""The VIN endpoints. Each reads the request once and hands it to ``VinQuery``, which runs the
request path in its documented order (gateway/lookups/service.py) and answers in bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway.accounts.exceptions import (
    AccountSuspended,
    ConsentWithdrawn,
    InvalidToken,
    PolicyAcceptanceRequired,
)
from gateway.catalogue.exceptions import (
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
    VehicleTypeNotMatching,
)
from gateway.deps import CatalogueDep, CurrentAccount, VinQueryDep
from gateway.exceptions import GatewayError, NotAuthenticated, PayloadTooLarge
from gateway.limits.exceptions import LimiterUnavailable, RateLimited, SuspiciousUsageBlocked
from gateway.lookups import examples
from gateway.lookups.exceptions import InvalidVIN
from gateway.lookups.schemas import (
    AttestationIssued,
    AttestationRequest,
    CategoriesResponse,
    DecodeRequest,
    DecodeResponse,
    LookupRequest,
    LookupResponse,
)
from gateway.lookups.service import Answer, Caller, VinQuery
from gateway.openapi import VIN_ATTESTATION_PARAMETER, declares
from gateway.problems import problem_response
from gateway.security.exceptions import AttestationError, AttestationReplayed

router = APIRouter(prefix="/v1", tags=["vins"])

#: What the parts catalogue can refuse (the embedded sample never does; an upstream can).
CATALOGUE_ERRORS = (CatalogueUnavailable, CatalogueBadGateway, CatalogueTimeout)
#: What every VIN endpoint can refuse before the catalogue, in the path's order.
VIN_PATH_ERRORS: tuple[type[GatewayError], ...] = (
    NotAuthenticated,
    InvalidToken,
    AccountSuspended,
    SuspiciousUsageBlocked,
    ConsentWithdrawn,
    PolicyAcceptanceRequired,
    InvalidVIN,
    LimiterUnavailable,
    RateLimited,
)
#: Every refusal of the attestation verifier (each a subclass; the base is never sent).
ATTESTATION_REFUSALS: tuple[type[GatewayError], ...] = tuple(AttestationError.__subclasses__())
#: What the endpoints that take a VIN-Attestation can refuse before the catalogue.
ATTESTED_ERRORS = (*VIN_PATH_ERRORS, *ATTESTATION_REFUSALS, AttestationReplayed)
#: The bearer credential is read by the service, so the operation states its scheme itself.
BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

Run = Callable[[Caller, bytes], Awaitable[Answer]]


def caller_of(headers: Mapping[bytes, bytes], client: tuple[str, int] | None) -> Caller:
    """What the path needs from the request's headers (no VIN: that is in the body)."""

    def text(name: bytes) -> str | None:
        value = headers.get(name)
        return value.decode("latin-1") if value is not None else None

    scheme, _, credentials = (text(b"authorization") or "").partition(" ")
    return Caller(
        credentials=credentials.strip() if scheme.lower() == "bearer" else None,
        attestation=text(b"vin-attestation"),
        client_ip=client[0] if client else None,
        user_agent=text(b"user-agent"),
    )


def response_of(done: Answer) -> Response:
    return Response(done.body, done.status, done.headers, media_type="application/json")


async def answer(run: Run, request: Request) -> Response:
    """The FastAPI route's way to the service (``VinDispatch`` is the usual one)."""
    caller = caller_of(dict(request.scope["headers"]), request.scope.get("client"))
    return response_of(await run(caller, await request.body()))


class VinDispatch:
    """The VIN endpoints answered before FastAPI's router, by ``main.GuardMiddleware`` after its
    checks: the same ``VinQuery`` call, the same answers, the same problems (rendered by
    ``gateway.problems``). FastAPI would re-walk its middleware, router and dependency layers
    for every lookup (about a fifth of a lookup's CPU); the routes below remain what the
    OpenAPI document describes, and what runs for any request this does not claim."""

    def __init__(self) -> None:
        self._routes = {
            "/v1/vins/decode": _Template("/v1/vins/decode", "decode"),
            "/v1/lookups": _Template("/v1/lookups", "lookup"),
            "/v1/attestations": _Template("/v1/attestations", "issue_attestation"),
        }

    def claims(self, scope: Scope) -> bool:
        return scope["method"] == "POST" and scope["path"] in self._routes

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, headers: Mapping[bytes, bytes]
    ) -> None:
        route = self._routes[scope["path"]]
        scope["route"] = route  # the access log and metrics name the template
        query: VinQuery = scope["app"].state.gw.vin_query
        run: Run = getattr(query, route.name)
        try:
            body = await _read_body(receive)
            done = await run(caller_of(headers, scope.get("client")), body)
        except GatewayError as exc:
            await problem_response(exc)(scope, receive, send)
            return
        except StarletteHTTPException as exc:  # the guard's body limit while reading
            if exc.status_code != 413:
                raise
            await problem_response(PayloadTooLarge(), exc.headers)(scope, receive, send)
            return
        # what Starlette's Response(done.body, done.status, done.headers, "application/json")
        # sends, without building one per answer
        raw = [
            (name.lower().encode("latin-1"), v.encode("latin-1"))
            for name, v in done.headers.items()
        ]
        raw += [(b"content-length", str(len(done.body)).encode()), _JSON]
        await send({"type": "http.response.start", "status": done.status, "headers": raw})
        await send({"type": "http.response.body", "body": done.body})


_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class _Template:
    path: str
    name: str


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _openapi(**extra: Any) -> dict[str, Any]:
    return {**BEARER, **extra}


@router.post(
    "/vins/decode",
    name="decode",
    response_model=DecodeResponse,
    responses=examples.response_example(200, examples.DECODE_RESPONSE),
    openapi_extra=_openapi(**examples.request_body(example=examples.DECODE_REQUEST)),
)
@declares(
    *ATTESTED_ERRORS, rate_limit=True, parameters=[VIN_ATTESTATION_PARAMETER], body=DecodeRequest
)
async def decode(request: Request, query: VinQueryDep) -> Response:
    """Decode a VIN (bearer + attestation, like every VIN endpoint)."""
    return await answer(query.decode, request)


@router.post(
    "/lookups",
    name="lookup",
    response_model=LookupResponse,
    responses=examples.response_example(200, examples.LOOKUP_RESPONSE),
    openapi_extra=_openapi(**examples.request_body(example=examples.LOOKUP_REQUEST)),
)
@declares(
    *ATTESTED_ERRORS,
    *CATALOGUE_ERRORS,
    VehicleTypeNotMatching,
    rate_limit=True,
    parameters=[VIN_ATTESTATION_PARAMETER],
    body=LookupRequest,
)
async def lookup(request: Request, query: VinQueryDep) -> Response:
    """Parts for a VIN: decoded vehicle, its type in the catalogue, alternatives, parts."""
    return await answer(query.lookup, request)


@router.post(
    "/attestations",
    name="issue_attestation",
    status_code=201,
    response_model=AttestationIssued,
    responses=examples.response_example(201, examples.ATTESTATION_RESPONSE),
    openapi_extra=_openapi(**examples.request_body(examples=examples.ATTESTATION_REQUESTS)),
)
@declares(
    *VIN_PATH_ERRORS,
    *(e for e in ATTESTATION_REFUSALS if e.code.startswith(("owner_", "purpose_"))),
    rate_limit=True,
    body=AttestationRequest,
)
async def issue_attestation(request: Request, query: VinQueryDep) -> Response:
    """A gateway-issued attestation for an interactive user's declaration (one per query).

    This endpoint takes no `VIN-Attestation`: it issues one, for the VIN in the body, to be sent
    with the next `POST /v1/lookups` or `POST /v1/vins/decode`."""
    return await answer(query.issue_attestation, request)


@router.get("/catalogue/categories", tags=["catalogue"])
@declares(*CATALOGUE_ERRORS)
async def categories(account: CurrentAccount, catalogue: CatalogueDep) -> CategoriesResponse:
    return CategoriesResponse.model_validate({"categories": await catalogue.categories()})
