"""Administration: suspension, search statistics, and 6.4 disclosure (itself audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from gateway.accounts.models import AccountPublic, FlagPublic
from gateway.deps import CurrentAdmin, StateDep
from gateway.exceptions import NotFound, ServiceUnavailable
from gateway.limits.exceptions import LimiterUnavailable
from gateway.openapi import declares
from gateway.searchlog.models import SearchEventPublic
from gateway.text import PathId, Text

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # may take several lines; at most what an account's suspended_reason column holds
    reason: Annotated[str, Text(500, min_length=3)]


class Disclosure(BaseModel):
    account_id: str
    requested_by: str
    reason: str
    rows: list[SearchEventPublic]


@router.post("/accounts/{account_id}/suspend")
@declares(NotFound)
async def suspend(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> AccountPublic:
    account = await state.accounts.set_status(admin.id, account_id, "suspended", body.reason)
    return AccountPublic.model_validate(account, from_attributes=True)


@router.post("/accounts/{account_id}/unsuspend")
@declares(NotFound)
async def unsuspend(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> AccountPublic:
    account = await state.accounts.set_status(admin.id, account_id, "active", body.reason)
    return AccountPublic.model_validate(account, from_attributes=True)


@router.get("/flags")
async def flags(
    admin: CurrentAdmin,
    state: StateDep,
    include_resolved: bool = Query(default=False),
    limit: int = Query(default=200, ge=1, le=1000),
) -> list[FlagPublic]:
    """Suspicious-usage findings: policy, reason, evidence counts (never a VIN)."""
    rows = await state.accounts.flags(unresolved_only=not include_resolved, limit=limit)
    return [FlagPublic.model_validate(r, from_attributes=True) for r in rows]


class Unblocked(BaseModel):
    account_id: str
    was_blocked: bool
    flags_resolved: int


@router.post("/accounts/{account_id}/unblock")
@declares(NotFound, LimiterUnavailable)
async def unblock(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> Unblocked:
    """Lift a limiter block and its counters by hand; resolves the account's open flags."""
    await state.accounts.get(account_id)
    was_blocked = await state.limiter.unblock(account_id)
    resolved = await state.accounts.resolve_flags(admin.id, account_id, body.reason)
    return Unblocked(account_id=account_id, was_blocked=was_blocked, flags_resolved=resolved)


@router.post("/accounts/{account_id}/disclosure")
@declares(NotFound, ServiceUnavailable)
async def disclosure(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> Disclosure:
    """Re-identify one account's queries for a misuse case; recorded in the audit trail first."""
    await state.accounts.get(account_id)
    await state.accounts.audit(admin.id, "disclosure", account_id, body.reason)
    rows = await state.searchlog.rows_for_account(account_id)
    return Disclosure(account_id=account_id, requested_by=admin.id, reason=body.reason, rows=rows)


@router.get("/search-stats")
@declares(ServiceUnavailable)
async def search_stats(
    admin: CurrentAdmin,
    state: StateDep,
    days: int = Query(default=30, ge=1, le=400),
) -> dict[str, Any]:
    """Daily counts by make, model year, country and outcome, from the search-log store alone."""
    since, counts = await state.searchlog.daily_counts(days)
    return {"since": since, "counts": counts}


class LegalHold(BaseModel):
    account_id: str
    held: bool
    changed_epochs: int


@router.post("/accounts/{account_id}/legal-hold")
@declares(NotFound)
async def legal_hold(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> LegalHold:
    """Keep one account's search-log rows through retention purges and erasure (a misuse
    case, a court order). Recorded in the audit trail first; the log store only gets the
    account's pseudonyms. Covers the key epochs live now: place it again to extend it."""
    await state.accounts.get(account_id)
    await state.accounts.audit(admin.id, "legal_hold", account_id, body.reason)
    added = await state.searchlog.hold_account(account_id)
    return LegalHold(account_id=account_id, held=True, changed_epochs=added)


@router.post("/accounts/{account_id}/legal-hold/release")
async def release_legal_hold(
    account_id: PathId, body: Reason, admin: CurrentAdmin, state: StateDep
) -> LegalHold:
    """Lift a legal hold (the account may already be erased): its rows age out again."""
    await state.accounts.audit(admin.id, "legal_hold_release", account_id, body.reason)
    removed = await state.searchlog.release_account(account_id)
    return LegalHold(account_id=account_id, held=False, changed_epochs=removed)
