"""Request and response bodies of the VIN endpoints (the VIN only ever travels in bodies).

Request text is checked by ``gateway.text``; the VIN's characters by ``vin.normalize`` (a bad
one is ``invalid_vin``, see ``gateway.text.VinText``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway.security.attestation import GRANT_ID
from gateway.text import Line, VinText

#: A catalogue id (a vehicle type, a category).
CatalogueId = Annotated[str, Line(64)]
#: A grant id, in the form the attestation's ``grant_id`` claim must have. pydantic's ``pattern``
#: is a search (and so is JSON Schema's), so the form is anchored at both ends: ``$`` is the end
#: of the text in pydantic's Rust engine and in ECMA-262, not "before a final newline".
GrantId = Annotated[str, Field(pattern=f"^{GRANT_ID.pattern}$", max_length=32)]


class VinBody(BaseModel):
    """Every VIN request body has a ``vin``; endpoints subclass it with their own fields."""

    model_config = ConfigDict(extra="forbid")
    vin: VinText = Field(
        description="The VIN: 17 ASCII letters and digits (trimmed, upper-cased; any character "
        "that is not printable ASCII is refused as invalid_vin, by position)"
    )


class DecodeRequest(VinBody):
    pass


class LookupRequest(VinBody):
    categories: list[CatalogueId] | None = Field(default=None, max_length=20)
    vehicle_type_id: CatalogueId | None = None


class CheckDigitOut(BaseModel):
    required: bool
    valid: bool | None
    expected: str | None
    found: str | None


class VehicleOut(BaseModel):
    """The decoded vehicle (see the `vin` library; the same object as `vin decode --json`)."""

    vin: str
    valid: bool
    errors: list[dict[str, Any]]
    wmi: str | None
    vds: str | None
    vis: str | None
    manufacturer: str | None
    make: str | None
    make_candidates: list[str]
    country: str | None
    country_code: str | None
    region: str | None
    model_year: int | None
    model_year_candidates: list[int]
    plant_code: str | None
    serial_number: str | None
    check_digit: CheckDigitOut


class DecodeResponse(BaseModel):
    vehicle: VehicleOut


class VehicleTypeOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    make: str
    model: str
    years: dict[str, int | None]


class PartOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    part_number: str
    name: str
    category: str
    brand: str


class LookupResponse(BaseModel):
    query_id: str
    vehicle: VehicleOut
    vehicle_type: VehicleTypeOut | None
    alternatives: list[VehicleTypeOut]
    parts: list[PartOut]
    reason: str | None = None


class OwnerAuthorizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: Annotated[str, Line(64, min_length=1)]
    # epoch seconds as a JSON integer, like the attestation's own claims (not false, 0.0 or "0")
    valid_until: Annotated[int, Field(strict=True)]
    scope: list[Literal["parts_inquiry", "maintenance"]] | None = None


class AttestationRequest(VinBody):
    basis: Literal["owner", "owner_authorized", "owner_granted"]
    purpose: Literal["parts_inquiry", "maintenance"]
    owner_authorization: OwnerAuthorizationIn | None = None
    grant_id: GrantId | None = Field(
        default=None,
        validate_default=True,
        description="basis owner_granted: the id of the owner's grant this account received",
    )

    @field_validator("grant_id")
    @classmethod
    def _needed_by_its_basis(cls, grant_id: str | None, info: ValidationInfo) -> str | None:
        if grant_id is None and info.data.get("basis") == "owner_granted":
            raise PydanticCustomError("missing", "basis owner_granted needs a grant_id")
        return grant_id


class AttestationIssued(BaseModel):
    attestation: str
    expires_at: datetime
    jti: str


class Category(BaseModel):
    id: str
    name: str


class CategoriesResponse(BaseModel):
    categories: list[Category]
