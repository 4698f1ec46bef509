"""Rows into the log database: batch inserts, and the Redis Stream consumer that feeds them.

``BatchWriter`` inserts a batch (idempotent on ``event_id``, shielded from cancellation) and
keeps the database's health: the first failure is logged and sets a metric, recovery is logged.

``StreamConsumer`` reads the stream with XREADGROUP, inserts each batch and acknowledges it;
every ``claim_idle/4`` it takes over entries another consumer read and left pending for
``claim_idle_s``. While the database is down it retries the one batch it holds with backoff
and leaves the rest in the stream (bounded memory). ``drain`` writes everything the stream holds
at its start, entries other consumers hold included.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.db import Database
from gateway.exceptions import ServiceUnavailable
from gateway.searchlog import metrics
from gateway.searchlog.events import Row
from gateway.searchlog.options import (
    BLOCK_MS,
    DRAIN_CLAIM_IDLE_MS,
    MAX_BACKOFF_S,
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

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.consume_forever(), name="searchlog-consumer")

    def stopping(self) -> None:
        """Make the loop end (the flag, not only a cancellation: asyncio.wait_for (3.11)
        swallows a cancellation that arrives as the awaited call completes)."""
        self._stopping = True
        if self.task is not None:
            self.task.cancel()

    async def consume_forever(self) -> None:
        """The stream consumer: reclaim stale pending entries, read new ones, insert, ack."""
        stream = self.stream
        claim_every = min(max(self.o.claim_idle_s / 4, 0.05), 30.0)
        last_claim = float("-inf")
        backoff = CONSUMER_RETRY_START_S
        while not self._stopping:
            try:
                if time.monotonic() - last_claim >= claim_every:
                    last_claim = time.monotonic()
                    claimed = await stream.claim(int(self.o.claim_idle_s * 1000), self.o.batch_size)
                    if claimed:
                        metrics.EVENTS.labels("reclaimed").inc(len(claimed))
                        log.warning(
                            "search-log: took over %d entries another writer left pending",
                            len(claimed),
                        )
                        await self.store(claimed)
                        last_claim = float("-inf")  # there may be more
                        continue
                entries = await stream.read(self.o.batch_size, BLOCK_MS)
                if entries:
                    await self.store(entries)
                backoff = CONSUMER_RETRY_START_S
                if 0 < len(entries) < self.o.batch_size and not self._stopping:
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

    async def store(self, entries: list[Entry], deadline: float | None = None) -> None:
        """Insert one batch (retrying with backoff while the database is down), then ack it.

        Only this batch is held in memory; the rest waits in the stream. Cancelled or killed
        before the ack, the entries stay pending and are reclaimed; the insert is idempotent.
        """
        rows = [row for _, row in entries]
        backoff = CONSUMER_RETRY_START_S
        while True:
            try:
                await self.writer.insert(rows)
                break
            except Exception as exc:
                self.writer.failed(exc, len(rows))
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise ServiceUnavailable("The search-log database is unavailable") from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        self.writer.recovered()
        await self.stream.ack([eid for eid, _ in entries])

    async def drain(self, deadline: float) -> None:
        """Write everything the stream holds *now* (up to its newest entry at the start),
        including entries other consumers hold. Entries added meanwhile are left to the
        consumers, so a busy stream cannot keep this waiting. Raises ``ServiceUnavailable``
        at ``deadline``."""
        stream = self.stream
        # this consumer's own pending entries first (read before a cancellation, never acked)
        while entries := await stream.read(self.o.batch_size, None, own_pending=True):
            await self.store(entries, deadline)
        upto = await stream.last_id()
        if upto is None:
            return
        while not await stream.delivered_up_to(upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            entries = await stream.read(self.o.batch_size, None)
            if not entries:
                break  # nothing undelivered is left: the rest up to ``upto`` was deleted
            await self.store(entries, deadline)
        while await stream.pending_up_to(upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            # in flight at another consumer (acked within milliseconds: the pending list is
            # checked again) or left by a dead one (taken over once idle for a second)
            claimed = await stream.claim(DRAIN_CLAIM_IDLE_MS, self.o.batch_size)
            if claimed:
                await self.store(claimed, deadline)
            else:
                await asyncio.sleep(0.05)
