"""The VIN endpoints. Each reads the request once and hands it to ``VinQuery``, which runs the
request path in its documented order (gateway/lookups/service.py) and answers in bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from gateway.accounts.dependencies import client_ip
from gateway.accounts.exceptions import (
    AccountSuspended,
    ConsentWithdrawn,
    InvalidToken,
    PolicyAcceptanceRequired,
)
from gateway.catalogue.backends import (
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
    VehicleTypeNotMatching,
)
from gateway.deps import CatalogueDep, CurrentAccount, VinQueryDep
from gateway.exceptions import GatewayError, NotAuthenticated
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
from gateway.lookups.service import Answer, Caller
from gateway.openapi import VIN_ATTESTATION_PARAMETER, declares
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
#: The bearer credential is read by the service, so the operation states its scheme itself.
BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

Run = Callable[[Caller, bytes], Awaitable[Answer]]


async def answer(run: Run, request: Request) -> Response:
    """Read what the path needs from the request (no VIN: that is in the body), run it, send
    the bytes it answered with."""
    headers = request.headers
    authorization = headers.get("authorization")
    scheme, _, credentials = (authorization or "").partition(" ")
    caller = Caller(
        credentials=credentials.strip() if scheme.lower() == "bearer" else None,
        attestation=headers.get("vin-attestation"),
        client_ip=client_ip(request),
        user_agent=headers.get("user-agent"),
    )
    done = await run(caller, await request.body())
    return Response(done.body, done.status, done.headers, media_type="application/json")


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
    *VIN_PATH_ERRORS,
    *ATTESTATION_REFUSALS,
    AttestationReplayed,
    rate_limit=True,
    parameters=[VIN_ATTESTATION_PARAMETER],
    body=DecodeRequest,
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
    *VIN_PATH_ERRORS,
    *ATTESTATION_REFUSALS,
    AttestationReplayed,
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
