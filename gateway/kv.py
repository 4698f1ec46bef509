"""The Redis client: a real server when ``VINGW_REDIS_URL`` is set, else an in-process stand-in.

The stand-in is fakeredis with Lua (lupa), so the same Lua scripts and commands run on both:
one implementation of the logic, not two. It is not shared between processes, which is why
embedded mode refuses more than one worker.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config import Settings


class _HiredisPacking:
    """Commands packed by hiredis's C packer instead of redis-py's Python loop: the admission
    call has 31 arguments, and packing them in Python cost more client time than the rest of
    the call. The same wire format (RESP arrays of bulk strings); a command name with a space
    ("CONFIG GET") is split as redis-py splits it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class PackedConnection(_HiredisPacking, Connection):
    pass


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED: dict[type, type] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def make_redis(settings: Settings) -> aioredis.Redis:
    if settings.redis_url is None:
        import fakeredis

        return fakeredis.FakeAsyncRedis()  # a redis.asyncio.Redis subclass
    # Bounded: one attempt, no backoff, so a dead Redis fails a request within the timeout.
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
    # the URL chose plain, TLS or Unix-socket connections (from_url overrides any class passed
    # in); keep that choice, packed by hiredis. No connection exists yet.
    pool = client.connection_pool
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return client
