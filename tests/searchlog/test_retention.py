"""Retention: floor (kept at least 183 days), ceiling (gone by 183 + 30), legal holds, monthly
partitions dropped on PostgreSQL, rows deleted on SQLite, keys destroyed after retention."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.db import Database
from gateway.searchlog.repository import SearchLogRepository
from tests.gateway.procs import BIN
from tests.searchlog.conftest import Logs, event

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC).timestamp()  # floor cut 2026-05-16, ceiling 04-16


def ts(month: int, day: int) -> float:
    return datetime(2026, month, day, 10, tzinfo=UTC).timestamp()


async def partitions(url: str) -> set[str]:
    db = Database(url)
    try:
        async with db.session() as session:
            return set(await SearchLogRepository(session).partitions())
    finally:
        await db.dispose()


async def test_purge_keeps_the_floor_and_held_rows_and_destroys_old_keys(logs: Logs) -> None:
    log = logs.new(redis=False, searchlog_legal_hold="acct-court-order")
    at = {"march": ts(3, 10), "april": ts(4, 10), "may": ts(5, 5), "november": ts(11, 1)}
    for account in ("acct-plain", "acct-admin-hold", "acct-court-order"):
        for when in at.values():
            log.record(event(account), at=when)
    log.record(event("acct-april-only"), at=ts(4, 20))
    await log.flush()
    assert await logs.count() == 13
    await log.hold_account("acct-admin-hold")
    postgres = logs.url.startswith("postgresql")
    if postgres:
        assert {"search_event_p202603", "search_event_p202604"} <= await partitions(logs.url)

    report = await log.purge(now=NOW)

    def months(rows) -> list[int]:  # type: ignore[no-untyped-def]
        return sorted(datetime.fromtimestamp(r.at, UTC).month for r in rows)

    # held rows survive (admin hold and configured hold), the unheld account keeps only what
    # the floor protects (and, on PostgreSQL, May: its partition straddles the floor and is
    # younger than the ceiling)
    assert months(await log.rows_for_account("acct-admin-hold")) == [3, 4, 5, 11]
    assert months(await log.rows_for_account("acct-court-order")) == [3, 4, 5, 11]
    assert months(await log.rows_for_account("acct-plain")) == ([5, 11] if postgres else [11])
    assert await log.rows_for_account("acct-april-only") == []
    if postgres:
        # March and April hold held rows: not dropped, their other rows deleted one by one
        assert report["kept_partitions"] == ["search_event_p202603", "search_event_p202604"]
        assert report["dropped_partitions"] == []
        assert report["deleted"] == 3
    else:
        assert report["deleted"] == 4
    # every epoch with rows left keeps its keys
    assert set(report["destroyed_key_epochs"]) == set()

    # the hold is lifted: the next purge drops the partitions and destroys those keys
    await log.release_account("acct-admin-hold")
    log = logs.new(redis=False)  # and taken out of the configuration
    report = await log.purge(now=NOW)
    assert report["destroyed_key_epochs"] == ["2026-03", "2026-04"]
    assert "2026-03" not in log.keyring.epochs()
    for account in ("acct-admin-hold", "acct-court-order", "acct-plain"):
        assert months(await log.rows_for_account(account)) == ([5, 11] if postgres else [11])
    if postgres:
        assert report["dropped_partitions"] == ["search_event_p202603", "search_event_p202604"]
        left = await partitions(logs.url)
        assert not {"search_event_p202603", "search_event_p202604"} & left
        assert {"search_event_p202605", "search_event_p202611"} <= left
        # a purge ensures partitions ahead of time
        assert {"search_event_p202612", "search_event_p202701"} <= left

    # the ceiling: half a year later nothing of May may be left, whatever the partitioning
    report = await log.purge(now=datetime(2026, 12, 10, tzinfo=UTC).timestamp())
    for account in ("acct-admin-hold", "acct-court-order", "acct-plain"):
        assert months(await log.rows_for_account(account)) == [11]


async def test_destroyed_epoch_keys_make_rows_anonymous(logs: Logs) -> None:
    log = logs.new(redis=False)
    accounts = [f"acct-{i}" for i in range(5)]
    for account in accounts:
        log.record(event(account), at=ts(6, 1))
        log.record(event(account), at=ts(7, 1))
    await log.flush()
    for account in accounts:
        assert len(await log.rows_for_account(account)) == 2
    assert log.keyring.destroy("2026-06")
    assert await logs.count() == 10  # the rows are still there...
    for account in accounts:  # ... but no account's pseudonyms find them any more
        rows = await log.rows_for_account(account)
        assert [r.key_epoch for r in rows] == ["2026-07"]
    recomputed = {p for a in accounts for p in log.keyring.all_pseudonyms("account", a).values()}
    db = Database(logs.url)
    try:
        async with db.session() as session:
            june = (
                await session.execute(
                    text("SELECT account_pseudonym FROM search_event WHERE key_epoch = '2026-06'")
                )
            ).scalars()
            june_pseudonyms = set(june)
    finally:
        await db.dispose()
    assert len(june_pseudonyms) == 5
    assert not june_pseudonyms & recomputed


@pytest.mark.slow
def test_purge_command(tmp_path: Path) -> None:
    env = {"VINGW_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(BIN), "purge", "--now", str(NOW)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["deleted"] == 0
    assert report["floor_cut"] == int(NOW) - 183 * 86400
    assert report["ceiling_cut"] == int(NOW) - 213 * 86400


async def test_daily_counts_put_an_event_on_the_utc_day_it_happened(logs: Logs) -> None:
    """Floor, not round: an afternoon event used to count on the next day on PostgreSQL."""
    log = logs.new(redis=False)
    day = datetime(2026, 11, 14, tzinfo=UTC).timestamp()
    for seconds in (0, 43_199, 43_200, 43_201, 86_399):  # midnight .. one second before the next
        log.record(event("acct-days"), at=day + seconds)
    log.record(event("acct-days"), at=day + 86_400)  # the next day's midnight
    await log.flush()
    async with Database(logs.url).session() as session:
        counts = await SearchLogRepository(session).daily_counts(int(day) - 86_400, ["outcome"])
    assert [(c["day"], c["count"]) for c in counts] == [(int(day), 5), (int(day) + 86_400, 1)]
