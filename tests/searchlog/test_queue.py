"""The write path: buffer -> Redis Stream (consumer group) -> batch insert, and nothing lost:
not when a writer dies between reading and inserting, not on redelivery, not while the log
database is down, not when the in-process queue (embedded) must wait for its database."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import psycopg
import pytest
import redis.asyncio as aioredis

from gateway.db import Database, migrate
from gateway.searchlog.repository import SearchLogRepository
from tests.searchlog.conftest import ON_CLUSTER, Logs, conninfo, event
from tests.searchlog.helpers import eventually, metric

pytestmark = pytest.mark.redis

GROUP = "searchlog-writers"


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_events_go_through_the_stream_in_batches(logs: Logs) -> None:
    log = logs.new(searchlog_shards=1)  # one stream, named as the setting (test_shards.py: N)
    await log.start()
    for i in range(120):
        log.record(event(f"acct-{i % 7}"))
    # record() only buffered: the buffer is shipped by the background task, then consumed
    assert log.pending == 120
    await eventually(lambda: _eq(logs.count(), 120), "all 120 events inserted")
    r = logs.client()
    try:
        await eventually(lambda: _eq(r.xlen(logs.stream), 0), "acknowledged entries deleted")
        assert (await r.xpending(logs.stream, GROUP))["pending"] == 0
    finally:
        await r.aclose()
    assert log.pending == 0


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_a_writer_that_died_after_reading_loses_nothing(logs: Logs) -> None:
    producer = logs.new(searchlog_consumer=False, searchlog_shards=1)
    for i in range(40):
        producer.record(event(f"acct-{i}"))
    await producer.start()
    await producer.stop()  # SIGTERM of a worker without a consumer: its buffer is in the stream
    r = logs.client()
    try:
        assert await r.xlen(logs.stream) == 40
        # a writer reads every entry, then dies before inserting (nothing acknowledged)
        read = await r.xreadgroup(GROUP, "dead-writer", {logs.stream: ">"}, count=100)
        assert len(read[0][1]) == 40
        assert (await r.xpending(logs.stream, GROUP))["pending"] == 40
        assert await logs.count() == 0
        writer = logs.new(searchlog_claim_idle_s=0.2, searchlog_shards=1)
        await writer.start()
        await eventually(lambda: _eq(logs.count(), 40), "the pending entries were taken over")
        await eventually(
            lambda: _eq(_pending(r, logs.stream), 0), "the taken-over entries acknowledged"
        )
    finally:
        await r.aclose()


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_redelivered_entries_are_inserted_once(logs: Logs) -> None:
    producer = logs.new(searchlog_consumer=False, searchlog_shards=1)
    for i in range(30):
        producer.record(event(f"acct-{i}"))
    await producer.start()
    await producer.stop()
    r = logs.client()
    try:
        read = await r.xreadgroup(GROUP, "dead-writer", {logs.stream: ">"}, count=100)
        rows = [orjson.loads(fields[b"e"]) for _, fields in read[0][1]]
        # this writer inserted 20 of them, then died before XACK
        db = Database(logs.url)
        try:
            async with db.session() as session:
                await SearchLogRepository(session).insert_many(rows[:20])
        finally:
            await db.dispose()
        assert await logs.count() == 20
        writer = logs.new(searchlog_claim_idle_s=0.2, searchlog_shards=1)
        await writer.start()
        await eventually(lambda: _eq(_pending(r, logs.stream), 0), "all entries redelivered")
        assert await logs.count() == 30  # not 50: the unique event id skipped the 20
    finally:
        await r.aclose()


async def test_database_down_for_a_while_loses_nothing(
    fresh_postgres, redis_url: str, stream_name: str, tmp_path: Path, caplog
) -> None:
    url = fresh_postgres()
    migrate("searchlog", url)
    logs = Logs(url, tmp_path / "keys.json", redis_url, stream_name)
    admin = conninfo(url.rsplit("/", 1)[0] + "/postgres")
    name = url.rsplit("/", 1)[1]
    r = aioredis.Redis.from_url(redis_url)
    caplog.set_level(logging.WARNING, logger="vin_gateway.searchlog")
    failures_before = metric("vingw_searchlog_failures_total", stage="database")
    log = logs.new(searchlog_batch_size=10, searchlog_shards=1)
    try:
        await log.start()
        with psycopg.connect(admin, autocommit=True) as c:  # the log database goes away
            c.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        for i in range(55):
            log.record(event(f"acct-{i}"))
        await eventually(
            lambda: _true(
                metric("vingw_searchlog_failures_total", stage="database") > failures_before
            ),
            "inserts failed and are retried",
        )
        assert "search-log database unavailable" in caplog.text
        assert metric("vingw_searchlog_database_unavailable") == 1
        # bounded memory: the process holds at most one batch, the rest waits in Redis
        await eventually(lambda: _true(log.pending == 0), "the buffer shipped to the stream")
        assert await r.xlen(stream_name) == 55
        assert log.written == 0
        with psycopg.connect(admin, autocommit=True) as c:  # ... and comes back
            c.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await eventually(lambda: _eq(logs.count(), 55), "every event written after the outage")
        await eventually(lambda: _eq(r.xlen(stream_name), 0), "stream emptied")
        assert "search-log database available again" in caplog.text
        assert metric("vingw_searchlog_database_unavailable") == 0
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await log.stop(timeout_s=2)
        for db in logs.dbs:
            await db.dispose()
        await r.delete(stream_name)
        await r.aclose()


async def test_embedded_queue_waits_for_its_database_and_is_bounded(tmp_path: Path, caplog) -> None:
    """Embedded: the in-process queue keeps events while the SQLite file cannot be opened,
    bounded by max_buffer (overflow is counted, logged and in a metric), then writes them."""
    url = f"sqlite:///{tmp_path / 'not-yet' / 'searchlog.sqlite3'}"
    logs = Logs(url, tmp_path / "keys.json", None, "unused")
    caplog.set_level(logging.WARNING, logger="vin_gateway.searchlog")
    dropped_before = metric("vingw_searchlog_events_total", stage="dropped")
    log = logs.new(
        redis=False,
        searchlog_max_buffer=50,
        searchlog_batch_size=10,
        searchlog_flush_interval_s=0.05,
    )
    try:
        await log.start()
        for i in range(53):
            log.record(event(f"acct-{i}"))
        assert log.dropped == 3
        assert metric("vingw_searchlog_events_total", stage="dropped") == dropped_before + 3
        assert "search-log buffer full" in caplog.text
        await eventually(lambda: _true(log.write_failures > 0), "writes failed")
        assert "search-log database unavailable" in caplog.text
        assert log.pending == 50
        migrate("searchlog", url)  # the database appears
        await eventually(lambda: _eq(logs.count(), 50), "the buffered events written")
        assert log.pending == 0
    finally:
        await log.stop(timeout_s=2)
        for db in logs.dbs:
            await db.dispose()


async def _eq(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def _pending(r, stream: str) -> int:  # type: ignore[no-untyped-def]
    return int((await r.xpending(stream, GROUP))["pending"])


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_export_drains_a_busy_stream_without_waiting_for_it_to_go_quiet(
    logs: Logs,
) -> None:
    """A drain writes what the stream held when it started; steady traffic meanwhile (here
    another worker adding events the whole time) cannot keep it waiting."""
    import asyncio

    log = logs.new()
    busy = logs.new(searchlog_consumer=False)
    await log.start()
    await busy.start()
    for _ in range(25):
        log.record(event("acct-subject"))
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for i in range(20):
                busy.record(event(f"acct-other-{i}"))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.2)  # the stream is busy from now on
        rows = await asyncio.wait_for(log.rows_for_account("acct-subject"), timeout=30)
        assert len(rows) == 25
    finally:
        stop.set()
        await task
        await busy.stop()
        await log.stop()
