"""All queries on the accounts database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.accounts.models import Account, AdminAudit, ApiKey, AttestationKey, Consent


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str) -> Account | None:
        return await self.session.get(Account, account_id)

    async def get_by_email(self, email: str) -> Account | None:
        result = await self.session.exec(select(Account).where(Account.email == email))
        return result.first()

    async def add(self, obj: object) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def delete_account(self, account_id: str) -> None:
        for model in (Consent, ApiKey, AttestationKey):
            await self.session.exec(delete(model).where(model.account_id == account_id))  # type: ignore[attr-defined]
        await self.session.exec(delete(Account).where(Account.id == account_id))  # type: ignore[arg-type]

    async def consents(self, account_id: str) -> Sequence[Consent]:
        return await self._all(
            select(Consent).where(Consent.account_id == account_id).order_by(Consent.id)  # type: ignore[arg-type]
        )

    async def api_keys(self, account_id: str) -> Sequence[ApiKey]:
        return await self._all(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at)  # type: ignore[arg-type]
        )

    async def api_key(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def attestation_keys(self, account_id: str) -> Sequence[AttestationKey]:
        return await self._all(
            select(AttestationKey)
            .where(AttestationKey.account_id == account_id)  # type: ignore[arg-type]
            .order_by(AttestationKey.created_at)  # type: ignore[arg-type]
        )

    async def attestation_key(self, kid: str) -> AttestationKey | None:
        return await self.session.get(AttestationKey, kid)

    async def audit(self, admin_id: str, action: str, target: str | None, reason: str) -> None:
        await self.add(AdminAudit(admin_id=admin_id, action=action, target_account_id=target,
                                  reason=reason))

    async def audit_trail(self, target: str | None = None) -> Sequence[AdminAudit]:
        query = select(AdminAudit).order_by(AdminAudit.id)  # type: ignore[arg-type]
        if target is not None:
            query = query.where(AdminAudit.target_account_id == target)  # type: ignore[arg-type]
        return await self._all(query)

    async def accounts_page(self, after: str | None, limit: int) -> Sequence[Account]:
        query = select(Account).order_by(Account.id).limit(limit)  # type: ignore[arg-type]
        if after:
            query = query.where(Account.id > after)  # type: ignore[arg-type]
        return await self._all(query)

    async def _all(self, query):  # type: ignore[no-untyped-def]
        result = await self.session.exec(query)
        return list(result.all())

    async def commit(self) -> None:
        await self.session.commit()


def revoked(at: datetime | None) -> bool:
    return at is not None
