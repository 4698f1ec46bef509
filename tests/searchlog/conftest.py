"""Search-log fixtures: a fresh log database per test (SQLite file, or a PostgreSQL database of
its own so row counts are exact), a Redis stream of its own, and SearchLog factories.

``logs`` runs on one Redis; ``@pytest.mark.parametrize("logs", ON_CLUSTER, indirect=True)``
runs a test on the 3-master Redis Cluster of the test session as well (``Logs.client()`` is
then a ``RedisCluster``, each key routed to its slot's master)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from gateway.config import Settings
from gateway.db import Database, migrate
from gateway.kv import make_client
from gateway.searchlog.pseudonym import KeyRing
from gateway.searchlog.repository import SearchLogRepository
from gateway.searchlog.service import QueryEvent, SearchLog, SearchLogOptions


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_databases(postgres_urls: tuple[str, str]) -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL databases on the test server; all dropped on the way out."""
    admin = make_url(postgres_urls[1]).set(database="postgres")
    made: list[str] = []

    def make() -> str:
        name = f"vingw_sl_{secrets.token_hex(4)}"
        with psycopg.connect(conninfo(str(admin.render_as_string(False))), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return admin.set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with psycopg.connect(conninfo(admin.render_as_string(False)), autocommit=True) as c:
            for name in made:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_postgres(postgres_urls: tuple[str, str]) -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL databases for one test (dropped afterwards)."""
    with fresh_databases(postgres_urls) as make:
        yield make


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty search-log database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'searchlog.sqlite3'}"
    else:
        url = request.getfixturevalue("fresh_postgres")()
    migrate("searchlog", url)
    return url


@pytest.fixture
def stream_name() -> str:
    return f"vingw:test:searchlog:{secrets.token_hex(4)}"


#: ``logs`` on one Redis and on the Redis Cluster (``parametrize("logs", ..., indirect=True)``)
ON_CLUSTER = ["redis", "cluster"]


@dataclass
class Logs:
    """Builds SearchLogs that share one database, key file and stream; stops them at the end."""

    url: str
    keys: Path
    redis_url: str | None
    stream: str
    cluster: bool = False  # redis_url names a node of a Redis Cluster
    made: list[SearchLog] = field(default_factory=list)
    dbs: list[Database] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        """Settings (their defaults, plus ``overrides``) for this test's stream and keys."""
        return Settings(
            _env_file=None,
            data_dir=self.keys.parent,
            instance="test",
            searchlog_stream=self.stream,
            **overrides,
        )

    def new(self, *, redis: bool = True, url: str | None = None, **overrides: Any) -> SearchLog:
        """A SearchLog with options from ``Settings(**overrides)`` (``searchlog_*`` names)."""
        settings = self.settings(**overrides)
        db = Database(url or self.url)
        self.dbs.append(db)
        log = SearchLog(
            db,
            KeyRing(self.keys, settings.pseudonym_epoch),
            instance=settings.instance,
            redis_url=self.redis_url if redis else None,
            redis_cluster=self.cluster,
            options=SearchLogOptions.from_settings(settings),
        )
        self.made.append(log)
        return log

    def client(self) -> Any:  # a Kv (its two kinds' stubs type stream replies apart)
        """A client of this test's Redis (a cluster client on the cluster); close it."""
        assert self.redis_url is not None
        return make_client(self.redis_url, timeout_s=10, cluster=self.cluster)

    async def count(self) -> int:
        db = Database(self.url)
        try:
            async with db.session() as session:
                return await SearchLogRepository(session).count()
        finally:
            await db.dispose()


@pytest.fixture
async def logs(
    log_url: str, tmp_path: Path, request: pytest.FixtureRequest, stream_name: str
) -> AsyncIterator[Logs]:
    cluster = getattr(request, "param", "redis") == "cluster"
    redis_url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    made = Logs(log_url, tmp_path / "keys.json", redis_url, stream_name, cluster)
    yield made
    for log in made.made:
        await log.stop(timeout_s=2)
    for db in made.dbs:
        await db.dispose()
    client = made.client()  # on a cluster: SCAN on every master, DEL split by slot
    # the stream, its shards ":{n}", the ":shards" set and the ":erased" tombstones
    leftovers = [key async for key in client.scan_iter(match=stream_name + "*")]
    if leftovers:
        await client.delete(*leftovers)
    await client.aclose()


def event(account: str = "acct-1", vin: str | None = "1HGCM82633A004352", **kw: Any) -> QueryEvent:
    return QueryEvent(
        account_id=account,
        endpoint=kw.pop("endpoint", "lookup"),
        outcome=kw.pop("outcome", "ok"),
        vin=vin,
        wmi="1HG",
        make="Honda",
        model_year=2003,
        country_code="US",
        client_ip="203.0.113.77",
        user_agent="python-httpx/0.27",
        **kw,
    )
