"""Shared fixtures: real Redis and real PostgreSQL, each test run in its own db/databases.

Without a reachable Redis or PostgreSQL the tests that need one skip, except under CI=true,
where they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("VINGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_URL = os.environ.get(
    "VINGW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The suite configures the gateway explicitly: no VINGW_ variable of the shell may leak in.
for _name in [n for n in os.environ if n.startswith("VINGW_") and not n.startswith("VINGW_TEST_")]:
    del os.environ[_name]


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if IN_CI:
        pytest.fail(message + " and CI=true: a skipped service test would hide a failure")
    pytest.skip(message)


LOCK_KEY = "vingw:test-run-lock"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis database of this test run's own: the first of dbs 1-15 whose lock it can
    take (so two runs on one machine never flush each other's data), flushed before and after."""
    import redis

    base = REDIS_URL.rstrip("/")
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    client = None
    try:
        for db in range(1, 16):
            candidate = redis.Redis.from_url(f"{base}/{db}", socket_connect_timeout=1)
            if candidate.set(LOCK_KEY, token, nx=True, ex=6 * 3600):
                client, url = candidate, f"{base}/{db}"
                break
            candidate.close()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    if client is None:
        pytest.fail("every Redis test database (1-15) is locked by another test run")
    for key in client.scan_iter():
        if key != LOCK_KEY.encode():
            client.delete(key)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_urls() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases (accounts, search log), dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    suffix = secrets.token_hex(4)
    names = (f"vingw_test_{suffix}_accounts", f"vingw_test_{suffix}_searchlog")
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        unavailable("PostgreSQL", exc)
    with conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    yield tuple(  # type: ignore[misc]
        admin.set(database=name).render_as_string(hide_password=False) for name in names
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real 3-master Redis Cluster of this test run's own on free loopback ports (no replicas,
    no persistence), started here and stopped at the end of the session; the URL names its
    first node, as VINGW_REDIS_URL does with VINGW_REDIS_CLUSTER=true."""
    import redis

    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        unavailable("Redis Cluster", FileNotFoundError("redis-server or redis-cli not installed"))
        raise AssertionError("unreachable")  # unavailable() skips or fails
    from tests.redis_procs import start, stop

    workdir = tempfile.mkdtemp(prefix="vingw-cluster-")
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(3):
            port, proc = start(Path(workdir), "--cluster-enabled", "yes",
                               "--cluster-config-file", f"{workdir}/nodes-{i}.conf")  # fmt: skip
            procs.append(proc)
            ports.append(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def ready() -> bool:
            # every node ok, knowing all three and every slot (a node can say ok before the
            # others' gossip about it settled; clients then met errors on a first command)
            for p in ports:
                info = redis.Redis(port=p).execute_command("CLUSTER INFO")
                if (
                    info.get("cluster_state") != "ok"
                    or int(info.get("cluster_known_nodes", 0)) != len(ports)
                    or int(info.get("cluster_slots_ok", 0)) != 16384
                ):
                    return False
            return True

        _wait(ready, 30)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(check: object, timeout_s: float) -> None:
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail("the test Redis Cluster did not come up in time")
        time.sleep(0.05)
