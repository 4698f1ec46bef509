"""What export and erasure wait for: this worker's outbox shipped (signalled by its shipper),
one ship interval for the other workers' outboxes, then the stream drained up to its end.
And the tasks the search log starts end with ``stop()``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.exceptions import ServiceUnavailable
from tests.searchlog.conftest import ON_CLUSTER, Logs, event

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_flush_waits_for_the_running_shipper_not_its_interval(logs: Logs) -> None:
    log = logs.new(searchlog_ship_interval_ms=3_600_000, searchlog_consumer=False)
    await log.start()
    for _ in range(7):
        log.record(event("acct-subject"))
    started = time.monotonic()
    rows = await log.rows_for_account("acct-subject")
    assert len(rows) == 7
    assert log.pending == 0
    # asked to ship at once: not an hour, and not more than the capped wait for other workers
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_events_another_worker_recorded_just_before_are_included(logs: Logs) -> None:
    """Another worker's shipper holds events for one ship interval: flush waits that once."""
    log = logs.new(searchlog_ship_interval_ms=300)
    other = logs.new(searchlog_ship_interval_ms=300, searchlog_consumer=False)
    await log.start()
    await other.start()
    for _ in range(5):
        other.record(event("acct-peer"))
    assert other.pending == 5  # still in the other worker's outbox
    assert len(await log.rows_for_account("acct-peer")) == 5


async def test_flush_answers_503_when_the_shipper_fails(tmp_path: Path) -> None:
    """The shipper signals a failed attempt: no waiting out the deadline."""
    url = f"sqlite:///{tmp_path / 'not-yet' / 'searchlog.sqlite3'}"
    logs = Logs(url, tmp_path / "keys.json", None, "unused")
    log = logs.new(redis=False, searchlog_flush_interval_s=3600)
    try:
        await log.start()
        log.record(event("acct-1"))
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await log.flush(timeout_s=30)
        assert time.monotonic() - started < 5
    finally:
        await log.stop(timeout_s=0.5)
        for db in logs.dbs:
            await db.dispose()


@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)
async def test_stop_ends_every_task_it_started(logs: Logs) -> None:
    log = logs.new(searchlog_purge_interval_s=3600)
    await log.start()
    names = {"searchlog-shipper", "searchlog-consumer", "searchlog-purge"}
    assert names <= {t.get_name() for t in asyncio.all_tasks()}
    log.record(event("acct-1"))
    await log.stop(timeout_s=5)
    assert not names & {t.get_name() for t in asyncio.all_tasks() if not t.done()}
    assert log.pending == 0
    assert await logs.count() == 1  # shipped, then drained by this consumer on the way out
