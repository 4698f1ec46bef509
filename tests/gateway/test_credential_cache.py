"""The credential cache of the request path: one indexed statement when cold, minutes of caching
invalidated across processes over Redis pub/sub, bounded negative caching, and what happens when
the subscription drops. Real Redis, real databases, real ``vin-gateway serve`` processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from gateway.accounts.auth import Authenticator
from gateway.accounts.exceptions import InvalidToken
from gateway.accounts.invalidation import CHANNEL, REASONS, Invalidation
from tests.gateway import signing
from tests.gateway.conftest import Api, serving, settings_for
from tests.gateway.procs import BIN, FAST_ENV, running, workshop

VIN = "1HGCM82633A004352"


@contextmanager
def statements(api: Api) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the accounts engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []
    engine = api.state.accounts_db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def api_key_of(api: Api, account: Any) -> tuple[str, str]:
    r = await api.client.post("/v1/api-keys", json={"name": "workshop pc"}, headers=account.auth)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


# --- (b) the cold path is one indexed statement ---------------------------------------------


async def test_cold_path_is_one_statement(api: Api, tmp_path: Path) -> None:
    w = await api.workshop()
    key_id, api_key = await api_key_of(api, w)
    other = await api.workshop()
    auth: Authenticator = api.state.auth
    assert w.kid is not None
    for bearer, expected_key_id in ((api_key, key_id), (w.token, None)):
        auth.clear()
        with statements(api) as sql:
            state, got_key_id, key = await auth.resolve_query(bearer, w.kid)
        assert len(sql) == 1, sql  # credential + account state + attestation key
        assert sql[0][0].count("JOIN") == (2 if expected_key_id else 1)
        assert (state.id, state.status, got_key_id) == (w.id, "active", expected_key_id)
        assert key is not None and (key.kid, key.owner) == (w.kid, w.id)
        with statements(api) as sql:  # warm: no statement at all
            assert await auth.resolve_query(bearer, w.kid) == (state, expected_key_id, key)
            assert await auth.resolve(bearer) == (state, expected_key_id)
            assert await auth.attestation_key(w.kid) == key
        assert sql == []
        if api.mode == "embedded":  # every table reached through an index, none scanned
            db = make_url(api.state.settings.accounts_url).database
            cold = await cold_statement(api, auth, bearer, w.kid)
            with sqlite3.connect(str(db)) as conn:
                plan = conn.execute("EXPLAIN QUERY PLAN " + cold[0], cold[1]).fetchall()
            details = [row[-1] for row in plan]
            # (the open-flag EXISTS is a correlated subquery: its table is searched too)
            tables = [d for d in details if not d.startswith("CORRELATED SCALAR SUBQUERY")]
            assert all(d.startswith("SEARCH") for d in tables), details
            assert any(d.startswith("SEARCH flag USING INDEX") for d in tables), details
            assert any("api_key" in d for d in details) == (expected_key_id is not None)

    # another account's kid, an unknown kid, no kid: the account resolves, the key is None
    for kid in (other.kid, "ak_0000000000000000", None):
        auth.clear()
        with statements(api) as sql:
            state, _key_id, key = await auth.resolve_query(api_key, kid)
        assert (state.id, key, len(sql)) == (w.id, None, 1)
    # a revoked key: None at once in this worker (the revocation drops the cache)
    assert (await auth.resolve_query(api_key, w.kid))[2] is not None
    r = await api.client.delete(f"/v1/attestation-keys/{w.kid}", headers=w.auth)
    assert r.status_code == 200, r.text
    assert (await auth.resolve_query(api_key, w.kid))[2] is None
    # the gateway's own attestation key needs no statement for the key
    auth.clear()
    gw_kid = api.state.gateway_attestation_key.kid
    with statements(api) as sql:
        assert (await auth.resolve_query(w.token, gw_kid))[2] == api.state.gateway_attestation_key
    assert len(sql) == 1 and "attestation_key" not in sql[0][0]


async def cold_statement(api: Api, auth: Authenticator, bearer: str, kid: str) -> tuple[str, Any]:
    auth.clear()
    with statements(api) as sql:
        await auth.resolve_query(bearer, kid)
    return sql[0]


# --- (c) negative caching is brief and bounded -----------------------------------------------


async def test_unknown_credentials_are_cached_briefly_and_bounded(api: Api) -> None:
    w = await api.workshop()
    _key_id, api_key = await api_key_of(api, w)
    s = api.state
    auth = Authenticator(
        s.accounts, s.tokens, ttl_s=300, short_ttl_s=0.5, gateway_keys={}, max_negative=50
    )
    auth.live = True

    async def refused(bearer: str) -> None:
        with pytest.raises(InvalidToken) as caught:
            await auth.resolve_query(bearer, None)
        assert bearer not in str(caught.value)

    unknown = "vgk_" + "a" * 12 + "_" + secrets.token_urlsafe(16)
    with statements(api) as sql:
        for _ in range(50):  # one unknown key, again and again: one statement
            await refused(unknown)
        for _ in range(50):  # random secrets under one unknown key id: still that statement
            await refused("vgk_" + "a" * 12 + "_" + secrets.token_urlsafe(16))
    assert len(sql) == 1
    with statements(api) as sql:  # a wrong secret for a real key: remembered by digest only
        wrong = api_key[: api_key.rindex("_") + 1] + secrets.token_urlsafe(16)
        for _ in range(20):
            await refused(wrong)
        assert (await auth.resolve_query(api_key, None))[0].id == w.id  # never locked out
    assert len(sql) == 2
    with statements(api) as sql:  # a flood of distinct unknown keys: the cache stays bounded
        for _ in range(500):
            await refused(f"vgk_{secrets.token_hex(6)}_{secrets.token_urlsafe(8)}")
    assert len(sql) == 500
    assert auth.cache_sizes()["negative"] <= 50
    await asyncio.sleep(0.6)  # briefly: after the short TTL the database is asked again
    with statements(api) as sql:
        await refused(unknown)
    assert len(sql) == 1


async def test_short_ttl_while_the_subscription_is_down(api: Api) -> None:
    w = await api.workshop()
    s = api.state
    auth = Authenticator(s.accounts, s.tokens, ttl_s=300, short_ttl_s=0.3, gateway_keys={})
    auth.live = True
    await auth.resolve_query(w.token, w.kid)
    await asyncio.sleep(0.4)
    with statements(api) as sql:
        await auth.resolve_query(w.token, w.kid)  # subscribed: minutes
    assert sql == []
    auth.live = False  # the subscription dropped: entries older than the short TTL go
    with statements(api) as sql:
        await auth.resolve_query(w.token, w.kid)
        await auth.resolve_query(w.token, w.kid)
    assert len(sql) == 1


@pytest.mark.redis
async def test_reconnect_clears_the_cache(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> None:
    """The subscription connection is killed in Redis: the worker notices, serves the short TTL,
    resubscribes and starts with an empty cache."""
    import redis.asyncio as aioredis

    settings = settings_for("services", request, tmp_path)
    async with serving(settings, "services") as api:
        bus = api.state.invalidations
        await wait_for(lambda: api.state.auth.live, 5)
        w = await api.workshop()
        await api.state.auth.resolve_query(w.token, w.kid)
        assert api.state.auth.cache_sizes()["credentials"] == 1
        connects = bus.connects
        db = make_url(redis_url).database or "0"
        admin = aioredis.Redis.from_url(redis_url)
        try:
            clients = await admin.client_list(_type="pubsub")
            ours = [c for c in clients if str(c.get("db")) == str(db)]
            assert ours, clients
            for client in ours:
                await admin.client_kill_filter(_id=client["id"])
        finally:
            await admin.aclose()
        await wait_for(lambda: bus.connects > connects and api.state.auth.live, 10)
        assert api.state.auth.cache_sizes() == {
            "credentials": 0,
            "states": 0,
            "keys": 0,
            "answers": 0,
            "negative": 0,
        }


async def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_messages_carry_ids_only() -> None:
    message = Invalidation("acct_0123456789", "api_key_revoked", "key_0a1b2c3d4e5f")
    assert orjson.loads(message.encode()) == {
        "v": 1,
        "account": "acct_0123456789",
        "reason": "api_key_revoked",
        "key": "key_0a1b2c3d4e5f",
    }
    assert Invalidation.decode(message.encode()) == message
    for bad in (
        b'{"v": 1, "account": "someone@example.com", "reason": "status_changed", "key": null}',
        b'{"v": 1, "account": "acct_1", "reason": "status_changed", "key": "vgk_x.y"}',
        b'{"v": 1, "account": "acct_1", "reason": "whatever", "key": null}',
        b"not json",
    ):
        assert Invalidation.decode(bad) is None


# --- (a) across two real processes -----------------------------------------------------------


def stores(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == "postgres":
        accounts_url, log_url = request.getfixturevalue("postgres_urls")
    else:
        accounts_url = f"sqlite:///{tmp_path}/accounts.sqlite3"
        log_url = f"sqlite:///{tmp_path}/searchlog.sqlite3"
    return {"VINGW_DATABASE_URL": accounts_url, "VINGW_LOG_DATABASE_URL": log_url}


def sql_execute(url: str, statement: str, params: tuple[Any, ...]) -> None:
    """A change made behind the gateway's back (no invalidation): to show the cache is live."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(str(parsed.database)) as conn:
            conn.execute(statement.replace("%s", "?"), params)
        return
    import psycopg

    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_changes_reach_another_process_within_a_second(
    kind: str, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> None:
    import redis

    if kind == "postgres":
        request.applymarker(pytest.mark.postgres)
    env = {
        **FAST_ENV,
        **stores(kind, tmp_path, request),
        "VINGW_DATA_DIR": str(tmp_path / "var"),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_MIGRATE_ON_START": "true",
        "VINGW_AUTH_CACHE_TTL_S": "600",  # minutes: only the invalidation can explain a refusal
        "VINGW_AUTH_CACHE_SHORT_TTL_S": "600",
    }
    admin_email = f"ops-{secrets.token_hex(4)}@example.com"
    made = subprocess.run(
        [str(BIN), "create-admin", "--email", admin_email, "--password-stdin"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}, **env},
        input="an admin passphrase for tests 7\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    listener = redis.Redis.from_url(redis_url).pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe(f"{CHANNEL}:{make_url(redis_url).database or 0}")
    with (
        running(["serve"], env) as (base_a, _),
        running(["serve"], env) as (base_b, _),
        httpx.Client(base_url=base_a) as a,
        httpx.Client(base_url=base_b) as b,
    ):
        w = workshop(a, api_key=True)
        bearer = {"Authorization": f"Bearer {w['api_key']}"}
        token = a.post(
            "/v1/auth/token",
            data={"username": admin_email, "password": "an admin passphrase for tests 7"},
        )
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def lookup_on_b() -> httpx.Response:
            jws = signing.attestation(w["key"], w["kid"], w["id"], VIN)
            return b.post(
                "/v1/lookups", json={"vin": VIN}, headers={**bearer, "VIN-Attestation": jws}
            )

        def refused_on_b_within_a_second(code: str, ok: bool = False) -> None:
            started = time.monotonic()
            while True:
                r = lookup_on_b()
                if (r.status_code == 200) == ok and (ok or r.json()["code"] == code):
                    break
                assert time.monotonic() - started < 1.0, r.text
                time.sleep(0.05)

        assert lookup_on_b().status_code == 200  # B has cached credential, account and key
        # suspended behind the gateway's back: B still serves from its cache (minutes) ...
        set_status = "UPDATE account SET status = %s WHERE id = %s"
        sql_execute(env["VINGW_DATABASE_URL"], set_status, ("suspended", w["id"]))
        assert lookup_on_b().status_code == 200
        sql_execute(env["VINGW_DATABASE_URL"], set_status, ("active", w["id"]))
        # ... suspended through A: refused by B within a second; unsuspended: served again
        reason = {"reason": "test of the invalidation"}
        r = a.post(f"/v1/admin/accounts/{w['id']}/suspend", json=reason, headers=admin)
        assert r.status_code == 200, r.text
        refused_on_b_within_a_second("account_suspended")
        r = a.post(f"/v1/admin/accounts/{w['id']}/unsuspend", json=reason, headers=admin)
        assert r.status_code == 200, r.text
        refused_on_b_within_a_second("", ok=True)

        # the attestation key revoked through A
        r = a.delete(f"/v1/attestation-keys/{w['kid']}", headers=w["auth"])
        assert r.status_code == 200, r.text
        refused_on_b_within_a_second("attestation_unknown_key")
        key, jwk = signing.ec_key()
        r = a.post("/v1/attestation-keys", json={"jwk": jwk}, headers=w["auth"])
        w["key"], w["kid"] = key, r.json()["kid"]
        refused_on_b_within_a_second("", ok=True)

        # the API key revoked through A
        key_id = a.get("/v1/api-keys", headers=w["auth"]).json()[0]["id"]
        assert a.delete(f"/v1/api-keys/{key_id}", headers=w["auth"]).status_code == 200
        refused_on_b_within_a_second("invalid_token")
        assert b.get("/v1/me", headers=bearer).status_code == 401

    published = []
    while (message := listener.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            published.append(message["data"])
    listener.close()
    reasons = [orjson.loads(m)["reason"] for m in published]
    for expected in ("status_changed", "attestation_key_revoked", "api_key_revoked"):
        assert expected in reasons, reasons
    for data in published:  # ids only: no email, token, API key or VIN
        body = orjson.loads(data)
        assert set(body) == {"v", "account", "reason", "key"} and body["reason"] in REASONS
        text = data.decode()
        assert "@" not in text and VIN not in text and w["api_key"] not in text
        assert "Bearer" not in text and "vgk_" not in text


async def test_eviction_keeps_the_account_index_exact(api: Api) -> None:
    """A bounded cache: evicted entries leave the per-account index, and forgetting an account
    drops its entries only."""
    s = api.state
    auth = Authenticator(
        s.accounts, s.tokens, ttl_s=300, short_ttl_s=5, gateway_keys={}, max_entries=2
    )
    auth.live = True
    first, second, third = [await api.workshop() for _ in range(3)]
    for w in (first, second, third):
        await auth.resolve_query(w.token, w.kid)
    assert auth.cache_sizes()["credentials"] == 2
    auth.forget(third.id)
    assert auth.cache_sizes() == {
        "credentials": 1,
        "states": 1,
        "keys": 1,
        "answers": 1,
        "negative": 0,
    }
    with statements(api) as sql:
        assert (await auth.resolve_query(second.token, second.kid))[0].id == second.id
    assert sql == []


async def test_shutdown_is_prompt_while_redis_is_down(tmp_path: Path) -> None:
    """The subscription's retry loop must not outlive a close() whose cancellation arrived as a
    Redis call failed (Python 3.11's wait_for then raises the failure, not the cancellation):
    before the fix the app's shutdown hung on the auth-invalidation task every time."""
    from asgi_lifespan import LifespanManager

    from gateway.main import create_app
    from tests.gateway.conftest import embedded_settings
    from tests.gateway.procs import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = embedded_settings(tmp_path, redis_url=dead, limit_ip_fail_open=False)
    for _ in range(3):
        manager = LifespanManager(create_app(settings), startup_timeout=30, shutdown_timeout=30)
        await manager.__aenter__()
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/v1/auth/token", data={"username": "a@example.com", "password": "x" * 12}
            )
            assert answer.status_code == 503
        started = time.monotonic()
        await manager.__aexit__(None, None, None)
        assert time.monotonic() - started < 5
