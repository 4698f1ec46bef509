"""The durable queue of the search log in Redis: one stream, one consumer group.

Gateway workers XADD pseudonymized rows in pipelined batches; consumers (a background task in
each worker, or ``vin-gateway searchlog-writer``) read them with XREADGROUP, insert a batch and
then XACK + XDEL it. Entries a consumer read but never acknowledged (it died between reading
and inserting, or between inserting and acknowledging) stay in the group's pending list, and
another consumer takes them over with XAUTOCLAIM once they have been idle long enough. Inserts
are idempotent (unique event id), so a reclaimed entry that was in fact inserted is skipped.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.pipelined import PipelinedRedis

log = logging.getLogger("vin_gateway.searchlog")

Entry = tuple[str, dict[str, Any]]  # (stream id, row)


def consumer_name(instance: str) -> str:
    """Unique per process and start: a restarted worker never inherits its own pending list
    (XAUTOCLAIM hands it to a live consumer instead)."""
    return f"{instance}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class StreamQueue:
    def __init__(
        self,
        redis_url: str,
        *,
        stream: str,
        group: str,
        consumer: str,
        timeout_s: float = 5.0,
    ) -> None:
        self.stream = stream
        self.group = group
        self.consumer = consumer
        # its own connection pool: blocking reads must not share the request path's short
        # socket timeout, and a slow log pipeline must not hold request-path connections
        self.redis: Any = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        # the shipping path (XADD batches from every worker): pipelined, packed by hiredis
        self._pipe = PipelinedRedis(redis_url, timeout_s=timeout_s)
        self._group_ready = False

    async def close(self) -> None:
        await self._pipe.aclose()
        await self.redis.aclose()

    async def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run a group command; recreate the group once if it vanished (e.g. FLUSHDB)."""
        await self.ensure_group()
        try:
            return await getattr(self.redis, name)(*args, **kwargs)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False
            await self.ensure_group()
            return await getattr(self.redis, name)(*args, **kwargs)

    async def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """XADD every row in one pipelined round trip (no transaction needed: duplicates of a
        partly applied pipeline are harmless, inserts are idempotent)."""
        await self._pipe.execute_many(
            [("XADD", self.stream, "*", "e", orjson.dumps(row)) for row in rows]
        )

    def _parse(self, raw: Sequence[Any]) -> tuple[list[Entry], list[str]]:
        entries: list[Entry] = []
        poison: list[str] = []
        for entry_id, fields in raw:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if not fields:  # deleted while pending: nothing left to insert
                poison.append(eid)
                continue
            try:
                entries.append((eid, orjson.loads(fields[b"e"])))
            except (KeyError, orjson.JSONDecodeError):
                log.error(
                    "search-log stream entry %s is not an event; acknowledged and dropped", eid
                )
                poison.append(eid)
        return entries, poison

    async def read(
        self, count: int, block_ms: int | None, *, own_pending: bool = False
    ) -> list[Entry]:
        """New entries for this consumer (blocking up to ``block_ms``; None: do not block), or
        with ``own_pending`` the entries this consumer read earlier and has not acknowledged."""
        result = await self._call(
            "xreadgroup",
            self.group,
            self.consumer,
            {self.stream: "0" if own_pending else ">"},
            count=count,
            block=block_ms,
        )
        raw = result[0][1] if result else []
        entries, poison = self._parse(raw)
        if poison:
            await self.ack(poison)
        return entries

    async def claim(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries other consumers read but left unacknowledged for ``min_idle_ms``."""
        result = await self._call(
            "xautoclaim", self.stream, self.group, self.consumer, min_idle_ms, "0-0", count=count
        )
        raw = result[1]
        # XAUTOCLAIM (Redis 7) already drops ids of deleted entries from the pending list
        entries, poison = self._parse(raw)
        if poison:
            await self.ack(poison)
        return entries

    async def ack(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()

    async def pending_count(self, consumer: str | None = None) -> int:
        if consumer is None:
            info = await self._call("xpending", self.stream, self.group)
            return int(info["pending"])
        rows = await self._call(
            "xpending_range", self.stream, self.group, "-", "+", 1, consumername=consumer
        )
        return len(rows)

    async def last_id(self) -> str | None:
        """The id of the newest entry ever added (None for an empty, new stream)."""
        await self.ensure_group()
        info = await self.redis.xinfo_stream(self.stream)
        last = info.get("last-generated-id")
        last = last.decode() if isinstance(last, bytes) else last
        return None if last in (None, "0-0") else str(last)

    async def delivered_up_to(self, entry_id: str) -> bool:
        """Whether the group has handed out every entry up to ``entry_id``."""
        for group in await self._call("xinfo_groups", self.stream):
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == self.group:
                last = group["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else str(last)
                return _id_key(last) >= _id_key(entry_id)
        return False

    async def pending_up_to(self, entry_id: str) -> int:
        """Entries up to ``entry_id`` read by some consumer but not acknowledged yet."""
        rows = await self._call("xpending_range", self.stream, self.group, "-", entry_id, 1)
        return len(rows)

    async def length(self) -> int:
        return int(await self.redis.xlen(self.stream))

    async def leave(self) -> None:
        """Remove this consumer from the group if it holds nothing (XGROUP DELCONSUMER would
        otherwise discard its pending entries)."""
        if await self.pending_count(self.consumer) == 0:
            await self._call("xgroup_delconsumer", self.stream, self.group, self.consumer)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
