"""All queries on the grants' tables (accounts database)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.accounts.models import Account
from gateway.grants.models import GrantState, OwnerGrant, Vehicle, epoch_s


@dataclass(frozen=True, slots=True)
class Party:
    workshop_code: str
    company: str | None


@dataclass(frozen=True, slots=True)
class GrantRow:
    """A grant with what its views show: the vehicle's id and label, and both parties."""

    grant: OwnerGrant
    vehicle_label: str | None
    owner: Party
    grantee: Party | None


_Owner = aliased(Account, name="owner")
_Grantee = aliased(Account, name="grantee")


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, obj: Any) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def commit(self) -> None:
        await self.session.commit()

    # --- accounts ---------------------------------------------------------------------------

    async def lock_account(self, account_id: str) -> None:
        """Serialize an account's vehicle declarations until the commit: PostgreSQL locks the
        account row (``FOR NO KEY UPDATE``), so a count checked under it stays true until the
        insert. SQLite ignores it; ``GrantService`` serializes these steps within the process."""
        await self.session.exec(
            # NO KEY UPDATE: it still serializes these steps, but not the inserts of rows that
            # merely reference the account (keys, flags, grants), which take KEY SHARE
            select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        )

    # --- vehicles ---------------------------------------------------------------------------

    async def vehicles(self, owner_id: str) -> Sequence[Vehicle]:
        result = await self.session.exec(
            select(Vehicle)
            .where(Vehicle.owner_account_id == owner_id)
            .order_by(col(Vehicle.created_at), col(Vehicle.id))
        )
        return result.all()

    async def vehicle(self, vehicle_id: str, *, lock: bool = False) -> Vehicle | None:
        """The vehicle; ``lock``: its row locked until the commit (PostgreSQL; see
        ``lock_account``), to count its grants and add one as one step."""
        return await self.session.get(
            Vehicle, vehicle_id, with_for_update={"key_share": True} if lock else None
        )

    async def count_vehicles(self, owner_id: str) -> int:
        result = await self.session.exec(
            select(func.count()).select_from(Vehicle).where(Vehicle.owner_account_id == owner_id)
        )
        return int(result.one())

    async def vehicle_by_pseudonym(self, owner_id: str, vin_pseudonym: str) -> Vehicle | None:
        result = await self.session.exec(
            select(Vehicle).where(
                Vehicle.owner_account_id == owner_id, Vehicle.vin_pseudonym == vin_pseudonym
            )
        )
        return result.first()

    async def delete_vehicle(self, vehicle_id: str) -> None:
        """The vehicle and its grants (explicitly: not left to the foreign keys' cascade)."""
        await self.session.exec(delete(OwnerGrant).where(col(OwnerGrant.vehicle_id) == vehicle_id))
        await self.session.exec(delete(Vehicle).where(col(Vehicle.id) == vehicle_id))

    # --- grants -----------------------------------------------------------------------------

    async def grant(self, grant_id: str) -> OwnerGrant | None:
        return await self.session.get(OwnerGrant, grant_id)

    async def grant_by_digest(self, digest: str) -> OwnerGrant | None:
        result = await self.session.exec(select(OwnerGrant).where(OwnerGrant.code_digest == digest))
        return result.first()

    async def redeem(self, grant_id: str, digest: str, grantee_id: str, now: datetime) -> bool:
        """Make a pending grant the grantee's, if its code is still this one: one conditional
        UPDATE, so of two concurrent redemptions only one wins."""
        result = await self.session.exec(
            update(OwnerGrant)
            .where(
                col(OwnerGrant.id) == grant_id,
                col(OwnerGrant.code_digest) == digest,
                col(OwnerGrant.grantee_account_id).is_(None),
                col(OwnerGrant.revoked_at).is_(None),
            )
            .values(
                grantee_account_id=grantee_id,
                redeemed_at=now,
                code_digest=None,
                code_expires_at=None,
            )
        )
        return bool(result.rowcount == 1)

    def _rows(self) -> Any:
        return (
            core_select(
                OwnerGrant,
                col(Vehicle.label),
                col(_Owner.workshop_code),
                col(_Owner.company),
                col(_Grantee.workshop_code),
                col(_Grantee.company),
            )
            .join(Vehicle, col(Vehicle.id) == OwnerGrant.vehicle_id)
            .join(_Owner, col(_Owner.id) == OwnerGrant.owner_account_id)
            .outerjoin(_Grantee, col(_Grantee.id) == OwnerGrant.grantee_account_id)
        )

    async def _fetch(self, stmt: Any) -> list[GrantRow]:
        result = await self.session.exec(stmt)
        rows = []
        for grant, label, owner_code, owner_company, grantee_code, grantee_company in result:
            rows.append(
                GrantRow(
                    grant=grant,
                    vehicle_label=label,
                    owner=Party(owner_code, owner_company),
                    grantee=None if grantee_code is None else Party(grantee_code, grantee_company),
                )
            )
        return rows

    async def grant_row(self, grant_id: str) -> GrantRow | None:
        found = await self._fetch(self._rows().where(col(OwnerGrant.id) == grant_id))
        return found[0] if found else None

    async def grants_given(self, owner_id: str) -> list[GrantRow]:
        return await self._fetch(
            self._rows()
            .where(col(OwnerGrant.owner_account_id) == owner_id)
            .order_by(col(OwnerGrant.created_at).desc(), col(OwnerGrant.id))
        )

    async def grants_received(self, grantee_id: str) -> list[GrantRow]:
        return await self._fetch(
            self._rows()
            .where(col(OwnerGrant.grantee_account_id) == grantee_id)
            .order_by(col(OwnerGrant.created_at).desc(), col(OwnerGrant.id))
        )

    async def count_live_grants(self, vehicle_id: str, now: datetime) -> int:
        """Grants of the vehicle not revoked and not expired (pending ones included)."""
        result = await self.session.exec(
            select(func.count())
            .select_from(OwnerGrant)
            .where(
                OwnerGrant.vehicle_id == vehicle_id,
                col(OwnerGrant.revoked_at).is_(None),
                col(OwnerGrant.valid_until) >= now,
            )
        )
        return int(result.one())

    async def ended_before(self, cut: datetime, limit: int) -> Sequence[OwnerGrant]:
        """Up to ``limit`` grants that ended before ``cut``: revoked before it, or valid only
        until before it (an exhausted grant ends at its valid_until: Redis knows when its uses
        ran out, the database does not)."""
        result = await self.session.exec(
            select(OwnerGrant)
            .where(or_(col(OwnerGrant.revoked_at) < cut, col(OwnerGrant.valid_until) < cut))
            .order_by(col(OwnerGrant.id))
            .limit(limit)
        )
        return result.all()

    async def delete_grants(self, grant_ids: list[str]) -> None:
        await self.session.exec(delete(OwnerGrant).where(col(OwnerGrant.id).in_(grant_ids)))

    async def grants_of_vehicle(self, vehicle_id: str) -> Sequence[OwnerGrant]:
        result = await self.session.exec(
            select(OwnerGrant).where(OwnerGrant.vehicle_id == vehicle_id)
        )
        return result.all()

    async def grants_of_account(self, account_id: str) -> Sequence[OwnerGrant]:
        """Every grant the account gave or holds."""
        result = await self.session.exec(
            select(OwnerGrant).where(
                or_(
                    col(OwnerGrant.owner_account_id) == account_id,
                    col(OwnerGrant.grantee_account_id) == account_id,
                )
            )
        )
        return result.all()

    async def delete_account_data(self, account_id: str) -> None:
        """Erasure: the grants the account gave or holds and its vehicles (explicitly: the
        account's deletion would cascade to them, this does not rely on it)."""
        await self.session.exec(
            delete(OwnerGrant).where(
                or_(
                    col(OwnerGrant.owner_account_id) == account_id,
                    col(OwnerGrant.grantee_account_id) == account_id,
                )
            )
        )
        await self.session.exec(delete(Vehicle).where(col(Vehicle.owner_account_id) == account_id))

    async def state(self, grant_id: str) -> GrantState | None:
        """What the VIN path checks, in one statement (the grant and its vehicle's pseudonym)."""
        result = await self.session.exec(
            select(OwnerGrant, col(Vehicle.vin_pseudonym))
            .join(Vehicle, col(Vehicle.id) == OwnerGrant.vehicle_id)
            .where(col(OwnerGrant.id) == grant_id)
            .limit(1)
        )
        row = result.first()
        if row is None:
            return None
        grant, vin_pseudonym = row
        return GrantState(
            id=grant.id,
            owner_id=grant.owner_account_id,
            grantee_id=grant.grantee_account_id,
            vin_pseudonym=vin_pseudonym,
            purposes=frozenset(grant.purposes),
            valid_until=epoch_s(grant.valid_until),
            max_uses=grant.max_uses,
            revoked=grant.revoked_at is not None,
            created_at=epoch_s(grant.created_at),
        )
