"""Owner grants: declared vehicles, grants to one workshop, one-time codes, revocation.

An owner (any account) declares a vehicle by its VIN, which is checked like on the VIN
endpoints and kept only as ``vehicle_pseudonym`` (keyed, ``vehicle_pseudonym.key``). A grant
gives ONE workshop account access to that vehicle for some purposes until a date, optionally
for at most N queries: at once by the workshop's public code, or pending until a one-time code
(shown once, stored as an HMAC with ``grant_code.key``) is redeemed by the workshop.

Every change the VIN path could have cached (revocation, redemption, deletion, erasure, the
purge) drops this worker's grant cache at once and is published to the other workers over the
accounts' invalidation bus (``on_change`` and ``notify``, wired by the app like
``AccountService``'s): one account id per grant and reason ``account_updated``, never the grant
id (the cache indexes a grant by both parties, so either one drops it everywhere).
The number of queries made under a grant is counted by the admission script in Redis and read
through ``uses``; the queries themselves are read from the search log by the grant's pseudonym.

Ended grants do not stay forever: the maintenance task (``start``, every
``grant_purge_interval_s``) deletes grants that ended (revoked, or valid_until passed) more
than ``Settings.grant_retention_s`` ago, as a deletion does: search-log rows unlinked, use
counters deleted, caches dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from gateway.accounts.codes import WORKSHOP_CODE_LENGTH, display, normalize
from gateway.accounts.repository import AccountRepository
from gateway.accounts.service import Notify
from gateway.config import Settings
from gateway.db import Database
from gateway.exceptions import GatewayError, InvalidRequest, NotFound
from gateway.grants import codes
from gateway.grants.exceptions import (
    GrantCodeInvalid,
    GrantNotPending,
    GrantToSelf,
    VehicleExists,
    VehicleGrantLimitReached,
    VehicleLimitReached,
    WorkshopUnknown,
)
from gateway.grants.models import (
    PURPOSES,
    GrantCreate,
    GrantPublic,
    GrantState,
    GrantStatus,
    OwnerGrant,
    PartyRef,
    Vehicle,
    VehicleCreate,
    VehicleRef,
    VehicleUpdate,
    epoch_s,
    grant_expired,
    vehicle_pseudonym,
)
from gateway.grants.repository import GrantRepository, GrantRow, Party
from gateway.grants.schemas import GrantCodeIssued, GrantCreated, GrantList, GrantUse, GrantUses
from gateway.grants.throttle import DeclarationThrottle, RedeemThrottle
from gateway.searchlog.service import SearchLog
from gateway.vins import checked_vin

log = logging.getLogger("vin_gateway.grants")

#: Reads the use counts of grants held by one grantee: (grantee account id, grant ids) ->
#: {grant id: queries admitted under it}. Raises on a Redis failure.
UseCounts = Callable[[str, list[str]], Awaitable[dict[str, int]]]
#: Deletes the use counters of deleted grants: [(grantee account id, grant id)] -> deleted.
ForgetUses = Callable[[list[tuple[str, str]]], Awaitable[int]]
#: Grants the purge deletes per batch (each batch one unlink in the search log).
PURGE_BATCH = 200

#: The reason the invalidation message of a grant change carries (the accounts' bus knows a
#: fixed set; this one drops every cache entry of the account named, grants included).
INVALIDATION_REASON = "account_updated"


def new_vehicle_id() -> str:
    return "veh_" + secrets.token_hex(8)


def new_grant_id() -> str:
    return "grt_" + secrets.token_hex(10)


def status_of(grant: OwnerGrant, uses: int | None, now: datetime) -> GrantStatus:
    """revoked, then expired (valid_until passed), pending (code not redeemed), exhausted
    (max_uses queries made), else active."""
    if grant.revoked_at is not None:
        return "revoked"
    if grant_expired(epoch_s(grant.valid_until), epoch_s(now)):
        return "expired"
    if grant.grantee_account_id is None:
        return "pending"
    if grant.max_uses is not None and uses is not None and uses >= grant.max_uses:
        return "exhausted"
    return "active"


def _party(party: Party | None) -> PartyRef | None:
    if party is None:
        return None
    return PartyRef(workshop_code=display(party.workshop_code), company=party.company)


def _invalid_field(field: str, code: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"{field}: {message}", errors=[{"field": field, "code": code, "message": message}]
    )


async def _delete_ids(ids: list[str], repo: GrantRepository) -> None:
    await repo.delete_grants(ids)


class GrantService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        vehicle_key: bytes,
        code_key: bytes,
        throttle: RedeemThrottle,
        declarations: DeclarationThrottle,
        searchlog: SearchLog,
        uses: UseCounts,
        forget_uses: ForgetUses | None = None,
        on_change: Callable[[str], None] = lambda _id: None,
        notify: Notify | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.settings = settings
        self.vehicle_key = vehicle_key
        self.code_key = code_key
        self.throttle = throttle
        self.declarations = declarations
        self.searchlog = searchlog
        self.uses = uses  # Limiter.grant_uses (the admission script's counters)
        self.forget_uses = forget_uses  # Limiter.forget_grant_uses (the same counters)
        self.on_change = on_change  # drops this worker's cached entries of an account
        self.notify = notify  # tells the other workers (InvalidationBus.publish)
        self.clock = clock  # seconds; injectable so tests move time instead of sleeping
        self.task: asyncio.Task[None] | None = None  # the maintenance (purge) loop
        # a limit's count and the insert it allows are one step: on PostgreSQL the locked
        # account or vehicle row (``lock_account``, ``vehicle(lock=True)``), across processes;
        # on SQLite, which takes no row lock, this lock within the (one) process
        self._counted: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if db.url.startswith("sqlite") else contextlib.nullcontext()
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def _changed(self, account_ids: Iterable[str | None]) -> None:
        """Drop the grants of these accounts from every worker's cache (this one's first). The
        message names the account only: the grant id never travels over Redis."""
        for account_id in dict.fromkeys(a for a in account_ids if a):
            self.on_change(account_id)
            if self.notify is not None:
                await self.notify(account_id, INVALIDATION_REASON, None)

    # --- vehicles ---------------------------------------------------------------------------

    async def create_vehicle(self, owner_id: str, data: VehicleCreate) -> Vehicle:
        """Declared when the VIN is valid, new for this owner, within the vehicle limit and
        the day's declarations (``DeclarationThrottle``: counted before the insert, taken
        back when refused)."""
        pseudonym = vehicle_pseudonym(self.vehicle_key, checked_vin(data.vin))
        counted = await self.declarations.admit(owner_id)
        try:
            return await self._insert_vehicle(owner_id, pseudonym, data)
        except Exception:  # refused (a duplicate, the limit) or failed: not a declaration
            await self.declarations.undo(counted)
            raise

    async def _insert_vehicle(self, owner_id: str, pseudonym: str, data: VehicleCreate) -> Vehicle:
        vehicle = Vehicle(
            id=new_vehicle_id(),
            owner_account_id=owner_id,
            vin_pseudonym=pseudonym,
            label=data.label,
            created_at=self._now(),
        )
        async with self._counted, self.db.session() as session:
            repo = GrantRepository(session)
            await repo.lock_account(owner_id)  # the count below holds until the commit
            if await repo.vehicle_by_pseudonym(owner_id, pseudonym) is not None:
                raise VehicleExists()
            if await repo.count_vehicles(owner_id) >= self.settings.grant_max_vehicles:
                raise VehicleLimitReached(
                    f"At most {self.settings.grant_max_vehicles} vehicles per account",
                    max_vehicles=self.settings.grant_max_vehicles,
                )
            try:
                await repo.add(vehicle)
                await repo.commit()
            except IntegrityError as exc:  # the same VIN declared concurrently
                raise VehicleExists() from exc
        return vehicle

    async def list_vehicles(self, owner_id: str) -> list[Vehicle]:
        async with self.db.session() as session:
            return list(await GrantRepository(session).vehicles(owner_id))

    async def _own_vehicle(
        self, repo: GrantRepository, owner_id: str, vehicle_id: str, *, lock: bool = False
    ) -> Vehicle:
        vehicle = await repo.vehicle(vehicle_id, lock=lock)
        if vehicle is None or vehicle.owner_account_id != owner_id:
            raise NotFound("No such vehicle")
        return vehicle

    async def update_vehicle(self, owner_id: str, vehicle_id: str, data: VehicleUpdate) -> Vehicle:
        async with self.db.session() as session:
            repo = GrantRepository(session)
            vehicle = await self._own_vehicle(repo, owner_id, vehicle_id)
            if "label" in data.model_fields_set:
                vehicle.label = data.label
                await repo.add(vehicle)
                await repo.commit()
        return vehicle

    async def delete_vehicle(self, owner_id: str, vehicle_id: str) -> None:
        """The vehicle and its grants; their search-log rows lose the grant's pseudonym."""
        async with self.db.session() as session:
            repo = GrantRepository(session)
            await self._own_vehicle(repo, owner_id, vehicle_id)
            grants = list(await repo.grants_of_vehicle(vehicle_id))
        await self._delete_grants(grants, lambda repo: repo.delete_vehicle(vehicle_id))

    async def _delete_grants(
        self,
        grants: list[OwnerGrant],
        delete: Callable[[GrantRepository], Awaitable[None]],
        *,
        publish: bool = True,
    ) -> None:
        """Delete rows (``delete``) and unlink the grants' search-log rows: unlinked first (a
        search log that cannot be reached stops it before anything is deleted), and once more
        after the deletion and the invalidation, for queries recorded in between. The grants'
        use counters go too (a Redis failure leaves them to expire, valid_until + 1 day)."""
        links = [(g.id, epoch_s(g.created_at)) for g in grants]
        grantees = {g.grantee_account_id for g in grants if g.grantee_account_id is not None}
        if links:
            await self.searchlog.forget_grants(links, grantees=grantees)
        async with self.db.session() as session:
            repo = GrantRepository(session)
            await delete(repo)
            await repo.commit()
        affected = (g.grantee_account_id or g.owner_account_id for g in grants)
        if publish:
            await self._changed(affected)
        else:  # ended grants: a cached copy elsewhere is refused all the same, and expires
            for account_id in dict.fromkeys(a for a in affected if a):
                self.on_change(account_id)
        if links:
            await self.searchlog.forget_grants(links, grantees=grantees)
        counters = [(g.grantee_account_id, g.id) for g in grants if g.grantee_account_id]
        if counters and self.forget_uses is not None:
            try:
                await self.forget_uses(counters)
            except RedisError as exc:
                log.warning("grant use counters not deleted (%s)", type(exc).__name__)

    # --- grants -----------------------------------------------------------------------------

    def _check_valid_until(self, valid_until: datetime, now: datetime) -> datetime:
        valid_until = valid_until.astimezone(UTC)
        if valid_until <= now:
            raise _invalid_field("valid_until", "in_the_past", "must be in the future")
        days = self.settings.grant_max_days
        if valid_until > now + timedelta(days=days):
            raise _invalid_field("valid_until", "too_far", f"must be at most {days} days ahead")
        return valid_until

    def _new_code(self, grant: OwnerGrant, now: datetime) -> str:
        code = codes.new_grant_code()
        grant.code_digest = codes.code_digest(self.code_key, code)
        grant.code_expires_at = now + timedelta(seconds=self.settings.grant_code_ttl_s)
        return code

    async def create_grant(self, owner_id: str, data: GrantCreate) -> GrantCreated:
        now = self._now()
        valid_until = self._check_valid_until(data.valid_until, now)
        purposes: list[str] = [p for p in PURPOSES if p in data.purposes]  # unique, ordered
        async with self._counted, self.db.session() as session:
            repo = GrantRepository(session)
            # locked: the live grants counted below stay counted until the commit
            vehicle = await self._own_vehicle(repo, owner_id, data.vehicle_id, lock=True)
            cap = self.settings.grant_max_live_per_vehicle
            if await repo.count_live_grants(vehicle.id, now) >= cap:
                raise VehicleGrantLimitReached(
                    f"At most {cap} live grants per vehicle: revoke one first",
                    max_live_grants=cap,
                )
            grantee_id = None
            if data.workshop_code is not None:
                workshop_code = normalize(data.workshop_code, WORKSHOP_CODE_LENGTH)
                grantee = (
                    await AccountRepository(session).get_by_workshop_code(workshop_code)
                    if workshop_code
                    else None
                )
                if grantee is None:
                    raise WorkshopUnknown()
                if grantee.id == owner_id:
                    raise GrantToSelf()
                grantee_id = grantee.id
            grant = OwnerGrant(
                id=new_grant_id(),
                vehicle_id=vehicle.id,
                owner_account_id=owner_id,
                grantee_account_id=grantee_id,
                purposes=purposes,
                valid_until=valid_until,
                max_uses=data.max_uses,
                created_at=now,
            )
            code = self._new_code(grant, now) if grantee_id is None else None
            await repo.add(grant)
            await repo.commit()
            row = await repo.grant_row(grant.id)
        assert row is not None
        public = await self._public_one(row, "owner")
        if code is None:
            return GrantCreated(grant=public)
        return GrantCreated(
            grant=public,
            code=display(code),
            code_expires_at=grant.code_expires_at,
            qr_svg=codes.qr_svg(code),
        )

    async def new_code(self, owner_id: str, grant_id: str) -> GrantCodeIssued:
        """A fresh one-time code for a pending grant; the previous one stops working."""
        now = self._now()
        async with self.db.session() as session:
            repo = GrantRepository(session)
            grant = await repo.grant(grant_id)
            if grant is None or grant.owner_account_id != owner_id:
                raise NotFound("No such grant")
            if (
                grant.grantee_account_id is not None
                or grant.revoked_at is not None
                or grant_expired(epoch_s(grant.valid_until), epoch_s(now))
            ):
                raise GrantNotPending()
            code = self._new_code(grant, now)
            await repo.add(grant)
            await repo.commit()
            row = await repo.grant_row(grant_id)
        assert row is not None and grant.code_expires_at is not None
        return GrantCodeIssued(
            grant=await self._public_one(row, "owner"),
            code=display(code),
            code_expires_at=grant.code_expires_at,
            qr_svg=codes.qr_svg(code),
        )

    async def redeem(self, account_id: str, client_ip: str | None, text: str) -> GrantPublic:
        """The caller becomes the grantee of the pending grant this one-time code belongs to.

        Throttled first (``RedeemThrottle``: the code is not looked at while the account's or
        the network's budget of failures is spent); an unknown, expired or used code is one
        answer, ``grant_code_invalid``. Redeeming one's own grant is ``grant_to_self`` and
        leaves the code usable."""
        attempt = await self.throttle.admit(account_id, client_ip)
        now = self._now()
        code = normalize(text, codes.GRANT_CODE_LENGTH)
        digest = codes.code_digest(self.code_key, code) if code is not None else None
        async with self.db.session() as session:
            repo = GrantRepository(session)
            # found by an equality on the digest (its unique index): comparing the digests
            # again would add nothing, and the lookup's timing tells nothing about a code
            # (the digest is keyed: knowing it, or part of it, does not give the code)
            grant = await repo.grant_by_digest(digest) if digest is not None else None
            if (
                grant is None
                or digest is None
                or grant.code_expires_at is None
                or grant.code_expires_at <= now
                or grant_expired(epoch_s(grant.valid_until), epoch_s(now))
            ):
                raise GrantCodeInvalid()
            if grant.owner_account_id == account_id:
                await self.throttle.succeeded(attempt)  # the code was right
                raise GrantToSelf()
            if not await repo.redeem(grant.id, digest, account_id, now):
                raise GrantCodeInvalid()  # redeemed (or revoked) meanwhile
            await repo.commit()
            row = await repo.grant_row(grant.id)
        assert row is not None
        await self.throttle.succeeded(attempt)
        # a worker may hold the grant as pending (indexed by its owner)
        await self._changed([row.grant.owner_account_id])
        return await self._public_one(row, "grantee")

    async def revoke(self, owner_id: str, grant_id: str) -> GrantPublic:
        """Revoked at once in every worker (idempotent); a pending grant's code dies with it."""
        async with self.db.session() as session:
            repo = GrantRepository(session)
            grant = await repo.grant(grant_id)
            if grant is None or grant.owner_account_id != owner_id:
                raise NotFound("No such grant")
            if grant.revoked_at is None:
                grant.revoked_at = self._now()
                grant.code_digest = grant.code_expires_at = None
                await repo.add(grant)
                await repo.commit()
            row = await repo.grant_row(grant_id)
        assert row is not None
        await self._changed([grant.grantee_account_id or grant.owner_account_id])
        return await self._public_one(row, "owner")

    async def list_grants(self, account_id: str) -> GrantList:
        async with self.db.session() as session:
            repo = GrantRepository(session)
            given = await repo.grants_given(account_id)
            received = await repo.grants_received(account_id)
        counts = await self._use_counts([*given, *received])
        return GrantList(
            given=[self._public(r, "owner", counts) for r in given],
            received=[self._public(r, "grantee", counts) for r in received],
        )

    async def grant_uses(self, owner_id: str, grant_id: str) -> GrantUses:
        """The queries made under the owner's grant, newest first, from the search log."""
        async with self.db.session() as session:
            row = await GrantRepository(session).grant_row(grant_id)
        if row is None or row.grant.owner_account_id != owner_id:
            raise NotFound("No such grant")
        grantee = row.grant.grantee_account_id
        found = (
            []  # never redeemed: nobody ever queried under it
            if grantee is None
            else await self.searchlog.grant_uses(
                grant_id, since=epoch_s(row.grant.created_at), grantee=grantee
            )
        )
        return GrantUses(
            grant=await self._public_one(row, "owner"),
            uses=[
                GrantUse(
                    at=u.at, endpoint=u.endpoint, purpose=u.purpose, outcome=u.outcome, code=u.code
                )
                for u in found
            ],
        )

    async def state(self, grant_id: str) -> GrantState | None:
        """What the VIN path checks about one grant (the cache's loader)."""
        async with self.db.session() as session:
            return await GrantRepository(session).state(grant_id)

    # --- the holder's rights ----------------------------------------------------------------

    async def erase_account(self, account_id: str) -> None:
        """Erasure: the account's vehicles, the grants it gave and the grants it holds go, and
        no search-log row stays linked to any of them (``SearchLog.forget_grants``); every
        other party's cached grants are dropped. Runs before the account's own deletion."""
        async with self.db.session() as session:
            grants = list(await GrantRepository(session).grants_of_account(account_id))
        await self._delete_grants(grants, lambda repo: repo.delete_account_data(account_id))

    # --- retention ---------------------------------------------------------------------------

    async def purge_ended(self, now: float | None = None) -> int:
        """Delete the grants that ended (revoked, or valid_until passed) more than
        ``grant_retention_s`` before ``now``, like a deletion does (search-log rows unlinked,
        use counters deleted, caches dropped), in batches; the number deleted. Idempotent:
        workers running it at once delete each grant once."""
        now_s = self.clock() if now is None else now
        cut = datetime.fromtimestamp(now_s - self.settings.grant_retention_s, UTC)
        deleted = 0
        while True:
            async with self.db.session() as session:
                batch = list(await GrantRepository(session).ended_before(cut, PURGE_BATCH))
            if batch:
                # no invalidation messages: every worker purges, and an ended grant is refused
                # from a cached copy too (revoked or past valid_until)
                await self._delete_grants(
                    batch, partial(_delete_ids, [g.id for g in batch]), publish=False
                )
                deleted += len(batch)
            if len(batch) < PURGE_BATCH:
                if deleted:
                    log.info("grant purge: %d ended grants deleted", deleted)
                return deleted

    def start(self) -> None:
        """The maintenance task: ``purge_ended`` every ``grant_purge_interval_s`` (0: never
        in this process), the first one interval after the start."""
        interval = self.settings.grant_purge_interval_s
        if self.task is None and interval > 0:
            self.task = asyncio.create_task(self._maintenance_loop(interval), name="grants-purge")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _maintenance_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.purge_ended()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("grant purge failed (%s)", type(exc).__name__)

    async def export(self, account_id: str) -> dict[str, Any]:
        """The account's vehicles (no VIN: the gateway has none) and its grants, both views."""
        vehicles = await self.list_vehicles(account_id)
        grants = await self.list_grants(account_id)
        return {
            "vehicles": [
                {"id": v.id, "label": v.label, "created_at": v.created_at} for v in vehicles
            ],
            "grants": grants.model_dump(),
        }

    # --- the views --------------------------------------------------------------------------

    async def _use_counts(self, rows: list[GrantRow]) -> dict[str, int | None]:
        """Use counts by grant id, one Redis call per grantee; None when unreadable."""
        by_grantee: dict[str, list[str]] = {}
        for row in rows:
            if row.grant.grantee_account_id is not None:
                by_grantee.setdefault(row.grant.grantee_account_id, []).append(row.grant.id)
        counts: dict[str, int | None] = {r.grant.id: 0 for r in rows}
        for grantee, ids in by_grantee.items():
            try:
                found = await self.uses(grantee, ids)
            except (RedisError, GatewayError) as exc:  # LimiterUnavailable is a GatewayError
                log.warning("grant use counts unavailable (%s)", type(exc).__name__)
                counts.update(dict.fromkeys(ids))
                continue
            counts.update({i: int(found.get(i, 0)) for i in ids})
        return counts

    async def _public_one(self, row: GrantRow, view: Literal["owner", "grantee"]) -> GrantPublic:
        return self._public(row, view, await self._use_counts([row]))

    def _public(
        self, row: GrantRow, view: Literal["owner", "grantee"], counts: dict[str, int | None]
    ) -> GrantPublic:
        g = row.grant
        uses = counts.get(g.id)
        vehicle = VehicleRef(id=g.vehicle_id, label=row.vehicle_label)
        return GrantPublic(
            id=g.id,
            status=status_of(g, uses, self._now()),
            purposes=list(g.purposes),
            valid_until=g.valid_until,
            max_uses=g.max_uses,
            uses=uses,
            created_at=g.created_at,
            redeemed_at=g.redeemed_at,
            revoked_at=g.revoked_at,
            vehicle=vehicle if view == "owner" else None,
            grantee=_party(row.grantee),
            owner=_party(row.owner) if view == "grantee" else None,
        )
