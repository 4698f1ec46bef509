"""Owner-issued authorization grants: what the request path needs to know about one grant.

The tables (vehicles, grants) live in the accounts database; this module starts with the facts
the VIN path checks on every ``owner_granted`` query (docs/grants.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol


def vehicle_pseudonym(key: bytes, normalized_vin: str) -> str:
    """The keyed pseudonym a declared vehicle is stored under (HMAC-SHA256, hex): the clear VIN
    is never stored. ``key`` is the vehicle domain's key (``<secrets dir>/vehicle_pseudonym.key``),
    outside both databases and unlike the search log's keys never rotated (a declared vehicle
    stays declared)."""
    return hmac.new(key, normalized_vin.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class GrantState:
    """One grant as the attestation step checks it (cached per worker, dropped on revocation)."""

    id: str
    owner_id: str
    grantee_id: str | None  # None while pending: its one-time code is not redeemed yet
    vin_pseudonym: str  # vehicle_pseudonym() of the vehicle's normalized VIN
    purposes: frozenset[str]
    valid_until: int  # epoch seconds
    max_uses: int | None  # None: no limit on the number of queries
    revoked: bool
    created_at: int  # epoch seconds


class GrantResolver(Protocol):
    async def grant(self, grant_id: str) -> GrantState | None:
        """The grant by id (None: unknown or deleted), from this worker's cache when fresh."""
        ...
