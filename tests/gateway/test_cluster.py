"""Redis Cluster (``VINGW_REDIS_CLUSTER=true``): real gateway processes and a search-log writer
on the session's 3-master cluster, the cluster check of /readyz, bounded failures, the
invalidation bus across nodes, and the per-IP limit's fail-open being said."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy
from prometheus_client import REGISTRY
from redis.exceptions import RedisError

from gateway.accounts.invalidation import InvalidationBus
from gateway.config import Settings
from gateway.kv import make_redis
from gateway.pipelined import ClusterPipelined
from tests.gateway import signing
from tests.gateway.conftest import serving, settings_for
from tests.gateway.procs import BIN, FAST_ENV, running, workshop
from tests.redis_procs import redis_server

pytestmark = pytest.mark.redis

VIN = "1HGCM82633A004352"


def _raw_slots(cluster_url: str) -> dict[int, str]:
    client = redis.Redis.from_url(cluster_url)
    try:
        found: dict[int, str] = {}
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            host = master[0].decode() if isinstance(master[0], bytes) else master[0]
            for slot in range(int(start), int(end) + 1):
                found[slot] = f"{host}:{master[1]}"
        return found
    finally:
        client.close()


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


@contextmanager
def writer(env: dict[str, str]) -> Iterator[list[str]]:
    """``vin-gateway searchlog-writer`` until the block ends (SIGTERM; its output captured)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full_env.update(env)
    proc = subprocess.Popen(
        [str(BIN), "searchlog-writer"],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        yield output
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        output.extend(out.splitlines())


def _rows(log_url: str) -> int:
    engine = sqlalchemy.create_engine(log_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("SELECT count(*) FROM search_event")).scalar())
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_gateways_and_a_writer_on_the_cluster(
    tmp_path: Path, redis_cluster_url: str, postgres_urls: tuple[str, str]
) -> None:
    accounts_url, log_url = postgres_urls
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_REDIS_URL": redis_cluster_url,
        "VINGW_REDIS_CLUSTER": "true",
        "VINGW_DATABASE_URL": accounts_url,
        "VINGW_LOG_DATABASE_URL": log_url,
        "VINGW_MIGRATE_ON_START": "true",
        "VINGW_SEARCHLOG_CONSUMER": "false",  # the writer process consumes the stream
        "VINGW_LIMIT_VIN_BURST": "1000",
        "VINGW_LIMIT_VIN_PER_S": "100",
        "VINGW_LIMIT_IP_BURST": "1000",
        "VINGW_LIMIT_IP_PER_S": "100",
    }
    slots = _raw_slots(redis_cluster_url)
    assert len(set(slots.values())) == 3
    with (
        running(["serve"], env) as (base_a, _),
        running(["serve"], env) as (base_b, _),
        writer(env) as writer_log,
    ):
        rows_before = _rows(log_url)  # (the gateways migrated the log database)
        # ten accounts whose limiter keys ({acct}) live on every one of the three masters
        accounts: list[dict] = []
        with httpx.Client(base_url=base_a) as a:
            while True:
                w = workshop(a)
                accounts.append(w)
                if len(accounts) > 10:
                    accounts.pop(0)
                owners = {slots[_slot("vl:{" + x["id"] + "}")] for x in accounts}
                if len(accounts) == 10 and len(owners) == 3:
                    break

        async def lookups() -> tuple[list[int], list[list[int]]]:
            async with httpx.AsyncClient(timeout=30) as client:

                async def one(i: int) -> int:
                    w = accounts[i % 10]
                    token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
                    headers = {**w["auth"], "VIN-Attestation": token}
                    base = base_a if i % 2 else base_b
                    r = await client.post(base + "/v1/lookups", json={"vin": VIN}, headers=headers)
                    assert r.status_code == 200, (base, r.text)
                    return r.status_code

                codes: list[int] = []
                for start in range(0, 400, 20):  # 400 lookups, 20 at a time
                    codes += await asyncio.gather(*(one(i) for i in range(start, start + 20)))
                races = []
                for w in accounts:  # the same attestation to both gateways at once
                    token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
                    headers = {**w["auth"], "VIN-Attestation": token}
                    pair = await asyncio.gather(
                        client.post(base_a + "/v1/lookups", json={"vin": VIN}, headers=headers),
                        client.post(base_b + "/v1/lookups", json={"vin": VIN}, headers=headers),
                    )
                    races.append(sorted(r.status_code for r in pair))
                    refused = [r for r in pair if r.status_code == 403]
                    assert [r.json()["code"] for r in refused] == ["attestation_replayed"]
                return codes, races

        codes, races = asyncio.run(lookups())
        assert codes == [200] * 400
        assert races == [[200, 403]] * 10
        answered = 400 + 2 * 10  # every answer is logged, the refused replays included
        with httpx.Client(base_url=base_a) as a, httpx.Client(base_url=base_b) as b:
            deadline = time.monotonic() + 30
            while _rows(log_url) - rows_before < answered and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # (a duplicate would land now)
            # one row per answered query, whichever gateway answered it
            assert _rows(log_url) - rows_before == answered
            per_account = []
            for i, w in enumerate(accounts):
                gateway = a if i % 2 else b
                r = gateway.get("/v1/me/export", headers=w["auth"])
                assert r.status_code == 200, r.text
                per_account.append(len(r.json()["search_log"]))
            assert per_account == [42] * 10  # 40 lookups and both answers of a race each
            # erasure through either gateway, of rows written through both
            for i, w in enumerate(accounts[:4]):
                gateway = b if i % 2 else a
                assert gateway.delete("/v1/me", headers=w["auth"]).status_code == 204
            assert _rows(log_url) - rows_before == answered - 4 * 42
            for i, w in enumerate(accounts[4:]):
                gateway = a if i % 2 else b
                assert (
                    len(gateway.get("/v1/me/export", headers=w["auth"]).json()["search_log"]) == 42
                )
            for base in (base_a, base_b):
                ready = httpx.get(base + "/readyz")
                assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
    log = "\n".join(writer_log)
    assert "stream read failed" not in log and "MOVED" not in log


@contextmanager
def one_node_cluster(tmp_path: Path) -> Iterator[int]:
    """A cluster of one master holding every slot (cheap: no gossip to wait for)."""
    conf = tmp_path / f"nodes-{secrets.token_hex(3)}.conf"
    with redis_server(tmp_path, "--cluster-enabled", "yes", "--cluster-config-file", str(conf)) as (
        port,
        _,
    ):
        node = redis.Redis(port=port)
        node.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
        for _ in range(200):
            if node.execute_command("CLUSTER INFO").get("cluster_state") == "ok":
                break
            time.sleep(0.05)
        try:
            yield port
        finally:
            node.close()


async def test_readyz_checks_the_cluster_state(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with one_node_cluster(tmp_path) as port:
        settings = settings_for(
            "embedded", request, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0",
            redis_cluster=True,
        )  # fmt: skip
        async with serving(settings, "cluster") as api:
            ready = await api.client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
            # a node that answers PING but has lost slots: cluster_state:fail
            redis.Redis(port=port).execute_command("CLUSTER DELSLOTSRANGE", 100, 200)
            for _ in range(100):
                ready = await api.client.get("/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"] == "cluster_state_fail"


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a frozen node)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


async def test_a_silent_cluster_fails_within_one_timeout(tmp_path: Path) -> None:
    """A cluster whose node never answers is a RedisError (redis-py raises
    RedisClusterException, which is not one: the limiter would answer 500, not 503), within
    one timeout or so."""
    with silent_server() as port:
        url = f"redis://127.0.0.1:{port}/0"
        settings = Settings(
            _env_file=None, data_dir=tmp_path, redis_url=url, redis_cluster=True,
            redis_timeout_s=0.3,
        )  # fmt: skip
        client = make_redis(settings)
        admission = ClusterPipelined(url, timeout_s=0.3)
        try:
            for call in (
                lambda: client.set("vl:{acct}:x", "1"),
                lambda: admission.evalsha("0" * 40, "return 1", ["vl:{acct}:x"], []),
            ):
                started = time.monotonic()
                with pytest.raises(RedisError):
                    await call()
                assert time.monotonic() - started < 0.3 * 2.5
        finally:
            await admission.aclose()
            await client.aclose()


class _Auth:
    live = False

    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def clear(self) -> None:
        pass

    def forget(self, account: str) -> None:
        self.forgotten.append(account)


async def test_invalidations_cross_the_cluster(tmp_path: Path, redis_cluster_url: str) -> None:
    """Two gateways' buses on the cluster (each subscribed to whichever node it picked): a
    change published through one reaches the other."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path, redis_url=redis_cluster_url, redis_cluster=True
    )
    clients = [make_redis(settings), make_redis(settings)]
    auths = [_Auth(), _Auth()]
    buses = [InvalidationBus(c, a, timeout_s=1.0) for c, a in zip(clients, auths, strict=True)]
    try:
        for bus in buses:
            bus.start()
        for _ in range(100):
            if all(a.live for a in auths):
                break
            await asyncio.sleep(0.05)
        assert all(a.live for a in auths)
        account = "acct_" + secrets.token_hex(5)
        await buses[0].publish(account, "api_key_revoked", "key_0a1b2c3d4e5f")
        for _ in range(100):
            if account in auths[1].forgotten:
                break
            await asyncio.sleep(0.02)
        assert auths[1].forgotten == [account]
    finally:
        for bus in buses:
            await bus.close()
        for client in clients:
            await client.aclose()


def _fail_open(limit: str) -> float:
    return REGISTRY.get_sample_value("vingw_limiter_fail_open_total", {"limit": limit}) or 0


async def test_the_per_ip_limit_says_when_it_fails_open(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.gateway.procs import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for("embedded", request, tmp_path, redis_url=dead, limit_ip_fail_open=True)
    async with serving(settings, "embedded") as api:
        before = _fail_open("ip")
        with caplog.at_level(logging.WARNING, logger="vin_gateway.limits"):
            r = await api.client.post(
                "/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 12}
            )
        assert r.status_code != 429
        assert _fail_open("ip") == before + 1
        assert any("fail open" in m for m in caplog.messages)
