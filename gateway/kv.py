"""The Redis client: a real server when ``VINGW_REDIS_URL`` is set, else an in-process stand-in.

The stand-in is fakeredis with Lua (lupa), so the same Lua scripts and commands run on both:
one implementation of the logic, not two. It is not shared between processes, which is why
embedded mode refuses more than one worker.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config import Settings


def make_redis(settings: Settings) -> aioredis.Redis:
    if settings.redis_url is None:
        import fakeredis

        return fakeredis.FakeAsyncRedis()  # a redis.asyncio.Redis subclass
    # Bounded: one attempt, no backoff, so a dead Redis fails a request within the timeout.
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
