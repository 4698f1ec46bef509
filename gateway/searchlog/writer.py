"""Rows into the log database: batch inserts, and the Redis Stream consumer that feeds them.

``BatchWriter`` inserts a batch (idempotent on ``event_id``, shielded from cancellation) and
keeps the database's health: the first failure is logged and sets a metric, recovery is logged.

``StreamConsumer`` reads every shard of the stream with XREADGROUP (one call per shard, a
batch at most across them), inserts the batch and acknowledges it; every ``claim_idle/4`` it
takes over entries another consumer read and left pending for ``claim_idle_s``. While the
database is down it retries the one batch it holds with backoff and leaves the rest in the
stream (bounded memory). ``drain`` writes everything the given shards (default: all) hold at its
start, entries other consumers hold included.

Erasure tombstones are honoured: an entry whose account pseudonym was erased is acknowledged
and never inserted, and the tombstones are checked again after each insert, so a batch read
before an erasure began and inserted after that erasure deleted the account's rows is deleted
again (nothing queued before an erasure lands after it). Forgotten grants alike: an entry whose
grant pseudonym was forgotten is inserted without it, and rows a batch inserted with it while
the grant was being forgotten are unlinked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.db import Database
from gateway.exceptions import ServiceUnavailable
from gateway.searchlog import metrics
from gateway.searchlog.events import SHARD, Row
from gateway.searchlog.options import (
    BLOCK_MS,
    DRAIN_CLAIM_IDLE_MS,
    MAX_BACKOFF_S,
    REFRESH_SHARDS_S,
    SearchLogOptions,
)
from gateway.searchlog.repository import SearchLogRepository
from gateway.searchlog.stream import Entry, StreamQueue

log = logging.getLogger("vin_gateway.searchlog")

CONSUMER_RETRY_START_S = 0.2  # a consumer's first backoff after a failed read or insert


def _settled(task: asyncio.Future[None]) -> None:
    """Retrieve a shielded insert's outcome (its caller may have been cancelled)."""
    if not task.cancelled():
        task.exception()


class BatchWriter:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.written = 0
        self.write_failures = 0
        self._inflight: set[asyncio.Future[None]] = set()
        self._down_since: float | None = None

    async def insert(self, rows: list[Row]) -> None:
        """Insert a batch; shielded, so a cancelled caller (shutdown, a client that went away)
        never leaves a half-done transaction behind: the insert finishes or fails on its own,
        owned here until ``settle`` has waited for it."""
        task = asyncio.ensure_future(self._insert_now(rows))
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _insert_now(self, rows: list[Row]) -> None:
        if any(SHARD in row for row in rows):  # shutdown: bound for the stream, written here
            rows = [{k: v for k, v in row.items() if k != SHARD} for row in rows]
        async with self.db.session() as session:
            await SearchLogRepository(session).insert_many(rows)
        self.written += len(rows)
        metrics.EVENTS.labels("written").inc(len(rows))

    async def write(self, rows: list[Row], waiting: int) -> bool:
        """Insert a batch; False (logged, counted) when the database does not take it."""
        try:
            await self.insert(rows)
        except Exception as exc:
            self.failed(exc, waiting)
            return False
        self.recovered()
        return True

    async def erase(self, subjects: set[tuple[str, str]]) -> None:
        """Delete the rows of erased subjects ((key epoch, account pseudonym)) a batch wrote
        while their erasure ran; shielded like an insert."""
        task = asyncio.ensure_future(self._erase_now(subjects))
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _erase_now(self, subjects: set[tuple[str, str]]) -> None:
        async with self.db.session() as session:
            repo = SearchLogRepository(session)
            for epoch, pseudonym in sorted(subjects):
                await repo.delete_for({epoch: pseudonym})

    async def unlink(self, rows: list[Row]) -> None:
        """Set NULL the grant pseudonym of rows stored with one of these rows' grant
        pseudonyms (forgotten while the batch was being inserted), within the rows' time
        range; shielded like an insert."""
        task = asyncio.ensure_future(self._unlink_now(rows))
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _unlink_now(self, rows: list[Row]) -> None:
        pseudonyms = {row["grant_pseudonym"] for row in rows}
        ats = [int(row["at"]) for row in rows]
        async with self.db.session() as session:
            await SearchLogRepository(session).forget_grants(
                pseudonyms, since=min(ats), until=max(ats) + 1
            )

    def failed(self, exc: BaseException, waiting: int) -> None:
        self.write_failures += 1
        metrics.FAILURES.labels("database").inc()
        metrics.DATABASE_DOWN.set(1)
        if self._down_since is None:
            self._down_since = time.monotonic()
            # the exception's text may carry SQL parameters: its type is enough
            log.error(
                "search-log database unavailable (%s): %d events waiting, retrying with backoff",
                type(exc).__name__,
                waiting,
            )

    def recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "search-log database available again after %.1fs",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            metrics.DATABASE_DOWN.set(0)

    async def settle(self, deadline: float) -> None:
        """Wait (until ``deadline``) for the inserts cancelled callers left running."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=max(deadline - time.monotonic(), 0))

    async def abandon(self) -> None:
        """Cancel the inserts still running (past the shutdown deadline) and wait for them to
        roll back, so none outlives ``stop()`` and the database it uses."""
        pending = set(self._inflight)
        for task in pending:
            task.cancel()
        if pending:
            log.error("search-log shutdown: %d inserts cancelled unfinished", len(pending))
            await asyncio.wait(pending, timeout=1.0)


class StreamConsumer:
    def __init__(self, stream: StreamQueue, writer: BatchWriter, options: SearchLogOptions) -> None:
        self.stream = stream
        self.writer = writer
        self.o = options
        self.task: asyncio.Task[None] | None = None
        self._stopping = False
        self._refreshed = float("-inf")

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.consume_forever(), name="searchlog-consumer")

    def stopping(self) -> None:
        """Make the loop end (the flag, not only a cancellation: asyncio.wait_for (3.11)
        swallows a cancellation that arrives as the awaited call completes)."""
        self._stopping = True
        if self.task is not None:
            self.task.cancel()

    async def refresh(self, *, force: bool = False) -> None:
        """Which shards exist (another N in use, the legacy stream), every few seconds."""
        if force or time.monotonic() - self._refreshed >= REFRESH_SHARDS_S:
            await self.stream.refresh()
            self._refreshed = time.monotonic()

    async def consume_forever(self) -> None:
        """The stream consumer: reclaim stale pending entries, read new ones from every shard,
        insert, ack."""
        stream = self.stream
        claim_every = min(max(self.o.claim_idle_s / 4, 0.05), 30.0)
        last_claim = float("-inf")
        backoff = CONSUMER_RETRY_START_S
        turn = 0  # the shard a pass starts with, in turn: no shard waits behind a busy one
        while not self._stopping:
            try:
                await self.refresh()
                keys = stream.keys()
                if time.monotonic() - last_claim >= claim_every:
                    last_claim = time.monotonic()
                    reclaimed = 0
                    for key in keys:
                        claimed = await stream.claim(
                            key, int(self.o.claim_idle_s * 1000), self.o.batch_size
                        )
                        if claimed:
                            reclaimed += len(claimed)
                            await self.store({key: claimed})
                    if reclaimed:
                        metrics.EVENTS.labels("reclaimed").inc(reclaimed)
                        log.warning(
                            "search-log: took over %d entries another writer left pending",
                            reclaimed,
                        )
                        last_claim = float("-inf")  # there may be more
                        continue
                turn += 1
                batch: dict[str, list[Entry]] = {}
                taken = 0
                for i in range(len(keys)):  # one XREADGROUP per shard, a batch in all
                    key = keys[(turn + i) % len(keys)]
                    entries = await stream.read(key, self.o.batch_size - taken, None)
                    if entries:
                        batch[key] = entries
                        taken += len(entries)
                        if taken >= self.o.batch_size:
                            break
                if not batch:
                    # every shard empty: wait on one of them (each in turn) for a moment
                    key = keys[turn % len(keys)]
                    if entries := await stream.read(key, self.o.batch_size, BLOCK_MS):
                        batch[key] = entries
                        taken = len(entries)
                if batch:
                    await self.store(batch)
                backoff = CONSUMER_RETRY_START_S
                if 0 < taken < self.o.batch_size and not self._stopping:
                    # a partial batch: let the next one fill up instead of paying a database
                    # transaction and two stream round trips for every few events
                    await asyncio.sleep(self.o.flush_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.FAILURES.labels("read").inc()
                log.warning("search-log stream read failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _erased(self, rows: list[Row]) -> set[str]:
        return await self.stream.erased(
            [row["account_pseudonym"] for row in rows], time.time(), self.o.tombstone_ttl_s
        )

    async def _forgotten(self, rows: list[Row]) -> set[str]:
        """The forgotten grant pseudonyms among these rows' (no round trip when no row has
        one: most batches)."""
        granted = [p for row in rows if (p := row.get("grant_pseudonym"))]
        if not granted:
            return set()
        return await self.stream.forgotten(granted, time.time(), self.o.tombstone_ttl_s)

    async def store(self, batch: dict[str, list[Entry]], deadline: float | None = None) -> None:
        """Insert one batch (entries of one or more shards; retrying with backoff while the
        database is down), then ack it.

        Entries of erased accounts (a live tombstone) are acknowledged, never inserted; after
        the insert the tombstones are checked again and the rows of an account whose erasure
        began meanwhile are deleted, before the ack: an erasure deletes what was inserted
        before it, the writer what was inserted after (``tests/searchlog/test_shards.py``).

        Rows of forgotten grants are inserted without their grant pseudonym, and after the
        insert the rows of grants forgotten meanwhile (or inserted with it by an earlier
        delivery of this batch) are unlinked, the same way.

        Only this batch is held in memory; the rest waits in the stream. Cancelled or killed
        before the ack, the entries stay pending and are reclaimed; the insert is idempotent.
        """
        rows = [row for entries in batch.values() for _, row in entries]
        erased = await self._erased(rows)
        kept = [row for row in rows if row["account_pseudonym"] not in erased]
        if erased:
            metrics.EVENTS.labels("erased").inc(len(rows) - len(kept))
        forgotten = await self._forgotten(kept)
        linked = [row for row in kept if row.get("grant_pseudonym")]
        if forgotten:
            kept = [
                {**row, "grant_pseudonym": None} if row.get("grant_pseudonym") in forgotten else row
                for row in kept
            ]
        await self._retrying(self.writer.insert, kept, len(kept), deadline)
        late = await self._erased(kept) if kept else set()
        if gone := {
            (row["key_epoch"], row["account_pseudonym"])
            for row in rows
            if row["account_pseudonym"] in erased | late
        }:
            # ``late``: erased while this batch was being inserted; ``erased``: this may be a
            # redelivery of a batch that was inserted, but not checked again, before
            await self._retrying(self.writer.erase, gone, len(rows), deadline)
        unlinked = forgotten | await self._forgotten(
            [row for row in linked if row["grant_pseudonym"] not in forgotten]
        )
        if unlink := [row for row in linked if row["grant_pseudonym"] in unlinked]:
            await self._retrying(self.writer.unlink, unlink, len(rows), deadline)
        self.writer.recovered()
        for key, entries in batch.items():
            await self.stream.ack(key, [eid for eid, _ in entries])

    async def _retrying(
        self, op: Callable[[Any], Awaitable[None]], arg: Any, waiting: int, deadline: float | None
    ) -> None:
        """Run a database operation, retrying with backoff while the database is down (until
        ``deadline``, when there is one: then ``ServiceUnavailable``)."""
        backoff = CONSUMER_RETRY_START_S
        while True:
            try:
                await op(arg)
                return
            except Exception as exc:
                self.writer.failed(exc, waiting)
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise ServiceUnavailable("The search-log database is unavailable") from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def drain(self, deadline: float, keys: list[str] | None = None) -> None:
        """Write everything the streams ``keys`` (default: every shard) hold *now* (up to each
        one's newest entry at the start), including entries other consumers hold. Entries
        added meanwhile are left to the consumers, so a busy stream cannot keep this waiting.
        Raises ``ServiceUnavailable`` at ``deadline``."""
        await self.refresh(force=True)
        for key in self.stream.keys() if keys is None else keys:
            await self._drain_one(key, deadline)

    async def _drain_one(self, key: str, deadline: float) -> None:
        stream = self.stream
        # this consumer's own pending entries first (read before a cancellation, never acked)
        while entries := await stream.read(key, self.o.batch_size, None, own_pending=True):
            await self.store({key: entries}, deadline)
        upto = await stream.last_id(key)
        if upto is None:
            return
        while not await stream.delivered_up_to(key, upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            entries = await stream.read(key, self.o.batch_size, None)
            if not entries:
                break  # nothing undelivered is left: the rest up to ``upto`` was deleted
            await self.store({key: entries}, deadline)
        while await stream.pending_up_to(key, upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            # in flight at another consumer (acked within milliseconds: the pending list is
            # checked again) or left by a dead one (taken over once idle for a second)
            claimed = await stream.claim(key, DRAIN_CLAIM_IDLE_MS, self.o.batch_size)
            if claimed:
                await self.store({key: claimed}, deadline)
            else:
                await asyncio.sleep(0.05)
