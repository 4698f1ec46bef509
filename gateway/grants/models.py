"""Owner-issued authorization grants: what the request path needs to know about one grant.

The tables (vehicles, grants) live in the accounts database; this module starts with the facts
the VIN path checks on every ``owner_granted`` query (docs/grants.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import AwareDatetime, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from gateway.accounts.models import AccountsModel, StrictInput, UtcDateTime, utcnow
from gateway.text import Line, VinText


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


def grant_expired(valid_until: int, now: int) -> bool:
    """The one expiry rule (the VIN path's grant step, the statuses, new codes, the purge):
    a grant is valid through the second ``valid_until`` (epoch s) and expired after it."""
    return valid_until < now


def epoch_s(at: datetime) -> int:
    """A stored time as the whole epoch seconds ``GrantState`` and ``grant_expired`` use."""
    return int(at.timestamp())


class GrantResolver(Protocol):
    async def grant(self, grant_id: str) -> GrantState | None:
        """The grant by id (None: unknown or deleted), from this worker's cache when fresh."""
        ...


# --- the tables (accounts database) ---------------------------------------------------------

#: What a grant may be used for: the attestation purposes.
Purpose = Literal["parts_inquiry", "maintenance"]
PURPOSES: tuple[Purpose, ...] = ("parts_inquiry", "maintenance")
Label = Annotated[str, Line(64)]


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False))


def _when() -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class Vehicle(AccountsModel, table=True):
    """A vehicle an account declared as its own: its VIN only as ``vehicle_pseudonym``."""

    __table_args__ = (
        UniqueConstraint("owner_account_id", "vin_pseudonym", name="uq_vehicle_owner_vin"),
    )
    id: str = Field(primary_key=True, max_length=32)  # veh_ + 16 hex
    owner_account_id: str = Field(max_length=32, foreign_key="account.id", ondelete="CASCADE")
    vin_pseudonym: str = Field(max_length=64)
    label: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created()


class OwnerGrant(AccountsModel, table=True):
    """An owner's grant of one vehicle to one workshop account (pending until its one-time code
    is redeemed when it was made without a workshop code)."""

    __tablename__ = "owner_grant"
    id: str = Field(primary_key=True, max_length=32)  # grt_ + 20 hex
    vehicle_id: str = Field(max_length=32, foreign_key="vehicle.id", ondelete="CASCADE", index=True)
    owner_account_id: str = Field(
        max_length=32, foreign_key="account.id", ondelete="CASCADE", index=True
    )
    grantee_account_id: str | None = Field(
        default=None, max_length=32, foreign_key="account.id", ondelete="CASCADE", index=True
    )
    purposes: list[str] = Field(sa_column=Column(JSON, nullable=False))
    valid_until: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    max_uses: int | None = None
    created_at: datetime = _created()
    redeemed_at: datetime | None = _when()
    revoked_at: datetime | None = _when()
    # HMAC of the pending one-time code (None once redeemed or revoked); unique: redemption
    # finds the grant by it through its index
    code_digest: str | None = Field(default=None, max_length=64, unique=True, index=True)
    code_expires_at: datetime | None = _when()


# --- what clients send ----------------------------------------------------------------------


class VehicleCreate(SQLModel):
    # like the VIN endpoints' bodies: not trimmed here (vin.normalize trims ASCII whitespace)
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]
    vin: VinText = PydanticField(
        description="The vehicle's VIN: checked like the VIN endpoints' (invalid_vin), never "
        "stored, echoed or logged; the gateway keeps a keyed pseudonym of it"
    )
    label: Label | None = None


class VehicleUpdate(StrictInput):
    label: Label | None = None


class GrantCreate(StrictInput):
    vehicle_id: Annotated[str, Line(32)]
    purposes: list[Purpose] = PydanticField(
        default_factory=lambda: list(PURPOSES), min_length=1, max_length=len(PURPOSES)
    )
    valid_until: AwareDatetime
    max_uses: Annotated[int, PydanticField(ge=1, le=10_000)] | None = None
    workshop_code: Annotated[str, Line(32)] | None = None


# --- what the API answers -------------------------------------------------------------------


class VehiclePublic(SQLModel):
    id: str
    label: str | None
    created_at: datetime


class VehicleRef(SQLModel):
    id: str
    label: str | None


class PartyRef(SQLModel):
    """The other account of a grant, as far as the API shows it."""

    workshop_code: str  # XXXX-XXXX
    company: str | None


GrantStatus = Literal["pending", "active", "revoked", "expired", "exhausted"]


class GrantPublic(SQLModel):
    id: str
    status: GrantStatus
    purposes: list[str]
    valid_until: datetime
    max_uses: int | None
    uses: int | None  # queries made under it (Redis); null when the count could not be read
    created_at: datetime
    redeemed_at: datetime | None
    revoked_at: datetime | None
    vehicle: VehicleRef | None  # the owner's view only
    grantee: PartyRef | None  # null while pending
    owner: PartyRef | None  # the grantee's view only
