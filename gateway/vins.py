"""The VIN checks every endpoint that takes a VIN shares (the VIN endpoints, vehicle
declarations): one place, so that a VIN gets the same ``422 invalid_vin`` everywhere."""

from __future__ import annotations

import vin as vinlib
from gateway.exceptions import InvalidVIN


def normalized_vin(raw_vin: str) -> str:
    """The VIN as it is hashed and decoded (``vin.normalize``), or a 422 when it is not printable
    ASCII: ``errors`` give each such character's position, never the character."""
    try:
        return vinlib.normalize(raw_vin)
    except vinlib.VINError as exc:
        raise InvalidVIN(
            "The VIN has problems: " + exc.code, errors=[e.to_dict() for e in exc.errors]
        ) from None


def require_valid(decoded: vinlib.DecodedVIN) -> vinlib.DecodedVIN:
    """The decoded VIN, or a 422 listing every problem (code, position, message)."""
    if not decoded.valid:
        raise InvalidVIN(
            "The VIN has problems: " + ", ".join(sorted({e.code for e in decoded.errors})),
            errors=[e.to_dict() for e in decoded.errors],
        )
    return decoded


def checked_vin(raw_vin: str) -> str:
    """The normalized VIN of a valid VIN, or the 422 of ``normalized_vin`` / ``require_valid``."""
    normalized = normalized_vin(raw_vin)
    require_valid(vinlib.decode(normalized))
    return normalized
