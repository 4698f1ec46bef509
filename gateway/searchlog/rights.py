"""Data-subject rights and retention over the log store.

A subject's rows are found by recomputing the account's pseudonym under every live epoch key
(the log store holds no account id). Export, erasure and statistics first ``settle`` (the
facade's ``flush``: events still queued for the account reach the database first). Retention:
rows are kept at least ``retention_days`` (floor) and are gone by ``retention_days +
grace_days`` (ceiling), never while held; the keys of epochs past the floor with no row left
are destroyed. Queries live in ``repository``.

Owner grants: a grant's uses are found by recomputing its pseudonym (domain ``grant``) under
every live epoch key since the grant was created; forgetting a grant unlinks its rows (they
stay the grantee's) and marks its pseudonyms so that queued events are written unlinked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from gateway.db import Database
from gateway.searchlog import metrics
from gateway.searchlog.models import GrantUseRow, SearchEventPublic
from gateway.searchlog.options import SearchLogOptions
from gateway.searchlog.pseudonym import KeyRing, epoch_bounds, month_start, next_month
from gateway.searchlog.repository import SearchLogRepository, Subject

log = logging.getLogger("vin_gateway.searchlog")

DAY = 86_400
STATS_FIELDS = ("make", "model_year", "country_code", "outcome", "code")
GRANT_USES_LIMIT = 1000  # the newest uses of a grant an owner is shown


class RightsAndRetention:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        options: SearchLogOptions,
        *,
        settle: Callable[[str | None], Awaitable[None]],
        tombstone: Callable[[list[str]], Awaitable[None]] | None = None,
        forget: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.o = options
        # makes every event recorded so far (of one account, or of all: None) visible in the
        # database; ``tombstone``: queued events of these erased pseudonyms must never land;
        # ``forget``: queued events of these grant pseudonyms must land without them
        self.settle = settle
        self.tombstone = tombstone
        self.forget = forget
        self.task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- data-subject rights ------------------------------------------------------------------

    def _pseudonyms(self, account_id: str) -> dict[str, str]:
        self.keyring.reload()  # another process may have created or destroyed an epoch
        return self.keyring.all_pseudonyms("account", account_id)

    async def rows_for_account(self, account_id: str) -> list[SearchEventPublic]:
        await self.settle(account_id)
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            rows = await SearchLogRepository(session).rows_for(pseudonyms)
        return [SearchEventPublic.of(r) for r in rows]

    async def erase_account(self, account_id: str) -> int:
        """Erase the account's rows, queued ones included (settled first). Rows under legal
        hold stay until the hold is lifted (docs/searchlog.md)."""
        # the current epoch's pseudonym too, even before its first event (one may be in flight)
        self.keyring.pseudonym("account", account_id, self.keyring.epoch_of(time.time()))
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            held = await self._held(SearchLogRepository(session))
        if self.tombstone is not None:  # before the flush: no queued event lands after it
            await self.tombstone([p for e, p in pseudonyms.items() if (e, p) not in held])
        await self.settle(account_id)
        async with self.db.session() as session:
            return await SearchLogRepository(session).delete_for(pseudonyms, keep=held)

    # --- owner grants -------------------------------------------------------------------------

    def _grant_pseudonyms(self, grant_id: str, since: int) -> set[str]:
        """The grant's pseudonym under every live key of an epoch that ends after ``since``
        (the key ring as last reloaded). Destroyed epochs have none: their rows stay unread."""
        return {
            pseudonym
            for epoch, pseudonym in self.keyring.all_pseudonyms("grant", grant_id).items()
            if epoch_bounds(epoch)[1] > since
        }

    async def _settle_accounts(self, accounts: Collection[str] | None) -> None:
        """Settle the given accounts' events (their shards only), or every event (None)."""
        if accounts is None:
            await self.settle(None)
            return
        for account_id in sorted(set(accounts)):
            await self.settle(account_id)

    async def grant_uses(
        self, grant_id: str, *, since: int, grantee: str | None = None
    ) -> list[GrantUseRow]:
        """The newest ``GRANT_USES_LIMIT`` uses of a grant since ``since`` (its creation),
        newest first, queued ones included (settled first: the grantee's shard when
        ``grantee`` is given, else every shard)."""
        await self._settle_accounts(None if grantee is None else [grantee])
        self.keyring.reload()  # after the settle: every written row's epoch key is in the file
        pseudonyms = self._grant_pseudonyms(grant_id, since)
        async with self.db.session() as session:
            rows = await SearchLogRepository(session).grant_uses(
                pseudonyms, since=since, limit=GRANT_USES_LIMIT
            )
        return [
            GrantUseRow(
                at=datetime.fromtimestamp(at, UTC),
                endpoint=endpoint,
                purpose=purpose,
                outcome=outcome,
                code=code,
            )
            for at, endpoint, purpose, outcome, code in rows
        ]

    async def forget_grants(
        self, grants: list[tuple[str, int]], *, grantees: Collection[str] | None = None
    ) -> int:
        """Unlink every row of these grants ((grant id, created_at)) from them: queued ones
        too (marked before the settle, so none is written with its pseudonym afterwards).
        The rows themselves stay: they are the grantees' own queries. Returns how many rows
        were unlinked (queued events unlinked on their way are not counted)."""
        if not grants:
            return 0
        # the current epoch's pseudonym too, even before its first event (one may be in flight)
        current = self.keyring.epoch_of(time.time())
        for grant_id, _ in grants:
            self.keyring.pseudonym("grant", grant_id, current)
        self.keyring.reload()
        pseudonyms: set[str] = set()
        for grant_id, created_at in grants:
            pseudonyms |= self._grant_pseudonyms(grant_id, created_at)
        if self.forget is not None:
            await self.forget(sorted(pseudonyms))
        await self._settle_accounts(grantees)
        since = min(created_at for _, created_at in grants)
        async with self.db.session() as session:
            return await SearchLogRepository(session).forget_grants(pseudonyms, since=since)

    async def daily_counts(self, days: int) -> tuple[int, list[dict[str, Any]]]:
        await self.settle(None)
        # whole UTC days (the rollups' unit): today and the ``days - 1`` before it
        since = (int(time.time()) // DAY - days + 1) * DAY
        async with self.db.session() as session:
            return since, await SearchLogRepository(session).daily_counts(since, STATS_FIELDS)

    # --- legal hold and retention -------------------------------------------------------------

    async def hold_account(self, account_id: str) -> int:
        """Put the account's rows under legal hold, in every epoch with a live key (including
        the current one). Rows of later epochs need the hold placed again (idempotent)."""
        self.keyring.pseudonym("account", account_id, self.keyring.epoch_of(time.time()))
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            return await SearchLogRepository(session).add_holds(pseudonyms, int(time.time()))

    async def release_account(self, account_id: str) -> int:
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            return await SearchLogRepository(session).remove_holds(pseudonyms)

    async def _held(self, repo: SearchLogRepository) -> set[Subject]:
        held = await repo.holds()
        for account_id in self.o.legal_hold:
            held.update(self.keyring.all_pseudonyms("account", account_id).items())
        return held

    async def purge(self, now: float | None = None) -> dict[str, Any]:
        """Apply retention: floor ``retention_days``, ceiling ``retention_days + grace_days``.

        Deletes (drops partitions of) rows past the floor, never held rows; then destroys the
        pseudonym keys of every epoch that ended before the floor and has no row left.
        """
        now = time.time() if now is None else now
        floor_cut = int(now - self.o.retention_days * DAY)
        ceiling_cut = int(now - (self.o.retention_days + self.o.grace_days) * DAY)
        self.keyring.reload()
        async with self.db.session() as session:
            repo = SearchLogRepository(session)
            report = await repo.purge(
                floor_cut=floor_cut, ceiling_cut=ceiling_cut, held=await self._held(repo)
            )
            # the epochs whose keys may go: those that ended before the floor (from the key
            # ring, each probed within its own time range: no scan of the table)
            ended = [e for e in self.keyring.epochs() if epoch_bounds(e)[1] <= floor_cut]
            live = await repo.epochs_with_rows(ended)
            if repo.partitioned:
                start = month_start(now)
                ahead = [start, next_month(start), next_month(next_month(start))]
                report["created_partitions"] = await repo.ensure_partitions(ahead)
        destroyed = [epoch for epoch in ended if epoch not in live and self.keyring.destroy(epoch)]
        report["destroyed_key_epochs"] = destroyed
        report["floor_cut"], report["ceiling_cut"] = floor_cut, ceiling_cut
        metrics.PURGED.inc(report["deleted"])
        log.info(
            "search-log purge: %d rows deleted, partitions dropped %s, kept for legal hold %s, "
            "key epochs destroyed %s",
            report["deleted"],
            report["dropped_partitions"],
            report["kept_partitions"],
            destroyed,
        )
        return report

    # --- the maintenance task -----------------------------------------------------------------

    def start(self) -> None:
        if self.task is None and self.o.purge_interval_s > 0:
            self.task = asyncio.create_task(self._maintenance_loop(), name="searchlog-purge")

    def stopping(self) -> None:
        """End the loop (flag and cancellation: see ``StreamConsumer.stopping``)."""
        self._stopping = True
        if self.task is not None:
            self.task.cancel()

    async def _maintenance_loop(self) -> None:
        """Partitions ahead at start, then a purge every ``purge_interval_s`` (any worker may
        run it: purges serialize on an advisory lock and are idempotent)."""
        first = True
        while not self._stopping:
            if not first:
                await asyncio.sleep(self.o.purge_interval_s)
            try:
                if first:
                    async with self.db.session() as session:
                        repo = SearchLogRepository(session)
                        if repo.partitioned:
                            start = month_start(time.time())
                            await repo.ensure_partitions([start, next_month(start)])
                else:
                    await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("search-log maintenance failed (%s)", type(exc).__name__)
            first = False
