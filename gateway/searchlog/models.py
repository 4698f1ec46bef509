"""The pseudonymized search log: its own database, its own metadata, no account table.

One row per VIN query, refused ones included. Pseudonyms are keyed HMACs (see ``pseudonym``);
IPs are truncated (IPv4 /24, IPv6 /48); nothing here is a clear VIN, an email, a full IP or a
raw token, and nothing references the accounts database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class SearchLogModel(SQLModel, registry=registry()):
    """Base of the search-log database's tables (its own metadata)."""


class SearchEventBase(SQLModel):
    at: int = Field(index=True)  # epoch seconds
    key_epoch: str = Field(max_length=16)
    account_pseudonym: str = Field(max_length=64)
    vin_pseudonym: str | None = Field(default=None, max_length=64)
    wmi: str | None = Field(default=None, max_length=6)
    make: str | None = Field(default=None, max_length=64)
    model_year: int | None = None
    country_code: str | None = Field(default=None, max_length=2)
    endpoint: str = Field(max_length=32)
    outcome: str = Field(max_length=16)  # ok | refused | miss
    code: str | None = Field(default=None, max_length=64)
    basis: str | None = Field(default=None, max_length=32)
    purpose: str | None = Field(default=None, max_length=32)
    owner_ref_pseudonym: str | None = Field(default=None, max_length=64)
    jti_digest: str | None = Field(default=None, max_length=64)
    token_digest: str | None = Field(default=None, max_length=64)  # keyed, like the jti's
    gateway_issued: bool | None = None
    client_ip: str | None = Field(default=None, max_length=64)  # truncated
    ua_family: str | None = Field(default=None, max_length=32)
    latency_ms: float | None = None
    instance: str = Field(max_length=64)


class SearchEvent(SearchEventBase, SearchLogModel, table=True):
    """On PostgreSQL the table is partitioned by month on ``at`` (migration 0002): its primary
    key and unique key then include ``at``. ``event_id`` makes inserts idempotent: an entry the
    stream redelivers after it was in fact inserted is skipped.

    A subject's rows are found per key epoch: ``account_pseudonym = p AND at`` within the epoch's
    range (``(account_pseudonym, at)``, migration 0004); a row's ``key_epoch`` is the epoch of its
    ``at``, so ``key_epoch`` needs no index of its own.

    ``grant_pseudonym``: the grant the query was made under (keyed, domain ``grant``), set
    only when the grant resolved to the querying account; NULL otherwise, and once the grant
    is forgotten (``SearchLog.forget_grants``). Not part of ``SearchEventBase``: exports and
    disclosures show only whether a row was a grant use (``SearchEventPublic.granted``). Its
    index is partial (rows with a grant only), migration 0005."""

    __tablename__ = "search_event"
    __table_args__ = (
        UniqueConstraint("event_id", "at", name="uq_search_event_event_id_at"),
        Index("ix_search_event_account_pseudonym_at", "account_pseudonym", "at"),
        Index(
            "ix_search_event_grant_pseudonym_at",
            "grant_pseudonym",
            "at",
            postgresql_where=text("grant_pseudonym IS NOT NULL"),
            sqlite_where=text("grant_pseudonym IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=32)  # random, assigned when the event is recorded
    grant_pseudonym: str | None = Field(default=None, max_length=64)


class LegalHold(SearchLogModel, table=True):
    """An account pseudonym (of one key epoch) whose rows must survive purges.

    Placed by an admin (who and why are recorded in the accounts store's audit trail); the log
    store itself only ever sees the pseudonym.
    """

    __tablename__ = "legal_hold"
    key_epoch: str = Field(max_length=16, primary_key=True)
    account_pseudonym: str = Field(max_length=64, primary_key=True)
    created_at: int


class SearchDailyCount(SearchLogModel, table=True):
    """Daily rollups for the admin statistics: how many events of a UTC day (``day``: the
    day's start, epoch seconds) had ``value`` in ``dimension`` (make, model_year, ...).

    ``value`` is the JSON text of the row's value (``"Honda"``, ``2003``, ``null``): lossless,
    typed, and never NULL, so it can be part of the key. Kept up to date by the writer in the
    insert's own transaction (only rows actually inserted count), backfilled by migration 0004.
    No pseudonym, no account, no combination of dimensions: kept when rows are erased or purged
    (docs/searchlog.md, data map)."""

    __tablename__ = "search_daily_count"
    dimension: str = Field(max_length=16, primary_key=True)
    day: int = Field(primary_key=True)
    value: str = Field(primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class SearchEventPublic(SearchEventBase):
    """A row as its account (export) or an admin (disclosure) sees it: whether it was a use of
    an owner's grant, never which grant (its pseudonym)."""

    granted: bool = False

    @classmethod
    def of(cls, row: SearchEvent) -> SearchEventPublic:
        public = cls.model_validate(row, from_attributes=True)
        public.granted = row.grant_pseudonym is not None
        return public


@dataclass(frozen=True, slots=True)
class GrantUseRow:
    """One use of a grant as its owner sees it (``SearchLog.grant_uses``)."""

    at: datetime  # aware, UTC
    endpoint: str
    purpose: str | None
    outcome: str
    code: str | None
