"""Refusals of the grants API (the VIN path's grant refusals are in ``gateway.security``)."""

from __future__ import annotations

from gateway.exceptions import Conflict, GatewayError
from gateway.limits.exceptions import RateLimited


class VehicleExists(Conflict):
    code, title = "vehicle_exists", "This account has already declared this vehicle"


class VehicleLimitReached(Conflict):
    code, title = "vehicle_limit_reached", "This account has declared as many vehicles as allowed"


class WorkshopUnknown(GatewayError):
    code, status, title = "workshop_unknown", 404, "No account has this workshop code"


class GrantCodeInvalid(GatewayError):
    """Unknown, expired and already used codes all look the same."""

    code, status, title = "grant_code_invalid", 404, "This code is not valid (any more)"


class GrantCodeThrottled(RateLimited):
    code, title = (
        "grant_code_throttled",
        "Too many wrong codes from this account or network: wait before trying again",
    )


class GrantNotPending(Conflict):
    code, title = "grant_not_pending", "The grant is not waiting for its code to be redeemed"


class GrantToSelf(GatewayError):
    code, status, title = "grant_to_self", 422, "An account cannot grant a vehicle to itself"


class VehicleDeclarationsThrottled(RateLimited):
    code, title = (
        "vehicle_declarations_throttled",
        "This account has declared as many vehicles as allowed today: wait before declaring more",
    )


class VehicleGrantLimitReached(Conflict):
    code, title = (
        "vehicle_grant_limit_reached",
        "This vehicle has as many live grants as allowed",
    )
