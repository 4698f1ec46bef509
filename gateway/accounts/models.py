"""Account data: one set of SQLModel classes per entity (Base, Create, Update, table, Public).

These tables live in the accounts database only, under their own metadata. Nothing here records
searches: that is the search log's, in another database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, EmailStr, field_validator
from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class AccountsModel(SQLModel, registry=registry()):
    """Base of the accounts database's tables (its own metadata)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class StrictInput(SQLModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[assignment]


# --- account --------------------------------------------------------------------------------


class AccountBase(SQLModel):
    email: EmailStr = Field(max_length=320)
    company: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=500)

    @field_validator("email", mode="after")
    @classmethod
    def _normalize_email(cls, value: str) -> str:
        return value.strip().lower()


class AccountCreate(AccountBase, StrictInput):
    password: str = Field(min_length=1, max_length=1024)
    privacy_policy_version: str = Field(max_length=64)


class AccountUpdate(StrictInput):
    email: EmailStr | None = Field(default=None, max_length=320)
    company: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=500)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)

    @field_validator("email", mode="after")
    @classmethod
    def _normalize_email(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


class Account(AccountBase, AccountsModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=512)
    role: str = Field(default="user", max_length=16)
    status: str = Field(default="active", max_length=16)
    suspended_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(nullable=False)
    registration_ip: str | None = Field(default=None, max_length=64)
    consent_version: str | None = Field(default=None, max_length=64)
    consent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AccountPublic(AccountBase):
    id: str
    role: str
    status: str
    created_at: datetime
    consent_version: str | None
    consent_at: datetime | None


# --- consent history -------------------------------------------------------------------------


class Consent(AccountsModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    policy_version: str = Field(max_length=64)
    action: str = Field(max_length=16)  # accept | withdraw
    at: datetime = _ts(nullable=False)


class ConsentPublic(SQLModel):
    policy_version: str
    action: str
    at: datetime


class ConsentAccept(StrictInput):
    privacy_policy_version: str = Field(max_length=64)


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyCreate(StrictInput):
    name: str = Field(min_length=1, max_length=100)


class ApiKey(AccountsModel, table=True):
    __tablename__ = "api_key"
    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ApiKeyPublic(SQLModel):
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str


# --- attestation keys -------------------------------------------------------------------------


class AttestationKeyCreate(StrictInput):
    jwk: dict[str, Any]
    name: str | None = Field(default=None, max_length=100)


class AttestationKey(AccountsModel, table=True):
    __tablename__ = "attestation_key"
    kid: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str | None = Field(default=None, max_length=100)
    alg: str = Field(max_length=8)
    jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    thumbprint: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class AttestationKeyPublic(SQLModel):
    kid: str
    alg: str
    name: str | None
    jwk: dict[str, Any]
    thumbprint: str
    created_at: datetime
    revoked_at: datetime | None = None


# --- admin audit trail ------------------------------------------------------------------------


class AdminAudit(AccountsModel, table=True):
    __tablename__ = "admin_audit"
    id: int | None = Field(default=None, primary_key=True)
    admin_id: str = Field(max_length=32, index=True)
    action: str = Field(max_length=32)
    target_account_id: str | None = Field(default=None, max_length=32, index=True)
    reason: str = Field(max_length=1000)
    at: datetime = _ts(nullable=False)


# --- suspicious-usage flags -------------------------------------------------------------------


class Flag(AccountsModel, table=True):
    """A limiter finding for admins: the policy, why, and evidence counts (never a VIN)."""

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=32, index=True)
    policy: str = Field(max_length=32)
    shadow: bool = False
    reason: str = Field(max_length=500)
    evidence: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    block_s: int = 0
    created_at: datetime = _ts(nullable=False)
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    resolved_by: str | None = Field(default=None, max_length=32)


class FlagPublic(SQLModel):
    id: int
    account_id: str
    policy: str
    shadow: bool
    reason: str
    evidence: dict[str, Any]
    block_s: int
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
