"""The outbox: this process's bounded buffer of pseudonymized rows and the task that ships it.

``record`` does no I/O: it appends a row and wakes the shipper. The shipper ships one interval
after the oldest buffered row was recorded (many rows, one round trip; at once when a batch is
full or a flush asks), so no row waits longer than that. It hands batches to its sink:
pipelined XADDs to the Redis Stream (``StreamSink``), or, embedded, batch inserts into the log
database. A sink that fails is retried with backoff while the buffer keeps at most
``max_buffer`` rows (the overflow is dropped, counted and logged).

Every attempt is announced on a condition, so ``wait_shipped`` waits for exactly what it needs:
the rows recorded before it was called have been taken by the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.exceptions import ServiceUnavailable
from gateway.searchlog import metrics
from gateway.searchlog.events import Row
from gateway.searchlog.options import MAX_BACKOFF_S, RETRY_START_S
from gateway.searchlog.stream import StreamQueue

log = logging.getLogger("vin_gateway.searchlog")

# takes a batch (and how many rows are waiting, for its log line); False: not taken, retry
Sink = Callable[[list[Row], int], Awaitable[bool]]


class StreamSink:
    """Ships batches to the Redis Stream in one pipelined round trip each."""

    def __init__(self, stream: StreamQueue, max_buffer: int) -> None:
        self.stream = stream
        self.max_buffer = max_buffer
        self._failing = False

    async def __call__(self, rows: list[Row], waiting: int) -> bool:
        try:
            await self.stream.add(rows)
        except Exception as exc:
            metrics.FAILURES.labels("queue").inc()
            if not self._failing:
                self._failing = True
                log.error(
                    "search-log stream unavailable (%s): %d events buffered in process "
                    "(at most %d), retrying",
                    type(exc).__name__,
                    waiting,
                    self.max_buffer,
                )
            return False
        if self._failing:
            self._failing = False
            log.warning("search-log stream available again")
        metrics.EVENTS.labels("queued").inc(len(rows))
        return True


class Outbox:
    def __init__(
        self,
        sink: Sink,
        *,
        interval_s: float,
        batch_size: int,
        max_buffer: int,
        unavailable: str,
    ) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.unavailable = unavailable  # the 503's message when the sink does not answer
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self._buffer: deque[Row] = deque()
        self._recorded = 0  # rows ever appended
        self._oldest_at = 0.0  # when the oldest buffered row was appended (monotonic)
        self._shipped = 0  # rows ever taken by a sink: the first ``_shipped`` appended (FIFO)
        self._attempts = 0  # ship attempts started
        self._failed_attempt = 0  # the number of the latest attempt that failed
        self._progress = asyncio.Condition()  # notified after every attempt
        self._has_rows = asyncio.Event()
        self._ship_now = asyncio.Event()  # skip the interval (or the backoff): full, flush, stop
        self._lock = asyncio.Lock()  # one attempt at a time: rows are taken once, in order
        self._stopping = False

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def append(self, row: Row) -> None:
        """Buffer one row (no I/O); dropped, counted and logged when the buffer is full."""
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1
            metrics.EVENTS.labels("dropped").inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "search-log buffer full (%d events): %d dropped so far",
                    self.max_buffer,
                    self.dropped,
                )
            return
        if not self._buffer:
            self._oldest_at = time.monotonic()
        self._buffer.append(row)
        self._recorded += 1
        metrics.BUFFERED.set(len(self._buffer))
        self._has_rows.set()
        if len(self._buffer) >= self.batch_size:
            self._ship_now.set()

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._ship_loop(), name="searchlog-shipper")

    def stopping(self) -> None:
        """End the loop (flag and cancellation: see ``StreamConsumer.stopping``)."""
        self._stopping = True
        self._has_rows.set()
        self._ship_now.set()
        if self.task is not None:
            self.task.cancel()

    async def _ship_loop(self) -> None:
        backoff = RETRY_START_S
        while not self._stopping:
            await self._has_rows.wait()
            # many rows, one round trip: the interval counts from the oldest row's recording,
            # not from when this task got to run (what flush() relies on for other workers)
            delay = self._oldest_at + self.interval_s - time.monotonic()
            if delay > 0 and not self._ship_now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ship_now.wait(), delay)
            self._has_rows.clear()
            self._ship_now.clear()
            while self._buffer and not self._stopping:
                if await self.ship_batch():
                    backoff = RETRY_START_S
                    continue
                with contextlib.suppress(TimeoutError):  # a flush retries at once
                    await asyncio.wait_for(self._ship_now.wait(), backoff)
                self._ship_now.clear()
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def ship_batch(self, sink: Sink | None = None) -> bool:
        """Hand the oldest batch to ``sink`` (default: this outbox's); True when it was taken
        or there was nothing to ship."""
        async with self._lock:
            if not self._buffer:
                return True
            self._attempts += 1
            attempt = self._attempts
            batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
            ok = await (sink or self.sink)(batch, len(self._buffer))
            if ok:
                for _ in batch:
                    self._buffer.popleft()
                self._shipped += len(batch)
                metrics.BUFFERED.set(len(self._buffer))
            else:
                self._failed_attempt = attempt
        async with self._progress:
            self._progress.notify_all()
        return ok

    async def wait_shipped(self, deadline: float) -> None:
        """Return once every row recorded before this call has been taken by the sink.

        The running shipper is asked to ship at once and signals each attempt; without one
        (not started, or stopping) the rows are shipped here. Raises ``ServiceUnavailable``
        when an attempt made for this call fails, or at ``deadline``.
        """
        target = self._recorded
        if self._shipped >= target:
            return
        if self.task is None or self.task.done() or self._stopping:
            while self._shipped < target:
                if time.monotonic() > deadline or not await self.ship_batch():
                    raise ServiceUnavailable(self.unavailable)
            return
        since = self._attempts  # attempts started after this one are made for this call

        def settled() -> bool:
            return self._shipped >= target or self._failed_attempt > since

        self._ship_now.set()
        async with self._progress:
            try:
                await asyncio.wait_for(
                    self._progress.wait_for(settled), max(deadline - time.monotonic(), 0)
                )
            except TimeoutError:
                raise ServiceUnavailable(self.unavailable) from None
        if self._shipped < target:
            raise ServiceUnavailable(self.unavailable)

    async def close(self, deadline: float, fallback: Sink | None = None) -> None:
        """Shutdown, after ``stopping``: ship what is buffered until ``deadline``, to
        ``fallback`` (the database) when the sink (the stream) does not take it."""
        while self._buffer and time.monotonic() < deadline:
            if await self.ship_batch():
                continue
            if fallback is not None and await self.ship_batch(fallback):
                continue
            await asyncio.sleep(0.2)
        if self._buffer:
            log.error("search-log shutdown: %d events could not be written", len(self._buffer))
