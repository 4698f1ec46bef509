"""Refusals of the VIN endpoints themselves (the attestation's are in ``gateway.security``).

``InvalidVIN`` is shared with the vehicle declarations, so it lives in ``gateway.exceptions``
(re-exported here for the VIN endpoints)."""

from __future__ import annotations

from gateway.exceptions import InvalidVIN

__all__ = ["InvalidVIN"]
