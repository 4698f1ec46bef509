"""Account data: one set of SQLModel classes per entity (Base, Create, Update, table, Public).

These tables live in the accounts database only, under their own metadata. Nothing here records
searches: that is the search log's, in another database.

What clients send (Create, Update, the login form) is text checked by ``gateway.text`` (no
control or invisible characters, a length limit on every field); the table and Public classes
take what is stored as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, field_validator
from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from gateway.accounts.codes import display, new_workshop_code
from gateway.text import Line, Secret, Text


class AccountsModel(SQLModel, registry=registry()):
    """Base of the accounts database's tables (its own metadata)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that always reads back an aware UTC datetime.

    PostgreSQL keeps the offset; SQLite stores none and returned naive datetimes, which the API
    rendered without an offset (not the RFC 3339 docs/api.md promises). Values are written in
    UTC, so a naive one read back is UTC. The column type in the migrations is unchanged."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), **kw))


class StrictInput(SQLModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[assignment]


def _lower_email(value: str) -> str:
    return value.strip().lower()


#: An email as clients send it: trimmed and lower-cased (what is stored and looked up).
EmailIn = Annotated[EmailStr, Line(320), AfterValidator(_lower_email)]
Company = Annotated[str, Line(200)]
Phone = Annotated[str, Line(40)]
Address = Annotated[str, Text(500)]  # a postal address may take several lines
Password = Annotated[str, Secret(1024, min_length=1)]
PolicyVersion = Annotated[str, Line(64)]
KeyName = Annotated[str, Line(100)]


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


class AccountCreate(StrictInput):
    email: EmailIn
    company: Company | None = None
    phone: Phone | None = None
    address: Address | None = None
    password: Password
    privacy_policy_version: PolicyVersion


class AccountUpdate(StrictInput):
    email: EmailIn | None = None
    company: Company | None = None
    phone: Phone | None = None
    address: Address | None = None
    password: Password | None = None
    current_password: Annotated[str, Secret(1024)] | None = None


class LoginForm(BaseModel):
    """The OAuth2 password form of ``POST /v1/auth/token`` (RFC 6749 4.3.2), its text checked
    like every body's. ``scope`` and the client credentials are accepted and not used."""

    grant_type: Literal["password"] | None = None
    username: Annotated[str, Line(320)]  # the email (trimmed and lower-cased when looked up)
    password: Annotated[str, Secret(1024)]
    scope: Annotated[str, Line(1000)] = ""
    client_id: Annotated[str, Line(200)] | None = None
    client_secret: Annotated[str, Secret(1024)] | None = None


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
    consent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    # the account's public code (8 Crockford base32 characters, shown XXXX-XXXX): an owner
    # grants this workshop access to a vehicle by it (gateway/grants)
    workshop_code: str = Field(
        default_factory=new_workshop_code, max_length=8, unique=True, index=True
    )


class AccountPublic(AccountBase):
    id: str
    role: str
    status: str
    created_at: datetime
    consent_version: str | None
    consent_at: datetime | None
    workshop_code: Annotated[str, AfterValidator(display)]  # XXXX-XXXX


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
    privacy_policy_version: PolicyVersion


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyCreate(StrictInput):
    name: Annotated[str, Line(100, min_length=1)]


class ApiKey(AccountsModel, table=True):
    __tablename__ = "api_key"
    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class ApiKeyPublic(SQLModel):
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str


# --- attestation keys -------------------------------------------------------------------------


class AttestationKeyCreate(StrictInput):
    jwk: dict[str, Any]  # checked member by member by gateway.security.jws (only those stored)
    name: KeyName | None = None


class AttestationKey(AccountsModel, table=True):
    __tablename__ = "attestation_key"
    kid: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str | None = Field(default=None, max_length=100)
    alg: str = Field(max_length=8)
    jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    thumbprint: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


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
    resolved_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
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
