"""A search log that stays fast as it grows: statistics from daily rollups kept by the writer,
export / erasure / purge probes bounded to one key epoch's time range (one partition each on
PostgreSQL, through the ``(account_pseudonym, at)`` index), checked with EXPLAIN."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from gateway.config import sync_database_url
from gateway.db import Database, migrate
from gateway.searchlog.events import pseudonymize
from gateway.searchlog.models import SearchEvent
from gateway.searchlog.pseudonym import KeyRing, epoch_bounds, month_start, next_month
from gateway.searchlog.repository import ROLLUP_DIMENSIONS, SearchLogRepository, partition_name
from tests.searchlog.conftest import Logs, event, fresh_databases

DAY = 86_400
BASE = int(datetime(2026, 9, 14, tzinfo=UTC).timestamp())


def rows_of(keyring: KeyRing, n: int, start: int = BASE) -> list[dict[str, Any]]:
    """``n`` pseudonymized rows over three days, with None values and a non-ASCII make."""
    rows = []
    for i in range(n):
        kw: dict[str, Any] = {}
        if i % 5 == 0:
            kw = {"outcome": "refused", "code": "attestation_invalid"}
        e = event(f"acct-{i % 4}", **kw)
        e.make = ("Honda", "Škoda", None)[i % 3]
        e.model_year = (2003, None, 1999, 2024)[i % 4]
        rows.append(pseudonymize(e, start + (i * 7919) % (3 * DAY), keyring, "test"))
    return rows


def expected(rows: list[dict[str, Any]], since: int = 0) -> Counter[tuple[str, int, Any]]:
    counts: Counter[tuple[str, int, Any]] = Counter()
    for r in rows:
        if r["at"] // DAY * DAY >= since:
            for d in ROLLUP_DIMENSIONS:
                counts[(d, r["at"] // DAY * DAY, r[d])] += 1
    return counts


async def stats(url: str, since: int = 0) -> Counter[tuple[str, int, Any]]:
    db = Database(url)
    try:
        async with db.session() as session:
            counts = await SearchLogRepository(session).daily_counts(since, ROLLUP_DIMENSIONS)
    finally:
        await db.dispose()
    out: Counter[tuple[str, int, Any]] = Counter()
    for c in counts:
        key = (c["dimension"], c["day"], c["value"])
        assert key not in out, f"one value counted on two rows: {key}"
        out[key] = c["count"]
    return out


async def test_rollups_count_only_the_rows_inserted(log_url: str, tmp_path: Path) -> None:
    """A redelivered batch (events already stored) adds nothing to the statistics."""
    rows = rows_of(KeyRing(tmp_path / "keys.json", "month"), 60)
    db = Database(log_url)
    try:
        async with db.session() as session:
            assert await SearchLogRepository(session).insert_many(rows[:25]) == 25
        async with db.session() as session:
            # redelivered: the first 25 again, with the 35 never written
            assert await SearchLogRepository(session).insert_many(rows) == 35
        async with db.session() as session:
            assert await SearchLogRepository(session).insert_many(rows[10:40]) == 0
        async with db.session() as session:
            assert await SearchLogRepository(session).count() == 60
    finally:
        await db.dispose()
    assert await stats(log_url) == expected(rows)
    # whole days from ``since`` on
    assert await stats(log_url, BASE + DAY) == expected(rows, BASE + DAY)


async def test_statistics_of_erased_and_purged_rows_stay_true(logs: Logs) -> None:
    """Rollups hold no pseudonym: erasure and retention delete rows, not the past's counts."""
    log = logs.new(redis=False)
    for i in range(12):
        log.record(event(f"acct-{i % 3}"), at=BASE + i * 3600)
    await log.flush()
    before = await stats(logs.url)
    assert sum(n for (d, _, _), n in before.items() if d == "outcome") == 12
    assert await log.erase_account("acct-0") == 4
    assert await log.rows_for_account("acct-0") == []
    assert await logs.count() == 8
    await log.purge(now=BASE + 400 * DAY)  # everything is past the ceiling
    assert await logs.count() == 0
    assert await stats(logs.url) == before


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'searchlog.sqlite3'}"
    url: str = request.getfixturevalue("fresh_postgres")()
    return url


async def test_migration_backfills_the_rollups(empty_url: str, tmp_path: Path) -> None:
    """Rows stored before migration 0004 are counted, with the values the writer would write
    (a later insert of the same value adds to the same rollup row)."""
    migrate("searchlog", empty_url, "0003")
    keyring = KeyRing(tmp_path / "keys.json", "month")
    start = month_start(datetime.now(UTC).timestamp())  # 0002 made this month's partition
    # rows as a 0003 writer stored them (grant_pseudonym came with 0005)
    old = rows_of(keyring, 40, start)
    old = [{k: v for k, v in r.items() if k != "grant_pseudonym"} for r in old]
    engine = create_engine(sync_database_url(empty_url))
    try:
        with engine.begin() as conn:
            conn.execute(SearchEvent.__table__.insert(), old)  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    migrate("searchlog", empty_url)
    assert await stats(empty_url) == expected(old)
    new = rows_of(keyring, 9, start)
    db = Database(empty_url)
    try:
        async with db.session() as session:
            assert await SearchLogRepository(session).insert_many(new) == 9
    finally:
        await db.dispose()
    assert await stats(empty_url) == expected(old + new)


# --- query plans on PostgreSQL ------------------------------------------------------------

MONTHS = 6
ROWS_PER_MONTH = 30_000
FIRST = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


def epochs() -> list[str]:
    out, start = [], FIRST
    for _ in range(MONTHS):
        out.append(datetime.fromtimestamp(start, UTC).strftime("%Y-%m"))
        start = next_month(start)
    return out


@pytest.fixture(scope="module")
def big_log(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL log with ``MONTHS`` monthly partitions of ``ROWS_PER_MONTH`` rows
    (3,000 accounts, about 10 rows each per month), two empty partitions ahead, analyzed."""
    make: Callable[[], str] = request.getfixturevalue("fresh_postgres_module")
    url = make()
    migrate("searchlog", url)
    engine = create_engine(sync_database_url(url))
    try:
        with engine.begin() as conn:
            start = FIRST
            for epoch in [*epochs(), "ahead-1", "ahead-2"]:
                conn.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(start)} PARTITION OF "
                        f"search_event FOR VALUES FROM ({start}) TO ({next_month(start)})"
                    )
                )
                if not epoch.startswith("ahead"):
                    span = next_month(start) - start
                    conn.execute(
                        text(
                            "INSERT INTO search_event (event_id, at, key_epoch, "
                            "account_pseudonym, make, model_year, country_code, endpoint, "
                            "outcome, instance) "
                            "SELECT md5(:e || i), :start + (i * 7919) % :span, :e, "
                            "substr(md5(:e || (i % 3000)), 1, 32), 'Honda', 2003, 'US', "
                            "'lookup', 'ok', 'test' FROM generate_series(1, :n) AS i"
                        ),
                        {"e": epoch, "start": start, "span": span, "n": ROWS_PER_MONTH},
                    )
                start = next_month(start)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE search_event"))
    finally:
        engine.dispose()
    yield url


@pytest.fixture(scope="module")
def fresh_postgres_module(postgres_urls: tuple[str, str]) -> Iterator[Callable[[], str]]:
    """``fresh_postgres`` for a module (the loaded rows are shared by its EXPLAIN tests)."""
    with fresh_databases(postgres_urls) as make:
        yield make


def plan(url: str, statement: Any) -> dict[str, Any]:
    sql = str(
        statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )
    engine = create_engine(sync_database_url(url))
    try:
        with engine.connect() as conn:
            (doc,) = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).one()
    finally:
        engine.dispose()
    doc = json.loads(doc) if isinstance(doc, str) else doc
    top: dict[str, Any] = doc[0]["Plan"]
    return top


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def scans(top: dict[str, Any]) -> list[str]:
    """The relations the plan reads (one entry per scan node), after checking it has no Seq
    Scan and reads them through the subject or ``at`` index."""
    found = list(nodes(top))
    assert not [n for n in found if n["Node Type"] == "Seq Scan"], json.dumps(top, indent=1)
    indexes = {n["Index Name"] for n in found if "Index Name" in n}
    assert indexes and all(i.endswith(("account_pseudonym_at_idx", "_at_idx")) for i in indexes), (
        indexes
    )
    # (a DELETE's ModifyTable names the partitioned table it deletes from: not a scan)
    return [n["Relation Name"] for n in found if "Relation Name" in n and "Scan" in n["Node Type"]]


def partition_of(epoch: str) -> str:
    return partition_name(epoch_bounds(epoch)[0])


def subject() -> dict[str, str]:
    """An account with rows in every month: its pseudonym under each month's key."""
    import hashlib

    return {e: hashlib.md5(f"{e}17".encode()).hexdigest()[:32] for e in epochs()}  # noqa: S324


def test_export_reads_one_partition_per_epoch_key(big_log: str) -> None:
    pseudonyms = subject()
    relations = scans(plan(big_log, SearchLogRepository.export_query(pseudonyms)))
    assert sorted(relations) == sorted(partition_of(e) for e in pseudonyms)


def test_erasure_deletes_from_one_partition_per_epoch_key(big_log: str) -> None:
    pseudonyms = subject()
    held = next(iter(pseudonyms.items()))
    statements = SearchLogRepository.erase_statements(pseudonyms, keep=[held])
    assert len(statements) == MONTHS - 1  # the held (epoch, pseudonym) is left out whole
    for statement in statements:
        relations = scans(plan(big_log, statement))
        assert len(relations) == 1 and relations[0] in {partition_of(e) for e in pseudonyms}
        assert relations[0] != partition_of(held[0])


def test_purge_probes_each_ended_epoch_in_its_own_partition(big_log: str) -> None:
    for epoch in epochs()[:3]:
        assert scans(plan(big_log, SearchLogRepository.epoch_probe(epoch))) == [partition_of(epoch)]


async def test_export_and_probe_find_the_rows_of_their_epoch(big_log: str) -> None:
    """The bounded queries lose nothing: the subject's ~10 rows a month, and every epoch."""
    db = Database(big_log)
    try:
        async with db.session() as session:
            repo = SearchLogRepository(session)
            rows = await repo.rows_for(subject())
            assert await repo.epochs_with_rows([*epochs(), "2026-12", "2026-W40"]) == set(epochs())
    finally:
        await db.dispose()
    by_epoch = Counter(r.key_epoch for r in rows)
    assert set(by_epoch) == set(epochs()) and all(n == 10 for n in by_epoch.values())
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    for r in rows:
        start, end = epoch_bounds(r.key_epoch)
        assert start <= r.at < end and r.account_pseudonym == subject()[r.key_epoch]
