"""Vehicles, owner grants and one-time codes (docs/api.md "Grants").

A VIN travels in the body of ``POST /v1/vehicles`` only; paths carry vehicle and grant ids."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import ClientIP, CurrentAccount, GrantServiceDep
from gateway.exceptions import InvalidVIN, NotFound, ServiceUnavailable
from gateway.grants.exceptions import (
    GrantCodeInvalid,
    GrantCodeThrottled,
    GrantNotPending,
    GrantToSelf,
    VehicleDeclarationsThrottled,
    VehicleExists,
    VehicleGrantLimitReached,
    VehicleLimitReached,
    WorkshopUnknown,
)
from gateway.grants.models import (
    GrantCreate,
    GrantPublic,
    VehicleCreate,
    VehiclePublic,
    VehicleUpdate,
)
from gateway.grants.schemas import (
    GrantCodeIssued,
    GrantCodeRedeem,
    GrantCreated,
    GrantList,
    GrantUses,
    VehicleList,
)
from gateway.limits.exceptions import LimiterUnavailable
from gateway.openapi import declares
from gateway.text import PathId

router = APIRouter(prefix="/v1", tags=["grants"])


# --- vehicles ---------------------------------------------------------------------------------


@router.post("/vehicles", status_code=201)
@declares(
    InvalidVIN,
    VehicleExists,
    VehicleLimitReached,
    VehicleDeclarationsThrottled,
    LimiterUnavailable,
)
async def create_vehicle(
    body: VehicleCreate, account: CurrentAccount, service: GrantServiceDep
) -> VehiclePublic:
    vehicle = await service.create_vehicle(account.id, body)
    return VehiclePublic.model_validate(vehicle, from_attributes=True)


@router.get("/vehicles")
async def list_vehicles(account: CurrentAccount, service: GrantServiceDep) -> VehicleList:
    vehicles = await service.list_vehicles(account.id)
    return VehicleList(
        vehicles=[VehiclePublic.model_validate(v, from_attributes=True) for v in vehicles]
    )


@router.patch("/vehicles/{vehicle_id}")
@declares(NotFound)
async def update_vehicle(
    vehicle_id: PathId, body: VehicleUpdate, account: CurrentAccount, service: GrantServiceDep
) -> VehiclePublic:
    vehicle = await service.update_vehicle(account.id, vehicle_id, body)
    return VehiclePublic.model_validate(vehicle, from_attributes=True)


@router.delete("/vehicles/{vehicle_id}", status_code=204)
# its grants go with it, and their search-log rows are unlinked first
@declares(NotFound, ServiceUnavailable)
async def delete_vehicle(
    vehicle_id: PathId, account: CurrentAccount, service: GrantServiceDep
) -> Response:
    await service.delete_vehicle(account.id, vehicle_id)
    return Response(status_code=204)


# --- grants -----------------------------------------------------------------------------------


@router.post("/grants", status_code=201)
@declares(NotFound, WorkshopUnknown, GrantToSelf, VehicleGrantLimitReached)
async def create_grant(
    body: GrantCreate, account: CurrentAccount, service: GrantServiceDep
) -> GrantCreated:
    return await service.create_grant(account.id, body)


@router.get("/grants")
async def list_grants(account: CurrentAccount, service: GrantServiceDep) -> GrantList:
    return await service.list_grants(account.id)


@router.post("/grants/{grant_id}/code")
@declares(NotFound, GrantNotPending)
async def new_grant_code(
    grant_id: PathId, account: CurrentAccount, service: GrantServiceDep
) -> GrantCodeIssued:
    return await service.new_code(account.id, grant_id)


@router.post("/grants/{grant_id}/revoke")
@declares(NotFound)
async def revoke_grant(
    grant_id: PathId, account: CurrentAccount, service: GrantServiceDep
) -> GrantPublic:
    return await service.revoke(account.id, grant_id)


@router.get("/grants/{grant_id}/uses")
# the search log is flushed before it is read
@declares(NotFound, ServiceUnavailable)
async def grant_uses(
    grant_id: PathId, account: CurrentAccount, service: GrantServiceDep
) -> GrantUses:
    return await service.grant_uses(account.id, grant_id)


@router.post("/grant-codes/redeem")
@declares(GrantCodeInvalid, GrantCodeThrottled, GrantToSelf, LimiterUnavailable)
async def redeem_grant_code(
    body: GrantCodeRedeem, ip: ClientIP, account: CurrentAccount, service: GrantServiceDep
) -> GrantPublic:
    return await service.redeem(account.id, ip, body.code)
