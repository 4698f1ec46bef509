"""The search log's write path, its retention, and the data-subject queries over it.

``record`` never waits on a database or on Redis: it pseudonymizes the event at once (so nothing
clear ever sits in a queue), gives it a random event id and appends it to a bounded in-process
buffer. Then, in the background:

* with Redis configured, a shipper task XADDs the buffer to a Redis Stream in pipelined batches
  every few milliseconds, and a consumer task (unless ``VINGW_SEARCHLOG_CONSUMER=false``, when
  ``vin-gateway searchlog-writer`` does it) reads the stream with XREADGROUP, inserts batches
  and acknowledges them, reclaiming entries other consumers left pending (see ``stream``);
* embedded, a writer task inserts the buffer into the database in batches.

While the database is down, inserts are retried with backoff: the Redis consumer holds one batch
in memory and leaves the rest in the stream; embedded, the buffer keeps at most ``max_buffer``
events and counts what it has to drop. SIGTERM (shutdown) ships or writes what is buffered;
see docs/searchlog.md for the few milliseconds a SIGKILL can lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from gateway.db import Database
from gateway.errors import ServiceUnavailable
from gateway.searchlog import metrics
from gateway.searchlog.models import SearchEventPublic
from gateway.searchlog.pseudonym import (
    KeyRing,
    epoch_bounds,
    month_start,
    next_month,
    truncate_ip,
    ua_family,
)
from gateway.searchlog.repository import SearchLogRepository, Subject
from gateway.searchlog.stream import Entry, StreamQueue, consumer_name

log = logging.getLogger("vin_gateway.searchlog")


def _settled(task: asyncio.Future[None]) -> None:
    """Retrieve a shielded insert's outcome (its caller may have been cancelled)."""
    if not task.cancelled():
        task.exception()


DAY = 86_400
STATS_FIELDS = ("make", "model_year", "country_code", "outcome")


@dataclass(slots=True)
class QueryEvent:
    """What the request path knows about one VIN query (clear values; never stored as is)."""

    account_id: str
    endpoint: str
    outcome: str
    code: str | None = None
    vin: str | None = None
    wmi: str | None = None
    make: str | None = None
    model_year: int | None = None
    country_code: str | None = None
    basis: str | None = None
    purpose: str | None = None
    owner_ref: str | None = None
    jti: str | None = None
    token_sha256: str | None = None
    gateway_issued: bool | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class SearchLogOptions:
    batch_size: int = 500
    max_buffer: int = 100_000
    flush_interval_s: float = 0.2  # embedded writer
    ship_interval_s: float = 0.05  # Redis: buffering before one pipelined XADD batch
    consumer: bool = True  # Redis: run a stream consumer in this process
    stream: str = "vingw:searchlog"
    group: str = "searchlog-writers"
    claim_idle_s: float = 60.0  # pending entries idle this long are taken over
    block_ms: int = 1000
    max_backoff_s: float = 10.0
    drain_timeout_s: float = 10.0  # shutdown and flush() wait at most this long
    retention_days: int = 183  # floor: rows are kept at least this long
    grace_days: int = 30  # ceiling = floor + grace: rows are gone by then
    legal_hold: frozenset[str] = field(default_factory=frozenset)  # account ids (settings)
    purge_interval_s: float = 0.0  # 0: no periodic purge in this process

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchLogOptions:
        return cls(
            batch_size=settings.searchlog_batch_size,
            max_buffer=settings.searchlog_max_buffer,
            flush_interval_s=settings.searchlog_flush_interval_s,
            ship_interval_s=settings.searchlog_ship_interval_ms / 1000,
            consumer=settings.searchlog_consumer,
            stream=settings.searchlog_stream,
            claim_idle_s=settings.searchlog_claim_idle_s,
            retention_days=settings.searchlog_retention_days,
            grace_days=settings.searchlog_grace_days,
            legal_hold=frozenset(
                a.strip() for a in settings.searchlog_legal_hold.split(",") if a.strip()
            ),
            purge_interval_s=settings.searchlog_purge_interval_s,
        )


class SearchLog:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        *,
        instance: str,
        redis_url: str | None = None,
        options: SearchLogOptions | None = None,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.instance = instance
        self.o = options or SearchLogOptions()
        self.stream: StreamQueue | None = None
        if redis_url is not None:
            self.stream = StreamQueue(
                redis_url,
                stream=self.o.stream,
                group=self.o.group,
                consumer=consumer_name(instance),
                timeout_s=max(5.0, self.o.block_ms / 1000 + 2),
            )
        self._buffer: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self.written = 0
        self.write_failures = 0
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # the background task and flush() never take the same rows
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Future[None]] = set()
        self._db_down_since: float | None = None
        self._queue_failing = False
        self._stopping = False

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> SearchLog:
        keyring = KeyRing(settings.pseudonym_keys_path, settings.pseudonym_epoch)
        return cls(
            db,
            keyring,
            instance=settings.instance,
            redis_url=settings.redis_url,
            options=SearchLogOptions.from_settings(settings),
        )

    # --- write path ---------------------------------------------------------------------------

    def pseudonymize(self, event: QueryEvent, at: float) -> dict[str, Any]:
        ring = self.keyring
        epoch = ring.epoch_of(at)

        def p(domain: str, value: str | None) -> str | None:
            return ring.pseudonym(domain, value, epoch) if value else None

        return {
            "event_id": uuid.uuid4().hex,
            "at": int(at),
            "key_epoch": epoch,
            "account_pseudonym": ring.pseudonym("account", event.account_id, epoch),
            "vin_pseudonym": p("vin", event.vin),
            "wmi": event.wmi,
            "make": event.make,
            "model_year": event.model_year,
            "country_code": event.country_code,
            "endpoint": event.endpoint,
            "outcome": event.outcome,
            "code": event.code,
            "basis": event.basis,
            "purpose": event.purpose,
            "owner_ref_pseudonym": p("owner_ref", event.owner_ref),
            "jti_digest": p("jti", event.jti),
            "token_digest": p("jti", "token:" + event.token_sha256 if event.token_sha256 else None),
            "gateway_issued": event.gateway_issued,
            "client_ip": truncate_ip(event.client_ip),
            "ua_family": ua_family(event.user_agent),
            "latency_ms": None if event.latency_ms is None else round(event.latency_ms, 2),
            "instance": self.instance,
        }

    def record(self, event: QueryEvent, at: float | None = None) -> None:
        """Pseudonymize and buffer one event: no I/O on the request path."""
        row = self.pseudonymize(event, time.time() if at is None else at)
        metrics.EVENTS.labels("recorded").inc()
        if len(self._buffer) >= self.o.max_buffer:
            self.dropped += 1
            metrics.EVENTS.labels("dropped").inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "search-log buffer full (%d events): %d dropped so far",
                    self.o.max_buffer,
                    self.dropped,
                )
            return
        self._buffer.append(row)
        metrics.BUFFERED.set(len(self._buffer))
        if self.stream is not None or len(self._buffer) >= self.o.batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Events still in this process's buffer."""
        return len(self._buffer)

    async def start(self) -> None:
        if self._tasks:
            return
        if self.stream is None:
            self._spawn(self._write_loop(), "searchlog-writer")
        else:
            self._spawn(self._ship_loop(), "searchlog-shipper")
            if self.o.consumer:
                self._spawn(self.consume_forever(), "searchlog-consumer")
        if self.o.purge_interval_s > 0:
            self._spawn(self._maintenance_loop(), "searchlog-purge")

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self, timeout_s: float | None = None) -> None:
        """Shutdown (SIGTERM): nothing buffered is lost while Redis or the database answers."""
        # the flag, not only the cancellation: asyncio.wait_for (3.11) swallows a cancellation
        # that arrives as the awaited event fires, and the loops must end all the same
        self._stopping = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # bounded: a task that does not end at once must not hold up the shutdown flush
            _, stuck = await asyncio.wait(self._tasks, timeout=1.0)
            for task in stuck:
                log.warning("search-log %s did not stop in time", task.get_name())
        self._tasks = []
        deadline = time.monotonic() + (self.o.drain_timeout_s if timeout_s is None else timeout_s)
        if self._inflight:  # inserts the cancelled tasks started finish first
            await asyncio.wait(set(self._inflight), timeout=max(deadline - time.monotonic(), 0))
        while self._buffer and time.monotonic() < deadline:
            # to the stream when Redis answers, else straight to the database
            if self.stream is not None and await self._ship_batch():
                continue
            if not await self._write_batch():
                await asyncio.sleep(0.2)
        if self._buffer:
            log.error("search-log shutdown: %d events could not be written", len(self._buffer))
        if self.stream is not None:
            try:
                if self.o.consumer:
                    await self._drain(deadline)
                await self.stream.leave()
            except Exception as exc:
                log.warning(
                    "search-log shutdown: stream left as is (%s); other writers take it over",
                    type(exc).__name__,
                )
            await self.stream.close()

    async def flush(self, timeout_s: float | None = None) -> None:
        """Make every event recorded so far (by any worker) visible in the database.

        Raises ``ServiceUnavailable`` when that cannot be done in time (the database or Redis is
        down): a data-subject request must not answer from a log that is still being written.
        """
        deadline = time.monotonic() + (self.o.drain_timeout_s if timeout_s is None else timeout_s)
        if self.stream is None:
            while self._buffer:
                if not await self._write_batch():
                    raise ServiceUnavailable("The search-log database is unavailable")
            return
        while self._buffer:
            if not await self._ship_batch():
                raise ServiceUnavailable("The search-log queue is unavailable")
        # other workers ship their buffers every ship interval (a few ms): give them one
        await asyncio.sleep(min(2 * self.o.ship_interval_s, 0.1))
        try:
            await self._drain(deadline)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable("The search-log queue is unavailable") from exc

    # --- embedded: buffer -> database ---------------------------------------------------------

    async def _write_loop(self) -> None:
        """Write a batch when one is full or the interval has passed, never in a tight loop."""
        backoff = self.o.flush_interval_s
        while not self._stopping:
            if len(self._buffer) < self.o.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), backoff)
                self._wakeup.clear()
            if not self._buffer:
                continue
            if await self._write_batch():
                backoff = self.o.flush_interval_s
            else:
                backoff = min(max(backoff, 0.1) * 2, self.o.max_backoff_s)
                await asyncio.sleep(backoff)

    async def _write_batch(self) -> bool:
        async with self._lock:
            if not self._buffer:
                return True
            batch = [self._buffer[i] for i in range(min(self.o.batch_size, len(self._buffer)))]
            try:
                await self._insert(batch)
            except Exception as exc:
                self._database_failed(exc, len(self._buffer))
                return False
            self._database_ok()
            for _ in batch:
                self._buffer.popleft()
            metrics.BUFFERED.set(len(self._buffer))
            return True

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert a batch; shielded, so a cancelled caller (shutdown, a client that went away)
        never leaves a half-done transaction behind: the insert finishes or fails on its own."""
        task = asyncio.ensure_future(self._insert_now(rows))
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        await asyncio.shield(task)

    async def _insert_now(self, rows: list[dict[str, Any]]) -> None:
        async with self.db.session() as session:
            await SearchLogRepository(session).insert_many(rows)
        self.written += len(rows)
        metrics.EVENTS.labels("written").inc(len(rows))

    def _database_failed(self, exc: BaseException, waiting: int) -> None:
        self.write_failures += 1
        metrics.FAILURES.labels("database").inc()
        metrics.DATABASE_DOWN.set(1)
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            # the exception's text may carry SQL parameters: its type is enough
            log.error(
                "search-log database unavailable (%s): %d events waiting, retrying with backoff",
                type(exc).__name__,
                waiting,
            )

    def _database_ok(self) -> None:
        if self._db_down_since is not None:
            log.warning(
                "search-log database available again after %.1fs",
                time.monotonic() - self._db_down_since,
            )
            self._db_down_since = None
            metrics.DATABASE_DOWN.set(0)

    # --- Redis: buffer -> stream -> database ------------------------------------------------

    async def _ship_loop(self) -> None:
        backoff = 0.05
        while not self._stopping:
            await self._wakeup.wait()
            await asyncio.sleep(self.o.ship_interval_s)  # many events, one round trip
            self._wakeup.clear()
            while self._buffer and not self._stopping:
                if await self._ship_batch():
                    backoff = 0.05
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.o.max_backoff_s)

    async def _ship_batch(self) -> bool:
        assert self.stream is not None
        async with self._lock:
            if not self._buffer:
                return True
            batch = [self._buffer[i] for i in range(min(self.o.batch_size, len(self._buffer)))]
            try:
                await self.stream.add(batch)
            except Exception as exc:
                metrics.FAILURES.labels("queue").inc()
                if not self._queue_failing:
                    self._queue_failing = True
                    log.error(
                        "search-log stream unavailable (%s): %d events buffered in process "
                        "(at most %d), retrying",
                        type(exc).__name__,
                        len(self._buffer),
                        self.o.max_buffer,
                    )
                return False
            if self._queue_failing:
                self._queue_failing = False
                log.warning("search-log stream available again")
            for _ in batch:
                self._buffer.popleft()
            metrics.EVENTS.labels("queued").inc(len(batch))
            metrics.BUFFERED.set(len(self._buffer))
            return True

    async def consume_forever(self) -> None:
        """The stream consumer: reclaim stale pending entries, read new ones, insert, ack."""
        assert self.stream is not None
        stream = self.stream
        claim_every = min(max(self.o.claim_idle_s / 4, 0.05), 30.0)
        last_claim = float("-inf")
        backoff = 0.2
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
                        await self._store(claimed)
                        last_claim = float("-inf")  # there may be more
                        continue
                entries = await stream.read(self.o.batch_size, self.o.block_ms)
                if entries:
                    await self._store(entries)
                backoff = 0.2
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
                backoff = min(backoff * 2, self.o.max_backoff_s)

    async def _store(self, entries: list[Entry], deadline: float | None = None) -> None:
        """Insert one batch (retrying with backoff while the database is down), then ack it.

        Only this batch is held in memory; the rest waits in the stream. Cancelled or killed
        before the ack, the entries stay pending and are reclaimed; the insert is idempotent.
        """
        assert self.stream is not None
        rows = [row for _, row in entries]
        backoff = 0.2
        while True:
            try:
                await self._insert(rows)
                break
            except Exception as exc:
                self._database_failed(exc, len(rows))
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise ServiceUnavailable("The search-log database is unavailable") from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.o.max_backoff_s)
        self._database_ok()
        await self.stream.ack([eid for eid, _ in entries])

    async def _drain(self, deadline: float) -> None:
        """Write everything the stream holds *now* (up to its newest entry at the start),
        including entries other consumers hold. Entries added meanwhile are left to the
        consumers, so a busy stream cannot keep this waiting."""
        assert self.stream is not None
        stream = self.stream
        # this consumer's own pending entries first (read before a cancellation, never acked)
        while entries := await stream.read(self.o.batch_size, None, own_pending=True):
            await self._store(entries, deadline)
        upto = await stream.last_id()
        if upto is None:
            return
        while not await stream.delivered_up_to(upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            entries = await stream.read(self.o.batch_size, None)
            if entries:
                await self._store(entries, deadline)
        while await stream.pending_up_to(upto):
            if time.monotonic() > deadline:
                raise ServiceUnavailable("The search-log queue could not be drained in time")
            # in flight at another consumer (acked within milliseconds) or left by a dead one
            claimed = await stream.claim(1000, self.o.batch_size)
            if claimed:
                await self._store(claimed, deadline)
            else:
                await asyncio.sleep(0.05)

    async def drain(self, timeout_s: float | None = None) -> None:
        """``vin-gateway searchlog-writer --drain``: write what the stream holds, then return."""
        deadline = time.monotonic() + (self.o.drain_timeout_s if timeout_s is None else timeout_s)
        await self._drain(deadline)

    # --- data-subject rights ------------------------------------------------------------------

    def _pseudonyms(self, account_id: str) -> dict[str, str]:
        self.keyring.reload()  # another process may have created or destroyed an epoch
        return self.keyring.all_pseudonyms("account", account_id)

    async def rows_for_account(self, account_id: str) -> list[SearchEventPublic]:
        await self.flush()
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            rows = await SearchLogRepository(session).rows_for(pseudonyms)
        return [SearchEventPublic.model_validate(r, from_attributes=True) for r in rows]

    async def erase_account(self, account_id: str) -> int:
        """Erase the account's rows, queued ones included (flushed first). Rows under legal
        hold stay until the hold is lifted (docs/searchlog.md)."""
        await self.flush()
        pseudonyms = self._pseudonyms(account_id)
        async with self.db.session() as session:
            repo = SearchLogRepository(session)
            return await repo.delete_for(pseudonyms, keep=await self._held(repo))

    async def daily_counts(self, days: int) -> tuple[int, list[dict[str, Any]]]:
        await self.flush()
        since = int(time.time()) - days * DAY
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
            live = await repo.epochs_with_rows()
            if repo.partitioned:
                start = month_start(now)
                ahead = [start, next_month(start), next_month(next_month(start))]
                report["created_partitions"] = await repo.ensure_partitions(ahead)
        destroyed = [
            epoch
            for epoch in self.keyring.epochs()
            if epoch_bounds(epoch)[1] <= floor_cut
            and epoch not in live
            and self.keyring.destroy(epoch)
        ]
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
