"""The durable queue of the search log in Redis: N streams (shards), one consumer group each.

An account's events go to one shard, ``<stream>:{n}`` with ``n = shard_of(account id, N)``
(``VINGW_SEARCHLOG_SHARDS``): the hash tag puts each shard in a cluster slot of its own, so the
XADD/XREADGROUP/XACK traffic spreads over a Redis Cluster's masters, and a flush for one account
(export, erasure) drains its own shard only. Every command names one key (a RedisCluster client
routes it to that key's master; nothing is multi-key, nothing CROSSSLOT).

Gateway workers XADD pseudonymized rows in pipelined batches; consumers (a background task in
each worker, or ``vin-gateway searchlog-writer``) read every shard with XREADGROUP, insert a
batch and then XACK + XDEL it. Entries a consumer read but never acknowledged (it died between
reading and inserting, or between inserting and acknowledging) stay in the shard's pending
list, and another consumer takes them over with XAUTOCLAIM once they have been idle long
enough. Inserts are idempotent (unique event id), so a reclaimed entry that was in fact
inserted is skipped.

Changing N loses nothing: every process adds its N to the set ``<stream>:shards``, consumers
read the shards of every N in it, and a flush drains the account's shard under each. With N = 1
the one stream is ``<stream>`` itself, as before shards existed; that stream is read as one more
shard while it exists (an upgrade from the unsharded queue loses nothing either).

Erasure tombstones: the sorted set ``<stream>:erased`` (account pseudonym -> when it was
erased) tells consumers which queued events must never be inserted (``writer``). Forgotten
grants: the sorted set ``<stream>:forgotten`` (grant pseudonym -> when it was forgotten) tells
them which queued events must be inserted without their grant pseudonym.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from redis.exceptions import ResponseError

from gateway.kv import make_client
from gateway.pipelined import make_pipelined
from gateway.searchlog.events import SHARD, shard_of

log = logging.getLogger("vin_gateway.searchlog")

Entry = tuple[str, dict[str, Any]]  # (stream id, row)


def consumer_name(instance: str) -> str:
    """Unique per process and start: a restarted worker never inherits its own pending list
    (XAUTOCLAIM hands it to a live consumer instead)."""
    return f"{instance}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def shard_key(stream: str, shard: int, shards: int) -> str:
    """The key of shard ``shard`` of ``shards``: its hash tag is the shard number (one cluster
    slot per shard). With one shard, the stream itself: the queue as it was before shards."""
    return stream if shards == 1 else f"{stream}:{{{shard}}}"


class StreamQueue:
    def __init__(
        self,
        redis_url: str,
        *,
        stream: str,
        group: str,
        consumer: str,
        shards: int = 1,
        timeout_s: float = 5.0,
        cluster: bool = False,
    ) -> None:
        self.stream = stream  # the shards' prefix (and the name of the unsharded legacy stream)
        self.group = group
        self.consumer = consumer
        self.shards = shards
        self.registry = f"{stream}:shards"  # every N any process used
        self.erased_key = f"{stream}:erased"  # tombstones: account pseudonym -> erased at
        self.forgotten_key = f"{stream}:forgotten"  # grant pseudonym -> forgotten at
        # its own connection pool: blocking reads must not share the request path's short
        # socket timeout, and a slow log pipeline must not hold request-path connections
        # (``cluster``: a RedisCluster, each stream key routed to its slot's master)
        self.redis: Any = make_client(redis_url, timeout_s=timeout_s, cluster=cluster)
        # the shipping path (XADD batches from every worker): pipelined, packed by hiredis
        # (on a cluster: one pipeline per master)
        self._pipe = make_pipelined(redis_url, timeout_s=timeout_s, cluster=cluster)
        self._ready: set[str] = set()  # keys whose group is known to exist
        self._counts: tuple[int, ...] = (shards,)  # shard counts in use, from the registry
        self._legacy = False  # whether the unsharded stream exists
        self._registered = False

    async def close(self) -> None:
        await self._pipe.aclose()
        await self.redis.aclose()

    # --- which streams exist ------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read which shard counts are in use and whether the legacy stream exists."""
        await self.register()
        members = await self.redis.smembers(self.registry)
        counts = {int(m) for m in members} | {self.shards}
        self._counts = tuple(sorted(counts))
        self._legacy = bool(await self.redis.exists(self.stream))

    async def register(self) -> None:
        """Add this process's N to the registry (once): consumers configured with another N
        read these shards too."""
        if not self._registered:
            await self.redis.sadd(self.registry, self.shards)
            self._registered = True

    def keys(self) -> list[str]:
        """Every stream a consumer reads: the shards of the largest N in use (which contain
        those of every smaller one), and the unsharded stream (N = 1) while it exists."""
        most = max(self._counts)
        keys = [shard_key(self.stream, n, most) for n in range(most)] if most > 1 else []
        return [*keys, self.stream] if self._legacy or self.shards == 1 else keys

    def account_keys(self, account_id: str) -> list[str]:
        """The streams that may hold the account's queued events: its shard under every N in
        use (one, unless N was changed), and the legacy stream while it exists."""
        keys = {shard_key(self.stream, shard_of(account_id, n), n) for n in self._counts if n > 1}
        if self._legacy or self.shards == 1:
            keys.add(self.stream)
        return sorted(keys)

    async def ensure_group(self, key: str) -> None:
        if key in self._ready:
            return
        # the unsharded stream is created only with N = 1; else it is read while it exists
        create = key != self.stream or self.shards == 1
        try:
            await self.redis.xgroup_create(key, self.group, id="0", mkstream=create)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._ready.add(key)

    async def _call(self, key: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run a group command on ``key``; recreate the group once if it vanished (FLUSHDB)."""
        await self.ensure_group(key)
        try:
            return await getattr(self.redis, name)(key, *args, **kwargs)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready.discard(key)
            await self.ensure_group(key)
            return await getattr(self.redis, name)(key, *args, **kwargs)

    # --- shipping -----------------------------------------------------------------------------

    async def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """XADD every row to its shard (``row[SHARD]``) in one pipelined round trip (per master
        on a cluster; no transaction needed: duplicates of a partly applied pipeline are
        harmless, inserts are idempotent). The first time this process ships to a shard it
        makes sure the shard's group exists (reading from the first entry on); the first time
        it ships at all, it registers its N."""
        commands = [
            ("XADD", shard_key(self.stream, row[SHARD], self.shards), "*", "e", orjson.dumps(row))
            for row in rows
        ]
        await self.register()
        for key in {str(c[1]) for c in commands} - self._ready:
            await self.ensure_group(key)
        await self._pipe.execute_many(commands)

    # --- consuming ----------------------------------------------------------------------------

    def _parse(self, raw: Sequence[Any]) -> tuple[list[Entry], list[str]]:
        entries: list[Entry] = []
        poison: list[str] = []
        for entry_id, fields in raw:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if not fields:  # deleted while pending: nothing left to insert
                poison.append(eid)
                continue
            try:
                row = orjson.loads(fields[b"e"])
                row.pop(SHARD, None)  # where it was queued, not a column
                entries.append((eid, row))
            except (KeyError, AttributeError, orjson.JSONDecodeError):
                log.error(
                    "search-log stream entry %s is not an event; acknowledged and dropped", eid
                )
                poison.append(eid)
        return entries, poison

    async def read(
        self, key: str, count: int, block_ms: int | None, *, own_pending: bool = False
    ) -> list[Entry]:
        """New entries of stream ``key`` for this consumer (blocking up to ``block_ms``; None:
        do not block), or with ``own_pending`` the entries this consumer read earlier and has
        not acknowledged."""
        streams = {key: "0" if own_pending else ">"}
        await self.ensure_group(key)
        try:
            result = await self.redis.xreadgroup(
                self.group, self.consumer, streams, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ready.discard(key)  # the group vanished (FLUSHDB): recreated, read once more
            await self.ensure_group(key)
            result = await self.redis.xreadgroup(
                self.group, self.consumer, streams, count=count, block=block_ms
            )
        raw = result[0][1] if result else []
        entries, poison = self._parse(raw)
        if poison:
            await self.ack(key, poison)
        return entries

    async def claim(self, key: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries other consumers read but left unacknowledged for ``min_idle_ms``."""
        result = await self._call(
            key, "xautoclaim", self.group, self.consumer, min_idle_ms, "0-0", count=count
        )
        raw = result[1]
        # XAUTOCLAIM (Redis 7) already drops ids of deleted entries from the pending list
        entries, poison = self._parse(raw)
        if poison:
            await self.ack(key, poison)
        return entries

    async def ack(self, key: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:  # one key: one slot
            pipe.xack(key, self.group, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()

    async def pending_count(self, key: str, consumer: str | None = None) -> int:
        if consumer is None:
            info = await self._call(key, "xpending", self.group)
            return int(info["pending"])
        rows = await self._call(
            key, "xpending_range", self.group, "-", "+", 1, consumername=consumer
        )
        return len(rows)

    async def last_id(self, key: str) -> str | None:
        """The id of the newest entry ever added to ``key`` (None for an empty, new stream)."""
        await self.ensure_group(key)
        info = await self.redis.xinfo_stream(key)
        last = info.get("last-generated-id")
        last = last.decode() if isinstance(last, bytes) else last
        return None if last in (None, "0-0") else str(last)

    async def delivered_up_to(self, key: str, entry_id: str) -> bool:
        """Whether the group has handed out every entry of ``key`` up to ``entry_id``."""
        for group in await self._call(key, "xinfo_groups"):
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == self.group:
                last = group["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else str(last)
                return _id_key(last) >= _id_key(entry_id)
        return False

    async def pending_up_to(self, key: str, entry_id: str) -> int:
        """Entries up to ``entry_id`` read by some consumer but not acknowledged yet."""
        rows = await self._call(key, "xpending_range", self.group, "-", entry_id, 1)
        return len(rows)

    async def length(self) -> int:
        """Entries in every stream (shards and legacy)."""
        return sum([int(await self.redis.xlen(key)) for key in self.keys()])

    async def leave(self) -> None:
        """Remove this consumer from every group in which it holds nothing (XGROUP DELCONSUMER
        would otherwise discard its pending entries)."""
        for key in self.keys():
            if key in self._ready and await self.pending_count(key, self.consumer) == 0:
                await self._call(key, "xgroup_delconsumer", self.group, self.consumer)

    # --- erasure tombstones -------------------------------------------------------------------

    async def tombstone(self, pseudonyms: Collection[str], at: float, ttl_s: float) -> None:
        """Record that these account pseudonyms were erased at ``at``: consumers drop their
        queued events for ``ttl_s`` (older tombstones are pruned here; the set expires
        ``ttl_s`` after the last erasure)."""
        await self._mark(self.erased_key, pseudonyms, at, ttl_s)

    async def erased(self, pseudonyms: Collection[str], now: float, ttl_s: float) -> set[str]:
        """Which of these account pseudonyms have a live tombstone."""
        return await self._marked(self.erased_key, pseudonyms, now, ttl_s)

    async def forget(self, pseudonyms: Collection[str], at: float, ttl_s: float) -> None:
        """Record that these grant pseudonyms were forgotten at ``at``: for ``ttl_s``,
        consumers insert their queued events without them (pruned and expiring as above)."""
        await self._mark(self.forgotten_key, pseudonyms, at, ttl_s)

    async def forgotten(self, pseudonyms: Collection[str], now: float, ttl_s: float) -> set[str]:
        """Which of these grant pseudonyms were forgotten (within ``ttl_s``)."""
        return await self._marked(self.forgotten_key, pseudonyms, now, ttl_s)

    async def _mark(self, key: str, pseudonyms: Collection[str], at: float, ttl_s: float) -> None:
        if not pseudonyms:
            return
        async with self.redis.pipeline(transaction=True) as pipe:  # one key: one slot
            pipe.zadd(key, dict.fromkeys(pseudonyms, at))
            pipe.zremrangebyscore(key, "-inf", at - ttl_s)
            pipe.expire(key, int(ttl_s) + 1)
            await pipe.execute()

    async def _marked(
        self, key: str, pseudonyms: Collection[str], now: float, ttl_s: float
    ) -> set[str]:
        unique = list(dict.fromkeys(pseudonyms))
        if not unique:
            return set()
        scores = await self.redis.zmscore(key, unique)
        return {p for p, s in zip(unique, scores, strict=True) if s is not None and s > now - ttl_s}


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
