"""The privacy policy and the account holder's rights over their data.

This module is where account data and the search log meet, at the holder's own request:
access and copy (export), correction (PATCH), erasure and cancellation (DELETE). The accounts
and search-log packages never import each other.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from gateway.accounts.exceptions import EmailTaken, WeakPassword
from gateway.accounts.models import AccountPublic, AccountUpdate
from gateway.deps import CurrentAccount, StateDep
from gateway.exceptions import InvalidRequest, NotFound, ServiceUnavailable
from gateway.openapi import declares

router = APIRouter(prefix="/v1", tags=["privacy"])


class PrivacyPolicy(BaseModel):
    version: str
    effective_date: date
    text_url: str


@router.get("/privacy-policy")
async def privacy_policy(state: StateDep) -> PrivacyPolicy:
    s = state.settings
    return PrivacyPolicy(
        version=s.privacy_policy_version,
        effective_date=s.privacy_policy_effective_date,
        text_url=s.privacy_policy_url,
    )


@router.get("/me")
@declares(NotFound)
async def me(account: CurrentAccount, state: StateDep) -> AccountPublic:
    return AccountPublic.model_validate(await state.accounts.get(account.id), from_attributes=True)


@router.patch("/me")
@declares(NotFound, InvalidRequest, WeakPassword, EmailTaken)
async def correct_me(
    body: AccountUpdate, account: CurrentAccount, state: StateDep
) -> AccountPublic:
    updated = await state.accounts.update(account.id, body)
    return AccountPublic.model_validate(updated, from_attributes=True)


@router.delete("/me", status_code=204)
# the search log must be flushed, and the account's Redis keys deleted, before the erasure
@declares(ServiceUnavailable)
async def cancel_me(account: CurrentAccount, state: StateDep) -> Response:
    """Cancel the account: its search-log rows (queued ones flushed first) are erased, then its
    vehicles and grants (given and held; no search-log row stays linked to them), then its
    limiter and login-throttle keys in Redis, then the account itself. Rows under a legal hold
    stay until it is lifted (docs/searchlog.md)."""
    await state.searchlog.erase_account(account.id)
    await state.grant_service.erase_account(account.id)
    await state.accounts.delete(account.id)
    return Response(status_code=204)


@router.get("/me/export")
@declares(NotFound, ServiceUnavailable)
async def export_me(account: CurrentAccount, state: StateDep) -> dict[str, Any]:
    data = await state.accounts.export(account.id)
    data.update(await state.grant_service.export(account.id))  # vehicles, grants
    rows = await state.searchlog.rows_for_account(account.id)
    data["search_log"] = [r.model_dump() for r in rows]
    return data
