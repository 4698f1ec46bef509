"""SIGTERM loses nothing: real ``vin-gateway serve`` processes whose search-log events are
still buffered when the signal arrives (intervals set so long that only the shutdown path can
write them), then ``vin-gateway searchlog-writer --drain`` and ``vin-gateway purge``."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from gateway.db import migrate
from tests.gateway import signing
from tests.gateway.procs import BIN, FAST_ENV, running
from tests.gateway.test_processes import workshop
from tests.searchlog.conftest import conninfo

pytestmark = pytest.mark.slow

VIN = "1HGCM82633A004352"
QUIET = {"VINGW_SEARCHLOG_PURGE_INTERVAL_S": "0", "VINGW_LIMIT_IP_BURST": "1000"}


def lookups(base: str, n: int) -> None:
    with httpx.Client(base_url=base) as client:
        w = workshop(client)
        for _ in range(n):
            token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
            r = client.post(
                "/v1/lookups", json={"vin": VIN}, headers={**w["auth"], "VIN-Attestation": token}
            )
            assert r.status_code == 200, r.text
        # and one refused query: logged too
        r = client.post("/v1/lookups", json={"vin": VIN}, headers=w["auth"])
        assert r.status_code == 403


def sqlite_count(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT count(*) FROM search_event").fetchone()[0])


def pg_count(url: str) -> int:
    with psycopg.connect(conninfo(url)) as c:
        return int(c.execute("SELECT count(*) FROM search_event").fetchone()[0])  # type: ignore[index]


def test_embedded_sigterm_writes_the_in_process_queue(tmp_path: Path) -> None:
    env = {
        **FAST_ENV,
        **QUIET,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_SEARCHLOG_FLUSH_INTERVAL_S": "3600",
    }
    with running(["serve"], env) as (base, _):
        lookups(base, 6)
        assert sqlite_count(tmp_path / "searchlog.sqlite3") == 0  # all still in the queue
    assert sqlite_count(tmp_path / "searchlog.sqlite3") == 7  # written on SIGTERM


def test_services_sigterm_ships_the_buffer_and_the_writer_drains_it(
    tmp_path: Path, redis_url: str, postgres_urls: tuple[str, str], fresh_postgres, stream_name
) -> None:
    log_url = fresh_postgres()
    migrate("searchlog", log_url)
    env = {
        **FAST_ENV,
        **QUIET,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_DATABASE_URL": postgres_urls[0],
        "VINGW_LOG_DATABASE_URL": log_url,
        "VINGW_MIGRATE_ON_START": "true",
        "VINGW_SEARCHLOG_STREAM": stream_name,
        "VINGW_SEARCHLOG_SHARDS": "1",  # one stream, named as the setting (test_shards.py: N)
        "VINGW_SEARCHLOG_CONSUMER": "false",  # a separate searchlog-writer consumes
        "VINGW_SEARCHLOG_SHIP_INTERVAL_MS": "3600000",  # ship only at shutdown
    }
    r = redis.Redis.from_url(redis_url)
    try:
        with running(["serve"], env) as (base, _):
            lookups(base, 5)
            assert r.xlen(stream_name) == 0  # still in the worker's buffer
        assert r.xlen(stream_name) == 6  # shipped on SIGTERM
        assert pg_count(log_url) == 0
        result = subprocess.run(
            [str(BIN), "searchlog-writer", "--drain"],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert pg_count(log_url) == 6
        assert r.xlen(stream_name) == 0
        assert VIN not in result.stdout + result.stderr
    finally:
        r.delete(stream_name)
        r.close()
