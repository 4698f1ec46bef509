"""Refusals of the VIN endpoints themselves (the attestation's are in ``gateway.security``)."""

from __future__ import annotations

from gateway.exceptions import GatewayError


class InvalidVIN(GatewayError):
    """The VIN does not validate; ``errors`` lists every problem (code, position, message)."""

    code, status, title = "invalid_vin", 422, "The VIN is not valid"
