"""Redis faults, against real redis-server processes of each test's own (frozen with SIGSTOP,
restarted, killed, started with and without persistence):

- a frozen or slow Redis: every VIN request is answered within ONE Redis timeout (plus a
  margin), never two in a row, alone or concurrently, and the gateway serves again after;
- replay protection survives a Redis restart without persistence, a restart from an older
  snapshot, and a restart of the embedded gateway (whose stand-in dies with it);
- the start-up check of persistence and eviction policy (CONFIG GET, or INFO where CONFIG is
  refused), warning by default and refusing to start with ``VINGW_REDIS_REQUIRE_DURABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import kv, pipelined
from gateway.config import Settings
from gateway.pipelined import PipelinedRedis
from gateway.state import build_state
from tests.gateway import signing
from tests.gateway.conftest import Account, Api, embedded_settings, serving
from tests.gateway.procs import BIN, FAST_ENV, free_port, running, workshop
from tests.gateway.test_accounts import problem

pytestmark = pytest.mark.redis

VIN = "1HGCM82633A004352"  # in the sample catalogue
TIMEOUT = 1.0  # VINGW_REDIS_TIMEOUT_S of the gateways under test
BOUND = TIMEOUT * 1.6  # one timeout plus a generous margin (a loaded machine); two are 2.0 s
SLOW_REPLY_S = TIMEOUT * 0.8  # a reply inside the timeout on its own


class OwnRedis:
    """A redis-server of the test's own on a free port (no persistence unless asked)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed")
        self.binary, self.dir, self.port = binary, directory, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        no_snapshots = () if "--save" in extra else ("--save", "")
        self.args = ["--appendonly", "no", *no_snapshots, *extra]  # later arguments win
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:  # not listening yet, or still loading its data
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., OwnRedis]]:
    started: list[OwnRedis] = []

    def make(*extra: str) -> OwnRedis:
        server = OwnRedis(tmp_path / f"redis{len(started)}", *extra)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def settings_on(tmp_path: Path, server: OwnRedis, **overrides: Any) -> Settings:
    """Embedded databases, the test's own Redis, the short timeout."""
    return embedded_settings(
        tmp_path / "gw", **{"redis_url": server.url, "redis_timeout_s": TIMEOUT, **overrides}
    )


def attested(api: Api, account: Account, vin: str = VIN, **claims: Any) -> dict[str, str]:
    return api.attest(account, vin, **claims)


async def into_the_next_second() -> None:
    """Wait until the wall clock is in a later second. An attestation issued in the very second
    Redis (re)started is accepted after it (iat has whole seconds; docs/attestation.md says so),
    so the tests restart Redis in a later second than the attestations they replay."""
    await asyncio.sleep(1.02 - time.time() % 1)


VinRequest = tuple[str, dict[str, str], dict[str, str]]


def vin_requests(api: Api, account: Account) -> list[VinRequest]:
    """One request of each VIN endpoint (path, body, headers), attestations signed now."""
    declaration = {"vin": VIN, "basis": "owner", "purpose": "parts_inquiry"}
    return [
        ("/v1/lookups", {"vin": VIN}, attested(api, account)),
        ("/v1/vins/decode", {"vin": VIN}, attested(api, account)),
        ("/v1/attestations", declaration, account.auth),
    ]


async def send(api: Api, request: VinRequest) -> tuple[httpx.Response, float]:
    """The answer and how long it took."""
    path, body, headers = request
    started = time.monotonic()
    response = await api.client.post(path, json=body, headers=headers)
    return response, time.monotonic() - started


@contextlib.contextmanager
def slow_replies(
    monkeypatch: pytest.MonkeyPatch, server: OwnRedis, delay_s: float
) -> Iterator[None]:
    """A loaded Redis: each command the gateway's lean connections send is answered
    ``delay_s`` later (Redis is stopped as the command goes out and continued ``delay_s``
    after), each reply inside the timeout on its own. Only the real server is acted on."""
    loop = asyncio.get_running_loop()
    original = pipelined._Connection.send
    assert server.proc is not None
    pid = server.proc.pid

    def send(self: Any, packed: bytes) -> asyncio.Future[Any]:
        os.kill(pid, signal.SIGSTOP)
        loop.call_later(delay_s, os.kill, pid, signal.SIGCONT)
        return original(self, packed)

    monkeypatch.setattr(pipelined._Connection, "send", send)
    try:
        yield
    finally:
        monkeypatch.setattr(pipelined._Connection, "send", original)


# --- bounded failure ---------------------------------------------------------------------


async def test_a_frozen_or_slow_redis_fails_vin_requests_within_one_timeout(
    own_redis: Callable[..., OwnRedis], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_redis()
    # the search log ships only at shutdown: no XADD of it reaches Redis during the test
    settings = settings_on(tmp_path, server, searchlog_ship_interval_ms=3_600_000)
    async with serving(settings, "services") as api:
        acct = await api.workshop()
        for request in vin_requests(api, acct):
            r, _ = await send(api, request)
            assert r.status_code in {200, 201}, r.text

        sequential = [*vin_requests(api, acct), vin_requests(api, acct)[0]]
        refused = ("/v1/lookups", {"vin": VIN}, attested(api, acct, "JH4DC4340RS003205"))
        concurrent = [request for _ in range(4) for request in vin_requests(api, acct)]
        server.freeze()
        try:
            for request in sequential:  # several in a row: each on its own bound
                r, elapsed = await send(api, request)
                problem(r, 503, "limiter_unavailable")
                assert int(r.headers["Retry-After"]) >= 1
                assert elapsed < BOUND, f"{request[0]}: {elapsed:.2f} s, more than one timeout"
            # a refused attestation is answered within the bound too (its signal is lost)
            r, elapsed = await send(api, refused)
            problem(r, 403, "attestation_vin_mismatch")
            assert elapsed < BOUND, f"{elapsed:.2f} s"
            # concurrent requests share the frozen connection: each within one timeout
            for r, elapsed in await asyncio.gather(*(send(api, q) for q in concurrent)):
                problem(r, 503, "limiter_unavailable")
                assert elapsed < BOUND, f"{elapsed:.2f} s"
        finally:
            server.thaw()
        r, _ = await send(api, vin_requests(api, acct)[0])
        assert r.status_code == 200, r.text

        # a Redis that lost its scripts (a restart) and is slow, each reply inside the timeout:
        # the reload (SCRIPT LOAD, EVALSHA again) must not take timeouts of its own
        server.admin().script_flush()
        request = vin_requests(api, acct)[0]
        with slow_replies(monkeypatch, server, SLOW_REPLY_S):
            r, elapsed = await send(api, request)
        assert elapsed < BOUND, f"{elapsed:.2f} s: the NOSCRIPT reload waited again"
        assert r.status_code in {200, 503}, r.text
        await asyncio.sleep(SLOW_REPLY_S)  # the late replies arrive and are dropped
        r, _ = await send(api, vin_requests(api, acct)[0])
        assert r.status_code == 200, r.text


async def test_noscript_reload_shares_the_calls_deadline(
    own_redis: Callable[..., OwnRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = own_redis()
    source = "return {KEYS[1], tonumber(ARGV[1]) + 1}"
    sha = server.admin().script_load(source)
    lean = PipelinedRedis(server.url, timeout_s=TIMEOUT)
    try:
        assert await lean.evalsha(sha, source, ["k"], [41]) == [b"k", 42]
        server.admin().script_flush()
        with slow_replies(monkeypatch, server, SLOW_REPLY_S):
            started = time.monotonic()
            with contextlib.suppress(RedisTimeoutError):  # two slow replies exceed one timeout
                await lean.evalsha(sha, source, ["k"], [41])
            elapsed = time.monotonic() - started
        assert elapsed < BOUND, f"{elapsed:.2f} s for one call"
        await asyncio.sleep(SLOW_REPLY_S)
        server.admin().script_flush()  # an unloaded script, a Redis that answers at once
        assert await lean.evalsha(sha, source, ["k"], [41]) == [b"k", 42]
    finally:
        await lean.aclose()


# --- replay protection across Redis restarts ---------------------------------------------


async def test_replay_refused_after_a_redis_restart_without_persistence(
    own_redis: Callable[..., OwnRedis], tmp_path: Path
) -> None:
    server = own_redis()
    async with serving(settings_on(tmp_path, server), "services") as api:
        acct = await api.workshop()
        x = attested(api, acct)
        assert (
            await api.client.post("/v1/lookups", json={"vin": VIN}, headers=x)
        ).status_code == 200
        r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=x)
        problem(r, 403, "attestation_replayed")
        unused = attested(api, acct)  # signed, never sent before the restart

        await into_the_next_second()
        server.restart()  # no persistence: every replay record is gone
        await asyncio.sleep(0.2)  # the gateway notices its connection closed

        for headers in (x, unused, x):  # refused, and stays refused
            r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
            problem(r, 403, "attestation_replay_window_lost")
            assert int(r.headers["Retry-After"]) >= 1
        fresh = attested(api, acct)
        r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=fresh)
        assert r.status_code == 200, r.text
        r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=fresh)
        problem(r, 403, "attestation_replayed")
        # the lost window is not a suspicious-usage signal: the score is the one replay's
        decision = await api.state.limiter.peek(acct.id)
        assert decision.score == api.state.limiter.policy.weights["attestation_refused"]


async def test_replay_refused_after_a_restart_from_an_older_snapshot(
    own_redis: Callable[..., OwnRedis], tmp_path: Path
) -> None:
    server = own_redis()  # snapshots only when told (SAVE)
    async with serving(settings_on(tmp_path, server), "services") as api:
        acct = await api.workshop()
        w = attested(api, acct)
        assert (
            await api.client.post("/v1/lookups", json={"vin": VIN}, headers=w)
        ).status_code == 200
        server.admin().save()  # the snapshot has W's replay record and the account's origin
        x = attested(api, acct)
        assert (
            await api.client.post("/v1/lookups", json={"vin": VIN}, headers=x)
        ).status_code == 200

        await into_the_next_second()
        server.restart(signal.SIGKILL)  # a crash: X's record, written after the snapshot, is lost
        await asyncio.sleep(0.2)
        assert server.admin().dbsize() > 0  # the snapshot was loaded

        for headers in (x, w):
            r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
            problem(r, 403, "attestation_replay_window_lost")
        r = await api.lookup(acct, VIN)
        assert r.status_code == 200, r.text


async def test_restart_leeway_refuses_fresh_attestations_for_that_long(
    own_redis: Callable[..., OwnRedis], tmp_path: Path
) -> None:
    """``VINGW_ATTESTATION_RESTART_LEEWAY_S`` (for clients whose clocks run ahead): after a
    restart, attestations issued before the restart plus the leeway are refused, and
    ``Retry-After`` says when a freshly signed one is accepted."""
    server = own_redis()
    settings = settings_on(tmp_path, server, attestation_restart_leeway_s=2)
    async with serving(settings, "services") as api:
        acct = await api.workshop()
        server.restart()
        await asyncio.sleep(0.2)
        r = await api.lookup(acct, VIN)
        problem(r, 403, "attestation_replay_window_lost")
        wait = int(r.headers["Retry-After"])
        assert 1 <= wait <= 3
        await asyncio.sleep(wait)
        r = await api.lookup(acct, VIN)
        assert r.status_code == 200, r.text


async def test_embedded_gateway_restart_keeps_its_replay_records(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    async with serving(settings, "embedded") as api:
        acct = await api.workshop()
        x = attested(api, acct)
        assert (
            await api.client.post("/v1/lookups", json={"vin": VIN}, headers=x)
        ).status_code == 200
    assert (tmp_path / "replay-records.json").stat().st_mode & 0o077 == 0
    async with serving(settings, "embedded") as api:  # a clean restart: records restored
        r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=x)
        problem(r, 403, "attestation_replayed")
        r = await api.lookup(acct, VIN)
        assert r.status_code == 200, r.text


@pytest.mark.slow
def test_embedded_gateway_killed_refuses_what_it_may_have_accepted(tmp_path: Path) -> None:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path), "VINGW_ACCESS_LOG_LEVEL": "WARNING"}
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/healthz", timeout=0.5).status_code == 200:
                    break
            time.sleep(0.1)
        with httpx.Client(base_url=base) as client:
            w = workshop(client)
            token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
            headers = {**w["auth"], "VIN-Attestation": token}
            assert client.post("/v1/lookups", json={"vin": VIN}, headers=headers).status_code == 200
        time.sleep(1.02 - time.time() % 1)  # the restart is in a later second
    finally:
        proc.kill()  # no shutdown: the in-process stand-in dies with its records
        proc.wait(10)
    with running(["serve"], env) as (base, _), httpx.Client(base_url=base) as client:
        r = client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
        problem(r, 403, "attestation_replay_window_lost")
        fresh = signing.attestation(w["key"], w["kid"], w["id"], VIN)
        r = client.post(
            "/v1/lookups", json={"vin": VIN}, headers={**w["auth"], "VIN-Attestation": fresh}
        )
        assert r.status_code == 200, r.text


# --- start-up checks ---------------------------------------------------------------------


async def durability_of(url: str) -> kv.Durability:
    client = kv.make_redis(Settings(_env_file=None, redis_url=url, redis_timeout_s=1.0))
    try:
        return await kv.redis_durability(client)
    finally:
        await client.aclose()


async def test_durability_findings(own_redis: Callable[..., OwnRedis]) -> None:
    none = await durability_of(own_redis().url)
    assert none.source == "config" and none.persistence_ok is False and none.eviction_ok
    assert any("appendonly yes" in p for p in none.problems())

    aof = await durability_of(own_redis("--appendonly", "yes").url)
    assert aof.persistence_ok and aof.eviction_ok and aof.info_allowed
    assert aof.problems() == [] and aof.warnings() == []

    rdb = await durability_of(own_redis("--save", "60 1").url)
    assert rdb.problems() == [] and any("RDB snapshots only" in w for w in rdb.warnings())

    lru = await durability_of(
        own_redis("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru").url
    )
    assert lru.eviction_ok is False
    assert any("maxmemory-policy noeviction" in p for p in lru.problems())
    volatile = await durability_of(
        own_redis("--appendonly", "yes", "--maxmemory-policy", "volatile-lru").url
    )
    assert volatile.eviction_ok is False  # replay records have TTLs: volatile-* evicts them

    # managed Redis often refuses CONFIG: INFO persistence and INFO memory instead
    info_aof = await durability_of(
        own_redis("--appendonly", "yes", "--rename-command", "CONFIG", "").url
    )
    assert info_aof.source == "info" and info_aof.problems() == []
    info_none = await durability_of(own_redis("--rename-command", "CONFIG", "").url)
    assert info_none.source == "info" and info_none.persistence_ok is None
    assert any("CONFIG GET is not allowed" in p for p in info_none.problems())

    # a user without INFO: the admission script could not tell a restarted Redis
    limited = own_redis("--appendonly", "yes")
    limited.admin().acl_setuser(
        "gw", enabled=True, passwords=["+gw-password-1"], keys=["*"], channels=["*"],
        commands=["+@all", "-info"],
    )  # fmt: skip
    no_info = await durability_of(f"redis://gw:gw-password-1@127.0.0.1:{limited.port}/0")
    assert no_info.info_allowed is False
    assert any("allow INFO" in p for p in no_info.problems())

    gone = await durability_of(f"redis://127.0.0.1:{free_port()}/0")
    assert gone.source == "unreachable" and gone.problems()


async def test_not_durable_warns_by_default_and_refuses_when_required(
    own_redis: Callable[..., OwnRedis], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_redis()
    async with serving(settings_on(tmp_path, server), "services") as api:
        metrics = (await api.client.get("/metrics")).text
        assert 'vingw_redis_durability{check="persistence"} 0.0' in metrics
        assert 'vingw_redis_durability{check="eviction"} 1.0' in metrics
        assert api.state.redis_durability.persistence_ok is False
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["warnings"] == ["redis_not_durable"]  # a code, no configuration
    assert any("Redis is not durable" in r.getMessage() for r in caplog.records)
    with pytest.raises(kv.RedisNotDurable, match="VINGW_REDIS_REQUIRE_DURABLE"):
        await build_state(settings_on(tmp_path / "b", server, redis_require_durable=True))


@pytest.mark.slow
def test_serve_refuses_a_redis_that_is_not_durable_when_required(
    own_redis: Callable[..., OwnRedis], tmp_path: Path
) -> None:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path), "VINGW_REDIS_REQUIRE_DURABLE": "true"}
    for server, setting in (
        (own_redis(), "appendonly yes"),
        (
            own_redis("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"),
            "maxmemory-policy noeviction",
        ),
    ):
        result = subprocess.run(
            [str(BIN), "serve", "--port", str(free_port())],
            env={"PATH": "/usr/bin:/bin", **env, "VINGW_REDIS_URL": server.url},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert setting in result.stderr and "VINGW_REDIS_REQUIRE_DURABLE" in result.stderr
        assert server.url not in result.stderr
    durable = own_redis("--appendonly", "yes")
    with running(["serve"], {**env, "VINGW_REDIS_URL": durable.url}, health="/readyz") as (base, _):
        metrics = httpx.get(base + "/metrics").text
        assert 'vingw_redis_durability{check="persistence"} 1.0' in metrics
        assert "warnings" not in httpx.get(base + "/readyz").json()
