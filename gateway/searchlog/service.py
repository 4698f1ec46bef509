"""The search log as its callers see it: a small facade over its parts.

* ``events``: ``QueryEvent`` and the pseudonymized row it becomes;
* ``shipping``: the outbox (``record`` appends, no I/O; a shipper task XADDs batches to the
  Redis Stream every ship interval, or, embedded, inserts them every flush interval);
* ``writer``: batch inserts and the stream consumer (consumer group, reclaim, idempotent
  inserts, ack, drain; retries with backoff and bounded memory while the database is down);
* ``rights``: export, erasure, grant uses and forgotten grants, daily counts, legal hold,
  purge and the maintenance task;
* ``options``: the tunables, built from ``Settings`` only.

``start`` starts the background tasks, ``stop`` (SIGTERM) ends them and ships or writes what is
buffered; nothing the package started outlives it. See docs/searchlog.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

from gateway.config import Settings
from gateway.db import Database
from gateway.exceptions import ServiceUnavailable
from gateway.searchlog import metrics
from gateway.searchlog.events import SHARD, QueryEvent, pseudonymize, shard_of
from gateway.searchlog.models import GrantUseRow, SearchEventPublic
from gateway.searchlog.options import (
    BLOCK_MS,
    DRAIN_TIMEOUT_S,
    GROUP,
    STOP_TASKS_S,
    SearchLogOptions,
)
from gateway.searchlog.pseudonym import KeyRing
from gateway.searchlog.rights import RightsAndRetention
from gateway.searchlog.shipping import Outbox, StreamSink
from gateway.searchlog.stream import StreamQueue, consumer_name
from gateway.searchlog.writer import BatchWriter, StreamConsumer

__all__ = ["GrantUseRow", "QueryEvent", "SearchLog", "SearchLogOptions"]

log = logging.getLogger("vin_gateway.searchlog")


class SearchLog:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        *,
        instance: str,
        options: SearchLogOptions,
        redis_url: str | None = None,
        redis_cluster: bool = False,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.instance = instance
        self.o = options
        self.writer = BatchWriter(db)
        self.stream: StreamQueue | None = None
        self.consumer: StreamConsumer | None = None
        if redis_url is None:
            self.outbox = Outbox(
                self.writer.write,
                interval_s=options.flush_interval_s,
                batch_size=options.batch_size,
                max_buffer=options.max_buffer,
                unavailable="The search-log database is unavailable",
            )
        else:
            self.stream = StreamQueue(
                redis_url,
                stream=options.stream,
                group=GROUP,
                consumer=consumer_name(instance),
                shards=options.shards,
                timeout_s=max(5.0, BLOCK_MS / 1000 + 2),
                cluster=redis_cluster,
            )
            self.outbox = Outbox(
                StreamSink(self.stream, options.max_buffer),
                interval_s=options.ship_interval_s,
                batch_size=options.batch_size,
                max_buffer=options.max_buffer,
                unavailable="The search-log queue is unavailable",
            )
            self.consumer = StreamConsumer(self.stream, self.writer, options)
        # grant pseudonyms this process forgot -> when: never recorded with them again
        self._forgotten: dict[str, float] = {}
        self.rights = RightsAndRetention(
            db,
            keyring,
            options,
            settle=self._settle,
            tombstone=self._tombstone,
            forget=self._forget,
        )

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> SearchLog:
        keyring = KeyRing(settings.pseudonym_keys_path, settings.pseudonym_epoch)
        return cls(
            db,
            keyring,
            instance=settings.instance,
            redis_url=settings.redis_url,
            redis_cluster=settings.redis_cluster,
            options=SearchLogOptions.from_settings(settings),
        )

    # --- write path ---------------------------------------------------------------------------

    def record(self, event: QueryEvent, at: float | None = None) -> None:
        """Pseudonymize and buffer one event: no I/O on the request path."""
        row = pseudonymize(event, time.time() if at is None else at, self.keyring, self.instance)
        if self._forgotten and row["grant_pseudonym"] in self._forgotten:
            row["grant_pseudonym"] = None  # a request still in flight when its grant went
        if self.stream is not None:  # the account's shard (stripped before the row is stored)
            row[SHARD] = shard_of(event.account_id, self.o.shards)
        metrics.EVENTS.labels("recorded").inc()
        self.outbox.append(row)

    @property
    def pending(self) -> int:
        """Events still in this process's buffer."""
        return self.outbox.pending

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    @property
    def written(self) -> int:
        return self.writer.written

    @property
    def write_failures(self) -> int:
        return self.writer.write_failures

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.outbox.start()
        if self.consumer is not None and self.o.consumer:
            self.consumer.start()
        self.rights.start()

    def _tasks(self) -> list[asyncio.Task[None]]:
        parts = (self.outbox, self.consumer, self.rights)
        return [p.task for p in parts if p is not None and p.task is not None]

    async def stop(self, timeout_s: float | None = None) -> None:
        """Shutdown (SIGTERM): nothing buffered is lost while Redis or the database answers.

        The loops end first (waited for at most ``STOP_TASKS_S``: one that does not end at once
        must not hold up the shutdown flush), then the inserts they left running, then the
        outbox ships (or writes straight to the database when Redis does not answer) and, if
        this process consumes, the stream is drained, all until the deadline. Whatever the
        package started and is still running then is cancelled and waited for.
        """
        deadline = time.monotonic() + (DRAIN_TIMEOUT_S if timeout_s is None else timeout_s)
        tasks = self._tasks()
        self.outbox.stopping()
        if self.consumer is not None:
            self.consumer.stopping()
        self.rights.stopping()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TASKS_S)
            for task in stuck:
                log.warning("search-log %s did not stop in time", task.get_name())
        await self.writer.settle(deadline)  # inserts the cancelled tasks started finish first
        fallback = self.writer.write if self.stream is not None else None
        await self.outbox.close(deadline, fallback)
        if self.stream is not None:
            try:
                if self.o.consumer and self.consumer is not None:
                    await self.consumer.drain(deadline)
                await self.stream.leave()
            except Exception as exc:
                log.warning(
                    "search-log shutdown: stream left as is (%s); other writers take it over",
                    type(exc).__name__,
                )
        await self.writer.abandon()
        if stuck := {t for t in stuck if not t.done()}:
            await asyncio.wait(stuck, timeout=STOP_TASKS_S)
        if self.stream is not None:
            await self.stream.close()

    # --- making what was recorded visible -----------------------------------------------------

    async def flush(self, timeout_s: float | None = None, *, account_id: str | None = None) -> None:
        """Make every event recorded so far (by any worker) visible in the database; with
        ``account_id``, every event of that account (only its shard of the stream is drained,
        so other accounts' backlog does not hold the request up).

        What it waits for, in order, each a condition and none a guess:

        1. this process's outbox has shipped every event recorded before the call (the shipper
           is asked to ship at once and signals each attempt; embedded, "shipped" means
           inserted, and nothing more is needed);
        2. once, until ``options.peer_ship_wait_s`` has passed since the call began: one ship
           interval (``VINGW_SEARCHLOG_SHIP_INTERVAL_MS``, capped at ``PEER_SHIP_WAIT_MAX_S``)
           plus ``SHIP_MARGIN_S``, the bound within which every other worker's shipper XADDs
           what it had recorded before the call (100 ms by default; not covered: a worker
           that cannot reach Redis);
        3. the stream drained up to its newest entry at that moment, entries other consumers
           hold included (``StreamConsumer.drain``): every shard, or the account's.

        Raises ``ServiceUnavailable`` when that cannot be done in time (the database or Redis is
        down): a data-subject request must not answer from a log that is still being written.
        """
        started = time.monotonic()
        deadline = started + (DRAIN_TIMEOUT_S if timeout_s is None else timeout_s)
        await self.outbox.wait_shipped(deadline)
        if self.consumer is None:
            return
        peers_shipped = started + self.o.peer_ship_wait_s
        if peers_shipped > deadline:
            raise ServiceUnavailable("The search-log queue could not be drained in time")
        if (wait := peers_shipped - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        try:
            keys = None
            if account_id is not None and self.stream is not None:
                await self.stream.refresh()
                keys = self.stream.account_keys(account_id)
            await self.consumer.drain(deadline, keys)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable("The search-log queue is unavailable") from exc

    async def _settle(self, account_id: str | None) -> None:
        """What export and erasure (an account), or the statistics (None) wait for."""
        await self.flush(account_id=account_id)

    async def _tombstone(self, pseudonyms: list[str]) -> None:
        """Erasure: consumers must drop the events still queued for these pseudonyms."""
        if self.stream is None:
            return  # embedded: nothing is queued outside this process's outbox
        try:
            await self.stream.tombstone(pseudonyms, time.time(), self.o.tombstone_ttl_s)
        except Exception as exc:
            raise ServiceUnavailable("The search-log queue is unavailable") from exc

    async def _forget(self, pseudonyms: list[str]) -> None:
        """Forgotten grants: this process records no event with these pseudonyms any more,
        and (with Redis) every consumer writes the queued ones without them."""
        now = time.time()
        cut = now - self.o.tombstone_ttl_s
        self._forgotten = {p: t for p, t in self._forgotten.items() if t > cut}
        self._forgotten.update(dict.fromkeys(pseudonyms, now))
        if self.stream is None:
            return  # embedded: nothing is queued outside this process's outbox
        try:
            await self.stream.forget(pseudonyms, now, self.o.tombstone_ttl_s)
        except Exception as exc:
            raise ServiceUnavailable("The search-log queue is unavailable") from exc

    async def drain(self, timeout_s: float | None = None) -> None:
        """``vin-gateway searchlog-writer --drain``: write what the stream holds, then return."""
        assert self.consumer is not None, "draining needs Redis"
        deadline = time.monotonic() + (DRAIN_TIMEOUT_S if timeout_s is None else timeout_s)
        await self.consumer.drain(deadline)

    async def consume_forever(self) -> None:
        """``vin-gateway searchlog-writer``: the stream consumer, until cancelled."""
        assert self.consumer is not None, "consuming needs Redis"
        await self.consumer.consume_forever()

    # --- data-subject rights, legal hold, retention (``rights``) ------------------------------

    async def rows_for_account(self, account_id: str) -> list[SearchEventPublic]:
        return await self.rights.rows_for_account(account_id)

    async def erase_account(self, account_id: str) -> int:
        """Erase the account's rows, queued ones included (flushed first). Rows under legal
        hold stay until the hold is lifted (docs/searchlog.md)."""
        return await self.rights.erase_account(account_id)

    async def grant_uses(
        self, grant_id: str, *, since: int, grantee: str | None = None
    ) -> list[GrantUseRow]:
        """A grant's uses (its grantee's queries under it) from ``since`` (the grant's
        created_at, epoch s) on, newest first, at most ``rights.GRANT_USES_LIMIT``; events
        still queued are written first (only the ``grantee``'s shard when given, else
        every shard). Epochs whose keys retention destroyed yield nothing."""
        return await self.rights.grant_uses(grant_id, since=since, grantee=grantee)

    async def forget_grants(
        self, grants: list[tuple[str, int]], *, grantees: Collection[str] | None = None
    ) -> int:
        """Unlink the rows of these grants ((grant id, created_at epoch s)): their grant
        pseudonym becomes NULL, queued events included; the rows stay. ``grantees``: the
        accounts the grants were given to, when known: only their shards are drained (empty:
        no grant was ever redeemed, so none has a use to wait for); None: every shard."""
        return await self.rights.forget_grants(grants, grantees=grantees)

    async def daily_counts(self, days: int) -> tuple[int, list[dict[str, Any]]]:
        return await self.rights.daily_counts(days)

    async def hold_account(self, account_id: str) -> int:
        return await self.rights.hold_account(account_id)

    async def release_account(self, account_id: str) -> int:
        return await self.rights.release_account(account_id)

    async def purge(self, now: float | None = None) -> dict[str, Any]:
        return await self.rights.purge(now)
