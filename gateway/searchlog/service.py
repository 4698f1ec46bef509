"""The search log's write path and the data-subject queries over it.

``record`` never waits on the database: it pseudonymizes the event at once (so nothing clear
ever sits in a queue) and hands it to a bounded in-process queue that a background task writes
in batches. On shutdown the queue is flushed. While the database is down the writer retries with
backoff and keeps at most ``max_buffer`` events; beyond that it counts what it had to drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.db import Database
from gateway.searchlog.models import SearchEventPublic
from gateway.searchlog.pseudonym import KeyRing, epoch_of, truncate_ip, ua_family
from gateway.searchlog.repository import SearchLogRepository

log = logging.getLogger("vin_gateway.searchlog")


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
    gateway_issued: bool | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    latency_ms: float | None = None


class SearchLog:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        *,
        instance: str,
        max_buffer: int = 100_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.instance = instance
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buffer: deque[dict[str, Any]] = deque()
        self.max_buffer = max_buffer
        self.dropped = 0
        self.written = 0
        self.write_failures = 0
        self._wakeup = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- write path ------------------------------------------------------------------------

    def pseudonymize(self, event: QueryEvent, at: float) -> dict[str, Any]:
        epoch = epoch_of(at)
        ring = self.keyring

        def p(domain: str, value: str | None) -> str | None:
            return ring.pseudonym(domain, value, epoch) if value else None

        return {
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
            "gateway_issued": event.gateway_issued,
            "client_ip": truncate_ip(event.client_ip),
            "ua_family": ua_family(event.user_agent),
            "latency_ms": None if event.latency_ms is None else round(event.latency_ms, 2),
            "instance": self.instance,
        }

    def record(self, event: QueryEvent, at: float | None = None) -> None:
        row = self.pseudonymize(event, time.time() if at is None else at)
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "search-log buffer full (%d events): %d dropped so far",
                    self.max_buffer,
                    self.dropped,
                )
            return
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_size:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="searchlog-writer")

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deadline = time.monotonic() + timeout_s
        while self._buffer and time.monotonic() < deadline:
            if not await self._write_batch():
                await asyncio.sleep(0.2)
        if self._buffer:
            log.error("search-log shutdown: %d events could not be written", len(self._buffer))

    async def flush(self) -> None:
        while self._buffer:
            if not await self._write_batch():
                raise RuntimeError("search-log database unavailable")

    async def _run(self) -> None:
        """Write a batch when one is full or the interval has passed, never in a tight loop."""
        backoff = self.flush_interval_s
        while True:
            if len(self._buffer) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), backoff)
                self._wakeup.clear()
            if not self._buffer:
                continue
            if await self._write_batch():
                backoff = self.flush_interval_s
            else:
                backoff = min(backoff * 2, 10.0)
                await asyncio.sleep(backoff)

    async def _write_batch(self) -> bool:
        async with self._write_lock:  # the writer task and flush() never write the same rows
            return await self._write_batch_locked()

    async def _write_batch_locked(self) -> bool:
        if not self._buffer:
            return True
        batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
        try:
            async with self.db.session() as session:
                await SearchLogRepository(session).insert_many(batch)
        except Exception as exc:
            self.write_failures += 1
            log.warning(
                "search-log write failed (%s); %d events kept for retry",
                type(exc).__name__,
                len(self._buffer),
            )
            return False
        for _ in batch:
            self._buffer.popleft()
        self.written += len(batch)
        return True

    # --- data-subject rights ----------------------------------------------------------------

    async def rows_for_account(self, account_id: str) -> list[SearchEventPublic]:
        await self.flush()
        self.keyring.reload()
        pseudonyms = self.keyring.all_pseudonyms("account", account_id)
        async with self.db.session() as session:
            rows = await SearchLogRepository(session).rows_for(pseudonyms)
        return [SearchEventPublic.model_validate(r, from_attributes=True) for r in rows]

    async def erase_account(self, account_id: str) -> int:
        await self.flush()
        self.keyring.reload()
        pseudonyms = self.keyring.all_pseudonyms("account", account_id)
        async with self.db.session() as session:
            return await SearchLogRepository(session).delete_for(pseudonyms)
