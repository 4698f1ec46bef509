"""Owner grants in the search log: each use stored under a grant pseudonym (domain ``grant``,
keyed per epoch), read back across epochs by ``grant_uses`` (queued events first), unlinked by
``forget_grants`` (queued and in-flight events too), unreadable once retention destroyed an
epoch's keys; the clear grant id never stored. On SQLite and PostgreSQL, on Redis, on the
Redis Cluster and embedded."""

from __future__ import annotations

import base64
import json
import multiprocessing
import secrets
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import bindparam, create_engine, text

from gateway.config import sync_database_url
from gateway.db import Database, alembic_config, migrate
from gateway.searchlog.events import pseudonymize
from gateway.searchlog.models import SearchEvent
from gateway.searchlog.pseudonym import DOMAINS, KeyRing, epoch_of
from gateway.searchlog.repository import SearchLogRepository, partition_name
from gateway.searchlog.service import SearchLog
from tests.searchlog.conftest import ON_CLUSTER, Logs, event
from tests.searchlog.helpers import eventually, grant_pseudonyms_in_a_process
from tests.searchlog.test_privacy_sweep import dump_database, dump_redis

pytestmark = pytest.mark.redis

DAY = 86_400
TODAY = int(time.time()) // DAY * DAY
D1 = TODAY - 2 * DAY + 3600  # two days ago, 01:00 UTC: one day epoch
D2 = TODAY - DAY + 3600  # yesterday, 01:00 UTC: the next one
SINCE = D1 - 600  # the grant's creation
GRANTEE = "acct-grantee"


def grant() -> str:
    return "grt_" + secrets.token_hex(10)


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(int(at), UTC)


def uses(found: Sequence[Any]) -> list[tuple[datetime, str, str | None, str, str | None]]:
    return [(u.at, u.endpoint, u.purpose, u.outcome, u.code) for u in found]


async def sql(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    db = Database(url)
    query = text(statement).bindparams(
        *(bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list))
    )
    try:
        async with db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(query, params)).all()]
    finally:
        await db.dispose()


def holding(logs: Logs, **overrides: Any) -> SearchLog:
    """A worker with day epochs whose events stay queued until something flushes them."""
    return logs.new(
        pseudonym_epoch="day",
        searchlog_consumer=False,
        searchlog_ship_interval_ms=3_600_000,
        searchlog_purge_interval_s=0,
        **overrides,
    )


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_grant_uses_read_every_epoch_newest_first_queued_ones_included(logs: Logs) -> None:
    log = holding(logs)
    await log.start()
    mine, other = grant(), grant()
    log.record(event(GRANTEE, grant_id=mine, purpose="maintenance"), at=D1)
    log.record(event(GRANTEE, grant_id=mine, outcome="refused", code="rate_limited"), at=D2)
    log.record(
        event(GRANTEE, grant_id=mine, endpoint="decode", purpose="parts_inquiry"), at=D2 + 60
    )
    log.record(event(GRANTEE, grant_id=other), at=D2)
    log.record(event(GRANTEE), at=D2)  # not under a grant
    log.record(event("acct-someone-else"), at=D1)
    assert log.pending == 6 and await logs.count() == 0  # all still queued

    found = await log.grant_uses(mine, since=SINCE, grantee=GRANTEE)
    assert uses(found) == [
        (utc(D2 + 60), "decode", "parts_inquiry", "ok", None),
        (utc(D2), "lookup", None, "refused", "rate_limited"),
        (utc(D1), "lookup", "maintenance", "ok", None),
    ]
    assert all(u.at.tzinfo is UTC for u in found)
    # stored under two day epochs, a different pseudonym in each
    stored = await sql(
        logs.url,
        "SELECT key_epoch, grant_pseudonym FROM search_event WHERE grant_pseudonym IS NOT NULL",
    )
    epochs = {e for e, _ in stored}
    assert epochs == {epoch_of(D1, "day"), epoch_of(D2, "day")}
    of_mine = {log.keyring.pseudonym("grant", mine, e) for e in epochs}
    assert len(of_mine) == 2 and of_mine <= {p for _, p in stored}

    # another worker, no grantee given (every shard drained); ``since`` bounds the epochs read
    reader = holding(logs)
    await reader.start()
    assert uses(await reader.grant_uses(other, since=SINCE)) == [
        (utc(D2), "lookup", None, "ok", None)
    ]
    assert [u.at for u in await reader.grant_uses(mine, since=D2 - 600)] == [utc(D2 + 60), utc(D2)]
    assert await reader.grant_uses(grant(), since=SINCE) == []


async def test_the_newest_thousand_uses_are_returned(logs: Logs) -> None:
    log = logs.new(redis=False, pseudonym_epoch="day")
    mine = grant()
    for i in range(1005):
        log.record(event(GRANTEE, grant_id=mine), at=D1 + i * 60)  # over two day epochs
    found = await log.grant_uses(mine, since=SINCE)
    assert len(found) == 1000
    assert found[0].at == utc(D1 + 1004 * 60) and found[-1].at == utc(D1 + 5 * 60)


async def test_grant_pseudonyms_are_per_epoch_and_domain_and_the_id_is_stored_nowhere(
    logs: Logs,
) -> None:
    log = holding(logs)
    await log.start()
    same = grant()  # one string as account id, VIN, owner reference and grant id
    for at in (D1, D2):
        log.record(event(same, vin=same, owner_ref=same, grant_id=same), at=at)
    await log.stop()  # shipped: in the stream, not yet written
    assert await logs.count() == 0
    redis = logs.client()
    try:
        queued = await dump_redis(redis)
    finally:
        await redis.aclose()
    assert logs.stream in queued and "grant_pseudonym" in queued
    assert same not in queued

    log = holding(logs)
    assert len(await log.grant_uses(same, since=SINCE)) == 2
    rows = await sql(
        logs.url,
        "SELECT key_epoch, grant_pseudonym, account_pseudonym, vin_pseudonym, "
        "owner_ref_pseudonym FROM search_event ORDER BY at",
    )
    assert len(rows) == 2
    (e1, g1, *others1), (e2, g2, *others2) = rows
    assert e1 != e2 and g1 != g2  # a new key each epoch
    for g in (g1, g2):  # not the account, VIN or owner reference pseudonym of the string
        assert len(g) == 32 and g not in [*others1, *others2]  # a key of its own domain
    assert g1 == log.keyring.pseudonym("grant", same, e1)
    _, everything = await dump_database(log.db)
    assert same not in everything


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_forget_grants_unlinks_stored_queued_and_late_uses_of_those_grants_only(
    logs: Logs,
) -> None:
    late = holding(logs)  # another worker: its event is still in its buffer when forgotten
    await late.start()
    forgotten, kept = grant(), grant()
    late.record(event(GRANTEE, grant_id=forgotten))  # today
    owner = holding(logs)
    await owner.start()
    owner.record(event(GRANTEE, grant_id=forgotten), at=D1)
    owner.record(event(GRANTEE, grant_id=forgotten), at=D2)
    owner.record(event(GRANTEE, grant_id=kept), at=D2)
    owner.record(event(GRANTEE), at=D2)
    assert len(await owner.grant_uses(forgotten, since=SINCE)) == 2
    owner.record(event(GRANTEE, grant_id=forgotten), at=D2 + 60)  # queued here

    # the two stored rows are unlinked; the queued one is written unlinked (not counted)
    assert await owner.forget_grants([(forgotten, SINCE)], grantees=[GRANTEE]) == 2
    assert await owner.grant_uses(forgotten, since=SINCE) == []
    assert len(await owner.grant_uses(kept, since=SINCE)) == 1

    await late.stop()  # ships its buffered use of the forgotten grant after the forgetting
    writer = logs.new(pseudonym_epoch="day")
    await writer.start()
    await writer.drain()
    assert await logs.count() == 6  # every row stays: they are the grantee's queries
    assert await writer.grant_uses(forgotten, since=SINCE) == []
    pseudonyms = list(writer.keyring.all_pseudonyms("grant", forgotten).values())
    assert len(pseudonyms) == 3  # D1, D2 and today
    gone = "SELECT count(*) FROM search_event WHERE grant_pseudonym IN :p"
    assert await sql(logs.url, gone, p=pseudonyms) == [(0,)]

    # the grantee's own export: whether a row was a grant use, never the pseudonym
    rows = await writer.rows_for_account(GRANTEE)
    assert sorted(r.granted for r in rows) == [False] * 5 + [True]
    assert all("grant_pseudonym" not in r.model_dump() for r in rows)


async def test_a_batch_inserted_while_its_grant_is_forgotten_is_unlinked_again(
    logs: Logs,
) -> None:
    """A writer read the uses before the grant was forgotten and inserts them after the
    forgetting unlinked the stored rows: its check after the insert unlinks them."""
    producer = holding(logs)
    forgotten, kept = grant(), grant()
    for _ in range(3):
        producer.record(event(GRANTEE, grant_id=forgotten), at=D2)
    producer.record(event("acct-bystander", grant_id=kept), at=D2)
    await producer.start()
    await producer.stop()
    writer = holding(logs)
    owner = holding(logs)
    await writer.start()
    await owner.start()
    assert writer.stream is not None and writer.consumer is not None
    await writer.stream.refresh()
    batch = {}
    for key in writer.stream.keys():  # noqa: SIM118 (a method)
        if entries := await writer.stream.read(key, 100, None):
            batch[key] = entries
    assert sum(len(e) for e in batch.values()) == 4
    insert = writer.writer.insert
    unlinked: list[int] = []

    async def forgetting_then_insert(rows: list[dict[str, object]]) -> None:
        # forgotten between the writer's read and its insert: nothing stored to unlink yet
        # (no shard drained: no grantee of these grants is known)
        unlinked.append(await owner.forget_grants([(forgotten, SINCE)], grantees=[]))
        await insert(rows)

    writer.writer.insert = forgetting_then_insert  # type: ignore[method-assign]
    await writer.consumer.store(batch)
    writer.writer.insert = insert  # type: ignore[method-assign]
    assert unlinked == [0]
    assert await logs.count() == 4
    assert await writer.grant_uses(forgotten, since=SINCE) == []
    assert len(await writer.grant_uses(kept, since=SINCE)) == 1


async def test_a_redelivered_batch_inserted_before_its_grant_was_forgotten_is_unlinked(
    logs: Logs,
) -> None:
    """A writer inserted the uses after the grant's rows were unlinked and died before its
    check after the insert: the writer that takes the entries over unlinks them."""
    producer = holding(logs, searchlog_shards=1)
    forgotten = grant()
    for _ in range(3):
        producer.record(event(GRANTEE, grant_id=forgotten), at=D2)
    await producer.start()
    await producer.stop()
    redis = logs.client()
    try:
        read = await redis.xreadgroup(
            "searchlog-writers", "dead-writer", {logs.stream: ">"}, count=100
        )
    finally:
        await redis.aclose()
    rows = [json.loads(fields[b"e"]) for _, fields in read[0][1]]
    assert len(rows) == 3
    owner = holding(logs, searchlog_shards=1)
    assert await owner.forget_grants([(forgotten, SINCE)], grantees=[]) == 0  # none stored yet
    db = Database(logs.url)
    try:
        async with db.session() as session:  # the dead writer's late insert
            await SearchLogRepository(session).insert_many(rows)
    finally:
        await db.dispose()
    linked = "SELECT count(*) FROM search_event WHERE grant_pseudonym IS NOT NULL"
    assert await sql(logs.url, linked) == [(3,)]
    writer = logs.new(pseudonym_epoch="day", searchlog_claim_idle_s=0.2, searchlog_shards=1)
    await writer.start()  # takes the entries over: the insert is skipped, the rows unlinked
    await eventually(lambda: _eq(sql(logs.url, linked), [(0,)]), "the redelivery unlinked")
    assert await logs.count() == 3
    assert await writer.grant_uses(forgotten, since=SINCE) == []


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_embedded_forgotten_grants_stay_forgotten_in_this_worker(logs: Logs) -> None:
    log = logs.new(redis=False, pseudonym_epoch="day", searchlog_flush_interval_s=3600)
    await log.start()
    forgotten, kept = grant(), grant()
    log.record(event(GRANTEE, grant_id=forgotten), at=D1)
    log.record(event(GRANTEE, grant_id=kept), at=D1)
    assert log.pending == 2
    assert await log.forget_grants([(forgotten, SINCE), (grant(), SINCE)]) == 1
    log.record(event(GRANTEE, grant_id=forgotten))  # a request in flight when it went
    assert await log.grant_uses(forgotten, since=SINCE) == []
    assert len(await log.grant_uses(kept, since=SINCE)) == 1
    assert await logs.count() == 3
    assert await log.forget_grants([]) == 0


async def test_destroyed_epoch_keys_make_old_uses_unreadable(logs: Logs) -> None:
    log = logs.new(redis=False, pseudonym_epoch="day")
    mine = grant()
    log.record(event(GRANTEE, grant_id=mine), at=D1)
    log.record(event(GRANTEE, grant_id=mine), at=D2)
    assert len(await log.grant_uses(mine, since=SINCE)) == 2
    other = logs.new(redis=False)  # another worker: its key ring holds D1's keys
    assert log.keyring.destroy(epoch_of(D1, "day"))  # retention's key destruction
    assert [u.at for u in await log.grant_uses(mine, since=SINCE)] == [utc(D2)]
    assert [u.at for u in await other.grant_uses(mine, since=SINCE)] == [utc(D2)]
    stored = "SELECT count(*) FROM search_event WHERE grant_pseudonym IS NOT NULL"
    assert await sql(logs.url, stored) == [(2,)]  # the row is there, nobody can find it


# --- the key file ------------------------------------------------------------------------


def old_key_file(path: Path, epochs: list[str]) -> dict[str, dict[str, str]]:
    """A key file as releases before the ``grant`` domain wrote it."""
    raw = {
        e: {d: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() for d in DOMAINS[:4]}
        for e in epochs
    }
    path.write_text(json.dumps(raw))
    return raw


def test_an_old_key_file_gets_grant_keys_without_losing_any(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    epochs = [f"2026-11-{d:02d}" for d in range(1, 21)]
    before = old_key_file(path, epochs)
    stale = KeyRing(path, "day")
    assert stale.all_pseudonyms("grant", "grt_x") == {}  # no key yet: no rows to find
    account = stale.all_pseudonyms("account", "acct-1")

    # four workers add the missing key to the same epochs at once, in different orders
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        orders = [epochs, epochs[::-1], epochs[5:] + epochs[:5], epochs[10:] + epochs[:10]]
        results = pool.starmap(
            grant_pseudonyms_in_a_process, [(str(path), o, "grt_x") for o in orders]
        )
    assert all(r == results[0] for r in results)  # one key per epoch, whoever added it
    after = json.loads(path.read_text())
    assert set(after) == set(epochs)
    for e in epochs:
        assert set(after[e]) == set(DOMAINS)
        assert {d: after[e][d] for d in DOMAINS[:4]} == before[e]  # the old keys unchanged
    # a key ring loaded before the keys were added finds them (under the lock) and agrees
    assert stale.pseudonym("grant", "grt_x", epochs[0]) == results[0][epochs[0]]
    stale.reload()
    assert stale.all_pseudonyms("grant", "grt_x") == results[0]
    assert stale.all_pseudonyms("account", "acct-1") == account

    # an epoch destroyed meanwhile: a stale ring that reloads has no key of it any more
    other = KeyRing(path, "day")
    assert other.destroy(epochs[0])
    stale.reload()
    assert epochs[0] not in stale.all_pseudonyms("grant", "grt_x")
    with pytest.raises(ValueError, match="unknown pseudonym domain"):
        stale.pseudonym("grants", "grt_x", epochs[1])


# --- migration 0005 ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'searchlog.sqlite3'}"
    url: str = request.getfixturevalue("fresh_postgres")()
    return url


async def test_migration_0005_adds_the_column_and_a_partial_index(
    empty_url: str, tmp_path: Path
) -> None:
    migrate("searchlog", empty_url, "0004")
    row = pseudonymize(event(GRANTEE), time.time(), KeyRing(tmp_path / "k.json", "day"), "t")
    del row["grant_pseudonym"]  # as a 0004 writer stored it
    engine = create_engine(sync_database_url(empty_url))
    try:
        with engine.begin() as conn:
            conn.execute(SearchEvent.__table__.insert(), [row])  # type: ignore[attr-defined]
        migrate("searchlog", empty_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT grant_pseudonym FROM search_event")).all() == [(None,)]
        # a use months ahead: on PostgreSQL in a partition the writer creates after 0005
        ring = KeyRing(tmp_path / "k.json", "day")
        ahead = pseudonymize(event(GRANTEE, grant_id=grant()), time.time() + 200 * DAY, ring, "t")
        db = Database(empty_url)
        try:
            async with db.session() as session:
                assert await SearchLogRepository(session).insert_many([ahead]) == 1
        finally:
            await db.dispose()
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                defs = conn.execute(
                    text("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE :p"),
                    {"p": "%grant_pseudonym%"},
                ).all()
                partitions = conn.execute(
                    text(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                        "ON c.oid = i.inhrelid WHERE i.inhparent = 'search_event'::regclass"
                    )
                ).scalars()
                # the partitioned table's index, on every partition, the new one included
                assert {t for t, _ in defs} == {"search_event", *partitions}
                assert partition_name(int(ahead["at"])) in {t for t, _ in defs}
            else:
                defs = conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE sql LIKE :p AND type='index'"),
                    {"p": "%grant_pseudonym%"},
                ).all()
            assert defs and all("grant_pseudonym IS NOT NULL" in d for _, d in defs)
        command.downgrade(alembic_config("searchlog", empty_url), "0004")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM search_event")).one() == (2,)
        migrate("searchlog", empty_url)
    finally:
        engine.dispose()
