"""The sharded queue: an account's events in one of N streams (``<stream>:{n}``), writers that
read every shard, export and erasure that drain only the caller's shard, N changed without
losing events, erasure tombstones the writer honours, and the same on a Redis Cluster."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from gateway.db import Database
from gateway.searchlog.events import shard_of
from gateway.searchlog.options import DRAIN_TIMEOUT_S
from gateway.searchlog.pseudonym import KeyRing
from gateway.searchlog.service import SearchLog, SearchLogOptions
from gateway.searchlog.stream import shard_key
from tests.searchlog.conftest import Logs, event
from tests.searchlog.helpers import eventually

pytestmark = pytest.mark.redis

SUBJECT = "acct-subject"


@pytest.fixture
async def clean_keys(logs: Logs) -> AsyncIterator[None]:
    """The shards, the shard registry and the tombstones of this test's stream go afterwards."""
    yield
    r = aioredis.Redis.from_url(logs.redis_url)  # type: ignore[arg-type]
    try:
        async for key in r.scan_iter(match=f"{logs.stream}*", count=1000):
            await r.delete(key)
    finally:
        await r.aclose()


async def _lengths(redis_url: str, stream: str, shards: int) -> list[int]:
    r = aioredis.Redis.from_url(redis_url)
    try:
        return [int(await r.xlen(shard_key(stream, n, shards))) for n in range(shards)]
    finally:
        await r.aclose()


async def test_each_account_goes_to_one_shard_and_export_drains_only_its_own(
    logs: Logs, clean_keys: None
) -> None:
    """20,000 events of other accounts queued with no writer running; the subject's export
    drains its own shard only: the other shards' backlog is still queued afterwards."""
    producer = logs.new(searchlog_consumer=False)
    others = [f"acct-other-{i}" for i in range(200)]
    for i in range(20_000):
        producer.record(event(others[i % len(others)]))
    for _ in range(7):
        producer.record(event(SUBJECT))
    await producer.start()
    await producer.stop()  # shipped: every event queued, none written
    n = producer.o.shards
    assert n == 8  # the default
    lengths = await _lengths(logs.redis_url, logs.stream, n)  # type: ignore[arg-type]
    per_shard = Counter(shard_of(a, n) for a in [*others] * 100)
    per_shard[shard_of(SUBJECT, n)] += 7
    assert lengths == [per_shard[s] for s in range(n)]  # each account's events in its shard
    assert sum(1 for x in lengths if x) == n  # 200 accounts spread over every shard
    assert await logs.count() == 0

    reader = logs.new(searchlog_consumer=False)  # a worker that does not consume
    await reader.start()
    started = time.monotonic()
    rows = await reader.rows_for_account(SUBJECT)
    assert time.monotonic() - started < DRAIN_TIMEOUT_S  # no 503: it did not time out
    assert len(rows) == 7
    own = shard_of(SUBJECT, n)
    # only the subject's shard was drained (its other accounts' events with it)
    assert await logs.count() == lengths[own]
    after = await _lengths(logs.redis_url, logs.stream, n)  # type: ignore[arg-type]
    assert after == [0 if s == own else lengths[s] for s in range(n)]

    writer = logs.new()  # a writer reads every shard
    await writer.start()
    await eventually(lambda: _eq(logs.count(), 20_007), "every shard written", timeout_s=60)


async def test_an_event_queued_before_an_erasure_never_lands_after_it(
    logs: Logs, clean_keys: None
) -> None:
    """An event still in another worker's buffer when the account is erased (its shipper
    ships it later) is dropped by the writer: the erasure's tombstone outlives the queue."""
    late = logs.new(searchlog_consumer=False, searchlog_ship_interval_ms=3_600_000)
    await late.start()
    late.record(event(SUBJECT))  # not shipped: the interval is an hour
    late.record(event("acct-bystander"))
    eraser = logs.new(searchlog_consumer=False)
    await eraser.start()
    eraser.record(event(SUBJECT))
    # its own event was queued when the erasure began: dropped from the queue, never inserted
    assert await eraser.erase_account(SUBJECT) == 0
    await late.stop()  # ... the late worker ships its buffer after the erasure
    lengths = await _lengths(logs.redis_url, logs.stream, 8)  # type: ignore[arg-type]
    assert sum(lengths) == 2  # queued: the subject's late event and the bystander's
    writer = logs.new()
    await writer.start()
    await eventually(lambda: _eq(logs.count(), 1), "the bystander's event written")
    await writer.drain()
    assert sum(await _lengths(logs.redis_url, logs.stream, 8)) == 0  # type: ignore[arg-type]
    assert await logs.count() == 1
    assert await writer.rows_for_account(SUBJECT) == []
    assert len(await writer.rows_for_account("acct-bystander")) == 1


async def test_a_batch_inserted_while_its_account_is_erased_is_deleted_again(
    logs: Logs, clean_keys: None
) -> None:
    """A writer read the subject's events before the erasure began and inserts them after the
    erasure deleted the account's rows: the writer's check after the insert deletes them."""
    producer = logs.new(searchlog_consumer=False)
    for _ in range(3):
        producer.record(event(SUBJECT))
    producer.record(event("acct-bystander"))
    await producer.start()
    await producer.stop()
    writer = logs.new(searchlog_consumer=False)
    eraser = logs.new(searchlog_consumer=False)
    await writer.start()
    await eraser.start()
    assert writer.stream is not None and writer.consumer is not None
    await writer.stream.refresh()
    batch = {}
    for key in writer.stream.keys():  # noqa: SIM118 (a method)
        if entries := await writer.stream.read(key, 100, None):
            batch[key] = entries
    assert sum(len(e) for e in batch.values()) == 4
    insert = writer.writer.insert
    erased: list[int] = []

    async def erasure_then_insert(rows: list[dict[str, object]]) -> None:
        # the erasure runs between the writer's read and its insert: it takes the entries
        # over (idle > 1 s), drops them, and deletes the rows (none yet)
        erased.append(await eraser.erase_account(SUBJECT))
        await insert(rows)

    writer.writer.insert = erasure_then_insert  # type: ignore[method-assign]
    await writer.consumer.store(batch)
    writer.writer.insert = insert  # type: ignore[method-assign]
    assert erased == [0]
    assert await writer.rows_for_account(SUBJECT) == []
    assert len(await writer.rows_for_account("acct-bystander")) == 1


async def test_changing_the_number_of_shards_loses_nothing(logs: Logs, clean_keys: None) -> None:
    """Events queued by the unsharded queue (N = 1) and under N = 8 are written by writers
    configured with N = 2, and an export under N = 2 finds the account's events queued under
    N = 8 (its shard there differs)."""
    accounts = [f"acct-{i}" for i in range(40)]
    # an account whose shard under 8 is not a shard of N = 2, nor its shard under 2
    subject = next(a for a in accounts if shard_of(a, 8) >= 2)
    old = logs.new(searchlog_consumer=False, searchlog_shards=1)  # before shards existed
    for a in accounts[:10]:
        old.record(event(a))
    eight = logs.new(searchlog_consumer=False, searchlog_shards=8)
    for a in accounts:
        eight.record(event(a))
    for p in (old, eight):
        await p.start()
        await p.stop()
    assert sum(await _lengths(logs.redis_url, logs.stream, 8)) == 40  # type: ignore[arg-type]
    assert sum(await _lengths(logs.redis_url, logs.stream, 1)) == 10  # type: ignore[arg-type]

    two = logs.new(searchlog_consumer=False, searchlog_shards=2)
    await two.start()
    expected = 2 if subject in accounts[:10] else 1
    assert len(await two.rows_for_account(subject)) == expected
    writer = logs.new(searchlog_shards=2)
    await writer.start()
    await eventually(lambda: _eq(logs.count(), 50), "every queued event written")
    await eventually(
        lambda: _eq(_total(logs.redis_url, logs.stream), 0),  # type: ignore[arg-type]
        "every shard of every N emptied",
    )


async def test_the_queue_on_a_redis_cluster(
    redis_cluster_url: str, log_url: str, tmp_path: Path, stream_name: str
) -> None:
    """On a 3-master cluster the shards live on different masters; a writer reads them all,
    an export drains its account's shard, an erasure's tombstone is honoured."""
    settings = Logs(log_url, tmp_path / "keys.json", redis_cluster_url, stream_name).settings(
        searchlog_claim_idle_s=0.5
    )
    made: list[SearchLog] = []
    dbs: list[Database] = []

    def new(**kw: object) -> SearchLog:
        options = SearchLogOptions.from_settings(settings.model_copy(update=kw))
        db = Database(log_url)
        dbs.append(db)
        log = SearchLog(
            db,
            KeyRing(tmp_path / "keys.json", settings.pseudonym_epoch),
            instance="test",
            options=options,
            redis_url=redis_cluster_url,
            redis_cluster=True,
        )
        made.append(log)
        return log

    async def count() -> int:
        logs = Logs(log_url, tmp_path / "keys.json", None, stream_name)
        return await logs.count()

    client = RedisCluster.from_url(redis_cluster_url)
    try:
        await client.initialize()
        masters = {
            client.get_node_from_key(shard_key(stream_name, n, 8)).name  # type: ignore[union-attr]
            for n in range(8)
        }
        assert len(masters) == 3  # the shards spread over every master
        producer = new(searchlog_consumer=False)
        late = new(searchlog_consumer=False, searchlog_ship_interval_ms=3_600_000)
        await late.start()
        late.record(event(SUBJECT))  # shipped only after the erasure
        for i in range(300):
            producer.record(event(f"acct-{i % 30}"))
        for _ in range(4):
            producer.record(event(SUBJECT))
        await producer.start()
        await producer.stop()
        lengths = [int(await client.xlen(shard_key(stream_name, n, 8))) for n in range(8)]
        assert sum(lengths) == 304
        reader = new(searchlog_consumer=False)
        await reader.start()
        assert len(await reader.rows_for_account(SUBJECT)) == 4
        assert await count() == lengths[shard_of(SUBJECT, 8)]  # its shard only
        assert await reader.erase_account(SUBJECT) == 4
        await late.stop()
        writer = new()
        await writer.start()
        await eventually(lambda: _eq(count(), 300), "every other event written")
        await writer.drain()
        assert await count() == 300  # the late event was dropped
        assert await writer.rows_for_account(SUBJECT) == []
    finally:
        for log in made:
            await log.stop(timeout_s=2)
        for db in dbs:
            await db.dispose()
        for key in [shard_key(stream_name, n, 8) for n in range(8)]:
            await client.delete(key)
        await client.delete(f"{stream_name}:shards")
        await client.delete(f"{stream_name}:erased")
        await client.aclose()


async def _eq(value, expected) -> bool:  # type: ignore[no-untyped-def]
    return bool(await value == expected)


async def _total(redis_url: str, stream: str) -> int:
    """Entries in the shards of N = 8 (those of N = 2 among them) and in the unsharded stream."""
    return sum(await _lengths(redis_url, stream, 8)) + sum(await _lengths(redis_url, stream, 1))
