"""The request path's lean Redis connection against real redis-server processes of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.pipelined import PipelinedRedis
from tests.redis_procs import redis_server

from .procs import free_port

pytestmark = pytest.mark.redis

SCRIPT = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"


async def test_evalsha_answers_as_redis_py_and_survives_script_flush(tmp_path: Path) -> None:
    with redis_server(tmp_path) as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.asyncio.Redis.from_url(url)
        script = client.register_script(SCRIPT)
        expected = await script(keys=["k"], args=["a", 41])
        lean = PipelinedRedis(url, timeout_s=1.0)
        try:
            assert await lean.evalsha(script.sha, SCRIPT, ["k"], ["a", 41]) == expected
            await client.script_flush()  # as after a Redis restart: the script cache is empty
            assert await lean.evalsha(script.sha, SCRIPT, ["k"], ["a", 41]) == [b"k", b"a", 42]
            with pytest.raises(ResponseError):
                await lean.execute("INCR")  # a wrong command is Redis's error, raised as such
        finally:
            await lean.aclose()
            await client.aclose()


async def test_concurrent_callers_get_their_own_replies(tmp_path: Path) -> None:
    with redis_server(tmp_path) as (port, _):
        lean = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=2.0)
        try:
            keys = [f"k{i % 7}" for i in range(300)]
            replies = await asyncio.gather(*(lean.execute("INCR", k) for k in keys))
            for k in set(keys):
                assert sorted(r for key, r in zip(keys, replies, strict=True) if key == k) == list(
                    range(1, keys.count(k) + 1)
                )
            many = await lean.execute_many([("SET", "a", "1"), ("INCR", "a"), ("GET", "a")])
            assert many == [b"OK", 2, b"2"]
        finally:
            await lean.aclose()


async def test_frozen_redis_fails_within_the_timeout_and_replies_stay_matched(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path) as (port, proc):
        lean = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        try:
            assert await lean.execute("SET", "n", "0") == b"OK"
            os.kill(proc.pid, signal.SIGSTOP)
            for _ in range(2):  # never two timeouts' worth: each call is bounded on its own
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    await lean.execute("INCR", "n")
                assert time.monotonic() - started < 0.5 + 0.3
            # a connection that answered nothing for a whole timeout was given up: nothing
            # waits on it and nothing more is written to it
            assert lean._conn is None or lean._conn.broken is not None
            os.kill(proc.pid, signal.SIGCONT)
            # a fresh connection: its replies are its own (a late INCR reply of the dropped
            # connection can never be handed to the next caller)
            assert await lean.execute("PING") == b"PONG"
            assert await lean.execute("INCR", "n") in {1, 2, 3}
            assert await lean.execute("PING") == b"PONG"
        finally:
            await lean.aclose()


async def test_a_killed_connection_is_replaced(tmp_path: Path) -> None:
    with redis_server(tmp_path) as (port, _):
        url = f"redis://127.0.0.1:{port}/0"
        lean = PipelinedRedis(url, timeout_s=1.0)
        admin = redis.Redis.from_url(url)
        try:
            assert await lean.execute("PING") == b"PONG"
            admin.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.1)
            assert await lean.execute("PING") == b"PONG"
        finally:
            await lean.aclose()
            admin.close()


async def test_auth_and_database_from_the_url(tmp_path: Path) -> None:
    with redis_server(tmp_path, "--requirepass", "s3cret-pw") as (port, _):
        lean = PipelinedRedis(f"redis://:s3cret-pw@127.0.0.1:{port}/3", timeout_s=1.0)
        wrong = PipelinedRedis(f"redis://:nope@127.0.0.1:{port}/0", timeout_s=1.0)
        try:
            assert await lean.execute("SET", "where", "db3") == b"OK"
            admin = redis.Redis(port=port, password="s3cret-pw", db=3)
            assert admin.get("where") == b"db3"
            admin.close()
            with pytest.raises(RedisConnectionError):
                await wrong.execute("PING")
        finally:
            await lean.aclose()
            await wrong.aclose()


async def test_tls_follows_the_url_scheme_whatever_its_case() -> None:
    plain = PipelinedRedis("redis://127.0.0.1:6379/0", timeout_s=1.0)
    upper = PipelinedRedis("REDISS://:pw@redis.example:6380/0?ssl_cert_reqs=none", timeout_s=1.0)
    assert not plain._tls and upper._tls
    context = upper._ssl_context()
    assert context.verify_mode == ssl.CERT_NONE
    verified = PipelinedRedis("rediss://redis.example:6380/0", timeout_s=1.0)._ssl_context()
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname


async def test_unreachable_redis_is_a_connection_error() -> None:
    lean = PipelinedRedis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await lean.execute("PING")
    assert time.monotonic() - started < 1.0
    await lean.aclose()
