"""The VIN endpoints. Each signature reads the request path top to bottom (see ``deps``)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

import vin as vinlib
from gateway.catalogue.backends import (
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
    VehicleFeatures,
    VehicleTypeNotMatching,
)
from gateway.deps import (
    CatalogueDep,
    CurrentAccount,
    DecodeAttestation,
    DecodeQuota,
    DecodeVIN,
    InvalidVIN,
    LookupAttestation,
    LookupQuota,
    LookupVIN,
    QueryLogDep,
    StateDep,
    VINAccount,
    require_valid,
)
from gateway.limits.limiter import LimiterUnavailable, RateLimited, SuspiciousUsageBlocked
from gateway.lookups import examples
from gateway.lookups.schemas import (
    AttestationIssued,
    AttestationRequest,
    CategoriesResponse,
    DecodeRequest,
    DecodeResponse,
    LookupRequest,
    LookupResponse,
)
from gateway.openapi import declares
from gateway.security import jws
from gateway.security.attestation import (
    TYP,
    OwnerAuthorizationExpired,
    OwnerAuthorizationMissing,
    PurposeOutOfScope,
    vin_digest,
)

router = APIRouter(prefix="/v1", tags=["vins"])

#: What the parts catalogue can refuse (the embedded sample never does; an upstream can).
CATALOGUE_ERRORS = (CatalogueUnavailable, CatalogueBadGateway, CatalogueTimeout)


def features_of(vehicle: Any) -> VehicleFeatures:
    """What the catalogue may know: the decoded facts without the serial number."""
    return VehicleFeatures(
        wmi=vehicle.wmi,
        vds=vehicle.vin[3:8] if vehicle.vin and len(vehicle.vin) == 17 else None,
        make=vehicle.make,
        make_candidates=tuple(vehicle.make_candidates),
        model_year=vehicle.model_year,
        model_year_candidates=tuple(vehicle.model_year_candidates),
        country_code=vehicle.country_code,
        plant_code=vehicle.plant_code,
    )


@router.post(
    "/vins/decode",
    name="decode",
    responses=examples.response_example(200, examples.DECODE_RESPONSE),
    openapi_extra=examples.request_body(example=examples.DECODE_REQUEST),
)
async def decode(
    body: DecodeRequest,
    log: QueryLogDep,
    account: VINAccount,
    attestation: DecodeAttestation,
    vin: DecodeVIN,
    quota: DecodeQuota,
) -> DecodeResponse:
    """Decode a VIN (bearer + attestation, like every VIN endpoint)."""
    return DecodeResponse.model_validate({"vehicle": vin.to_dict()})


@router.post(
    "/lookups",
    name="lookup",
    responses=examples.response_example(200, examples.LOOKUP_RESPONSE),
    openapi_extra=examples.request_body(example=examples.LOOKUP_REQUEST),
)
@declares(*CATALOGUE_ERRORS, VehicleTypeNotMatching)
async def lookup(
    body: LookupRequest,
    log: QueryLogDep,
    account: VINAccount,
    attestation: LookupAttestation,
    vin: LookupVIN,
    quota: LookupQuota,
    catalogue: CatalogueDep,
) -> LookupResponse:
    """Parts for a VIN: decoded vehicle, its type in the catalogue, alternatives, parts."""
    answer = await catalogue.lookup(
        features_of(vin), vehicle_type_id=body.vehicle_type_id, categories=body.categories
    )
    if answer.vehicle_type is None:
        log.outcome = "miss"
    return LookupResponse.model_validate(
        {
            "query_id": "q_" + secrets.token_hex(8),
            "vehicle": vin.to_dict(),
            "vehicle_type": answer.vehicle_type,
            "alternatives": answer.alternatives,
            "parts": answer.parts,
            "reason": answer.reason,
        }
    )


@router.post(
    "/attestations",
    name="issue_attestation",
    status_code=201,
    responses=examples.response_example(201, examples.ATTESTATION_RESPONSE),
    openapi_extra=examples.request_body(examples=examples.ATTESTATION_REQUESTS),
)
@declares(
    InvalidVIN,
    LimiterUnavailable,
    RateLimited,
    SuspiciousUsageBlocked,
    OwnerAuthorizationMissing,
    OwnerAuthorizationExpired,
    PurposeOutOfScope,
    rate_limit=True,
)
async def issue_attestation(
    body: AttestationRequest,
    request: Request,
    response: Response,
    log: QueryLogDep,
    account: VINAccount,
    state: StateDep,
) -> AttestationIssued:
    """A gateway-issued attestation for an interactive user's declaration (one per query).

    This endpoint takes no `VIN-Attestation`: it issues one, for the VIN in the body, to be sent
    with the next `POST /v1/lookups` or `POST /v1/vins/decode`."""
    now = int(time.time())
    normalized = vinlib.normalize(body.vin)
    log.vin = normalized
    # an invalid VIN is refused here, with its problems, before anything is signed
    log.decoded = require_valid(vinlib.decode(normalized))
    decision = await state.limiter.admit(
        account.id, jti=None, jti_ttl=0, cost=1, key_id=request.state.api_key_id
    )
    log.decision = decision
    response.headers.update(decision.headers())
    decision.raise_for_verdict()
    auth = body.owner_authorization
    if body.basis == "owner_authorized":
        if auth is None:
            raise OwnerAuthorizationMissing()
        if auth.valid_until < now:
            raise OwnerAuthorizationExpired()
        if auth.scope is not None and body.purpose not in auth.scope:
            raise PurposeOutOfScope()
    settings = state.settings
    ttl = min(settings.gateway_attestation_ttl_s, settings.attestation_max_lifetime_s)
    jti = secrets.token_urlsafe(18)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": account.id,
        "aud": settings.audience,
        "iat": now,
        "exp": now + ttl,
        "jti": jti,
        "vin_sha256": vin_digest(normalized),
        "basis": body.basis,
        "purpose": body.purpose,
    }
    if auth is not None:
        claims["owner_authorization"] = auth.model_dump(exclude_none=True)
    token = jws.sign(claims, state.gateway_attestation_key, TYP)
    log.outcome = "issued"
    return AttestationIssued(
        attestation=token, expires_at=datetime.fromtimestamp(now + ttl, UTC), jti=jti
    )


@router.get("/catalogue/categories", tags=["catalogue"])
@declares(*CATALOGUE_ERRORS)
async def categories(account: CurrentAccount, catalogue: CatalogueDep) -> CategoriesResponse:
    return CategoriesResponse.model_validate({"categories": await catalogue.categories()})
