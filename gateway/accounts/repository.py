"""All queries on the accounts database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from gateway.accounts.models import (
    Account,
    AdminAudit,
    ApiKey,
    AttestationKey,
    Consent,
    Flag,
)

T = TypeVar("T")
K = TypeVar("K", ApiKey, AttestationKey)


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str) -> Account | None:
        return await self.session.get(Account, account_id)

    async def get_by_email(self, email: str) -> Account | None:
        result = await self.session.exec(select(Account).where(Account.email == email))
        return result.first()

    async def add(self, obj: Any) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def delete_account(self, account_id: str) -> None:
        for model in (Consent, ApiKey, AttestationKey):
            await self.session.exec(delete(model).where(col(model.account_id) == account_id))
        await self.session.exec(delete(Account).where(col(Account.id) == account_id))

    async def consents(self, account_id: str) -> Sequence[Consent]:
        return await self._all(
            select(Consent).where(Consent.account_id == account_id).order_by(col(Consent.id))
        )

    async def api_keys(self, account_id: str) -> Sequence[ApiKey]:
        return await self._all(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(col(ApiKey.created_at))
        )

    async def api_key(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def attestation_keys(self, account_id: str) -> Sequence[AttestationKey]:
        return await self._all(
            select(AttestationKey)
            .where(AttestationKey.account_id == account_id)
            .order_by(col(AttestationKey.created_at))
        )

    async def attestation_key(self, kid: str) -> AttestationKey | None:
        return await self.session.get(AttestationKey, kid)

    async def key(self, model: type[K], ident: str) -> K | None:
        """An API key or an attestation key by its id."""
        return await self.session.get(model, ident)

    async def audit(self, admin_id: str, action: str, target: str | None, reason: str) -> None:
        await self.add(
            AdminAudit(admin_id=admin_id, action=action, target_account_id=target, reason=reason)
        )

    async def audit_trail(self, target: str | None = None) -> Sequence[AdminAudit]:
        query = select(AdminAudit).order_by(col(AdminAudit.id))
        if target is not None:
            query = query.where(AdminAudit.target_account_id == target)
        return await self._all(query)

    async def flags(self, *, unresolved_only: bool, limit: int) -> Sequence[Flag]:
        query = select(Flag).order_by(col(Flag.id).desc()).limit(limit)
        if unresolved_only:
            query = query.where(col(Flag.resolved_at).is_(None))
        return await self._all(query)

    async def open_flags_of(self, account_id: str) -> Sequence[Flag]:
        return await self._all(
            select(Flag).where(Flag.account_id == account_id, col(Flag.resolved_at).is_(None))
        )

    async def _all(self, query: SelectOfScalar[T]) -> Sequence[T]:
        result = await self.session.exec(query)
        return list(result.all())

    async def commit(self) -> None:
        await self.session.commit()
