"""Bodies of the grants API that are not one table's Create/Update/Public class."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict

from gateway.grants.models import GrantPublic, VehiclePublic
from gateway.text import Line


class GrantCodeRedeem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Line(64)]  # XXXXX-XXXXX; case, spaces, hyphens and O/I/L forgiven


class VehicleList(BaseModel):
    vehicles: list[VehiclePublic]


class GrantCreated(BaseModel):
    grant: GrantPublic
    code: str | None = None  # XXXXX-XXXXX, shown in this answer only (pending grants)
    code_expires_at: datetime | None = None
    qr_svg: str | None = None  # the code's QR code, an SVG document


class GrantCodeIssued(BaseModel):
    grant: GrantPublic
    code: str
    code_expires_at: datetime
    qr_svg: str


class GrantList(BaseModel):
    given: list[GrantPublic]
    received: list[GrantPublic]


class GrantUse(BaseModel):
    at: datetime
    endpoint: str
    purpose: str | None
    outcome: str
    code: str | None


class GrantUses(BaseModel):
    grant: GrantPublic
    uses: list[GrantUse]
