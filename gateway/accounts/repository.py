"""All queries on the accounts database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, delete, exists, null
from sqlalchemy import select as core_select
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


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """What one request needs about its caller, read in one statement (no email, no hash of the
    password: only the columns the request path uses)."""

    account_id: str
    role: str
    status: str
    consent_version: str | None
    secret_sha256: str | None  # the API key's (None when resolving an access token's account)
    kid: str | None  # the attestation key, when asked for, live and this account's
    jwk: dict[str, Any] | None
    flagged: bool = False  # the account has an unresolved flag of an enforced policy


def _flagged(account_id: Any) -> tuple[ColumnElement[bool], ...]:
    """The flags that make an account "flagged" (the grant policy ``flagged``): unresolved, and
    of an enforced policy. A shadow flag (``Flag.shadow``: a policy that only observes, the
    limiter's or the grant policy's own) never does: observing must not change what the
    account is served, and the grant policy's shadow flag would otherwise feed itself."""
    return (
        col(Flag.account_id) == account_id,
        col(Flag.resolved_at).is_(None),
        col(Flag.shadow).is_(False),
    )


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str) -> Account | None:
        return await self.session.get(Account, account_id)

    async def get_by_email(self, email: str) -> Account | None:
        result = await self.session.exec(select(Account).where(Account.email == email))
        return result.first()

    async def get_by_workshop_code(self, code: str) -> Account | None:
        result = await self.session.exec(select(Account).where(Account.workshop_code == code))
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

    async def credential(
        self, *, account_id: str | None = None, api_key_id: str | None = None, kid: str | None
    ) -> CredentialRow | None:
        """Account state, the API key's secret digest and the attestation key in ONE statement.

        Exactly one of ``account_id`` (an access token's subject) and ``api_key_id`` (a live,
        unrevoked key) is given. Every join is on a primary key (``api_key.id``, ``account.id``,
        ``attestation_key.kid``, each indexed by the initial migration); the attestation key is
        a LEFT JOIN, so an unknown, revoked or other account's kid yields NULL columns. Whether the
        account is flagged is an EXISTS on ``flag.account_id`` (indexed), see ``_flagged``."""
        open_flag = exists().where(*_flagged(col(Account.id))).label("flagged")
        stmt = core_select(
            col(Account.id),
            col(Account.role),
            col(Account.status),
            col(Account.consent_version),
            (col(ApiKey.secret_sha256) if api_key_id is not None else null()).label("secret"),
            (col(AttestationKey.kid) if kid is not None else null()).label("kid"),
            (col(AttestationKey.jwk) if kid is not None else null()).label("jwk"),
            open_flag,
        )
        if api_key_id is not None:
            stmt = stmt.select_from(ApiKey).join(Account, col(Account.id) == ApiKey.account_id)
            stmt = stmt.where(col(ApiKey.id) == api_key_id, col(ApiKey.revoked_at).is_(None))
        elif account_id is not None:
            stmt = stmt.select_from(Account).where(col(Account.id) == account_id)
        else:
            raise ValueError("give account_id or api_key_id")
        if kid is not None:
            stmt = stmt.outerjoin(
                AttestationKey,
                and_(
                    col(AttestationKey.kid) == kid,
                    col(AttestationKey.account_id) == Account.id,
                    col(AttestationKey.revoked_at).is_(None),
                ),
            )
        connection = await self.session.connection()
        row = (await connection.execute(stmt.limit(1))).first()
        if row is None:
            return None
        return CredentialRow(
            account_id=row[0],
            role=row[1],
            status=row[2],
            consent_version=row[3],
            secret_sha256=row.secret,
            kid=row.kid,
            jwk=row.jwk,
            flagged=bool(row.flagged),
        )

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
        """Every unresolved flag, shadow ones included (what an admin's unblock resolves)."""
        return await self._all(
            select(Flag).where(Flag.account_id == account_id, col(Flag.resolved_at).is_(None))
        )

    async def flagged(self, account_id: str) -> bool:
        """The credential statement's ``flagged``, for one account."""
        result = await self.session.exec(select(Flag.id).where(*_flagged(account_id)).limit(1))
        return result.first() is not None

    async def _all(self, query: SelectOfScalar[T]) -> Sequence[T]:
        result = await self.session.exec(query)
        return list(result.all())

    async def commit(self) -> None:
        await self.session.commit()
