"""The proof: after a mixed run through the HTTP API (lookups by access token and by API key,
client-signed and gateway-issued attestations with an owner authorization, an invalid VIN, a
refused attestation, a replay, an export), on each configuration:

* no clear VIN, email, full client IP, raw token (access token, API key, attestation) or owner
  authorization reference anywhere in the search-log store, in Redis, in the service's log
  output or in its metrics;
* the accounts store (which legitimately holds the email and the registration IP) holds no VIN
  and no raw token;
* the log store alone cannot be joined to the accounts store: no account table, no foreign key,
  no account id, and no value it holds appears in the accounts store.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from gateway.db import Database
from tests.gateway.conftest import Api, serving, settings_for

VINS = {"valid": "1HGCM82633A004352", "other": "JH4KA7561PC008269", "bad": "1HGCM82633A004353"}


async def dump_database(db: Database) -> tuple[list[str], str]:
    """Every table name and every value of every row, as one string."""
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        values: list[str] = []
        for table in tables:
            result = await conn.execute(text(f'SELECT * FROM "{table}"'))
            values.extend(repr(tuple(row)) for row in result.all())
    return tables, "\n".join(values)


async def foreign_keys(db: Database) -> list[Any]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: [
                fk for t in inspect(c).get_table_names() for fk in inspect(c).get_foreign_keys(t)
            ]
        )


async def dump_redis(redis: Any) -> str:
    out: list[str] = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        out.append(repr(key))
        if kind == "string":
            out.append(repr(await redis.get(key)))
        elif kind == "hash":
            out.append(repr(await redis.hgetall(key)))
        elif kind == "list":
            out.append(repr(await redis.lrange(key, 0, -1)))
        elif kind == "set":
            out.append(repr(await redis.smembers(key)))
        elif kind == "zset":
            out.append(repr(await redis.zrange(key, 0, -1, withscores=True)))
        elif kind == "stream":
            out.append(repr(await redis.xrange(key)))
    return "\n".join(out)


@pytest.mark.parametrize("mode", ["embedded", "services"])
async def test_nothing_identifying_leaks(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # what the service prints: INFO and up (its configured level; third-party DEBUG logs such
    # as aiosqlite's echo SQL parameters and are never enabled), DEBUG for the gateway's own
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="vin_gateway")
    overrides: dict[str, Any] = {}
    if mode == "services":
        overrides["log_database_url"] = request.getfixturevalue("fresh_postgres")()
        overrides["searchlog_stream"] = f"vingw:test:searchlog:{secrets.token_hex(4)}"
        # keep some events in the stream while Redis is swept
        overrides["searchlog_consumer"] = False
    async with serving(settings_for(mode, request, tmp_path, **overrides), mode) as api:
        secret_values, tokens, redis_dump = await mixed_run(api)
        metrics_text = (await api.client.get("/metrics")).text
        if mode == "services":
            assert "vingw:test:searchlog" in redis_dump  # the queue was swept with events in it
        await api.state.searchlog.flush()
        log_tables, log_store = await dump_database(api.state.searchlog_db)
        log_fks = await foreign_keys(api.state.searchlog_db)
        _, accounts_store = await dump_database(api.state.accounts_db)
        account_ids = secret_values.pop("account ids")
    output = caplog.text
    assert "ok" in log_store and len(log_store) > 1000  # the sweep did see rows

    for what, values in secret_values.items():
        for value in values:
            for where, haystack in (
                ("search-log store", log_store),
                ("Redis", redis_dump),
                ("service output", output),
                ("metrics", metrics_text),
            ):
                assert value not in haystack, f"{what} found in the {where}"
    for value in [*tokens, *VINS.values()]:
        assert value not in accounts_store, "a VIN or raw token found in the accounts store"

    # the log store cannot be joined to the accounts store
    known = {"search_event", "search_daily_count", "legal_hold", "alembic_version_searchlog"}
    assert all(t in known or t.startswith("search_event_p") for t in log_tables), log_tables
    assert log_fks == []
    for account_id in account_ids:
        assert account_id not in log_store
    for line in log_store.splitlines():
        row = eval(line)  # noqa: S307 - our own repr of database rows
        for value in row:
            if isinstance(value, str) and len(value) >= 16:
                assert value not in accounts_store


async def mixed_run(api: Api) -> tuple[dict[str, list[str]], list[str], str]:
    vin, other, bad = VINS["valid"], VINS["other"], VINS["bad"]
    a, b = await api.workshop(), await api.workshop()
    attestations: list[str] = []

    async def lookup(acct: Any, v: str, headers: dict[str, str] | None = None, **claims: Any):
        h = headers or api.attest(acct, v, **claims)
        attestations.append(h.get("VIN-Attestation", ""))
        return await api.client.post("/v1/lookups", json={"vin": v}, headers=h)

    assert (await lookup(a, vin)).status_code == 200
    assert (await lookup(a, other)).status_code == 200
    assert (await lookup(b, vin)).status_code == 200
    assert (await lookup(a, bad)).status_code == 422  # invalid VIN, validly attested
    forged = api.attest(a, vin)
    forged["VIN-Attestation"] = forged["VIN-Attestation"][:-4] + "AAAA"
    assert (await lookup(a, vin, forged)).status_code == 403
    replay = api.attest(b, other)
    assert (await lookup(b, other, replay)).status_code == 200
    assert (await lookup(b, other, replay)).status_code == 403
    r = await api.client.post("/v1/vins/decode", json={"vin": other}, headers=api.attest(a, other))
    assert r.status_code == 200

    # an API key, and a gateway-issued attestation with an owner authorization
    r = await api.client.post("/v1/api-keys", json={"name": "workshop pc"}, headers=a.auth)
    api_key = r.json()["key"]
    owner_ref = f"WO-SWEEP-{secrets.token_hex(5)}"
    r = await api.client.post(
        "/v1/attestations",
        json={
            "vin": vin,
            "basis": "owner_authorized",
            "purpose": "maintenance",
            "owner_authorization": {"ref": owner_ref, "valid_until": int(time.time()) + 3600},
        },
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert r.status_code == 201, r.text
    issued = r.json()["attestation"]
    headers = {"Authorization": f"Bearer {api_key}", "VIN-Attestation": issued}
    assert (await lookup(a, vin, headers)).status_code == 200
    assert (await api.client.get("/v1/me/export", headers=a.auth)).status_code == 200

    redis_dump = await dump_redis(api.state.redis)
    tokens = [a.token, b.token, api_key, *[t for t in attestations if t]]
    secrets_by_kind = {
        "a clear VIN": list(VINS.values()),
        "an email": [a.email, b.email],
        "a full client IP": [api.ip],
        "a raw token": tokens,
        "an owner authorization reference": [owner_ref],
        "account ids": [a.id, b.id],
    }
    return secrets_by_kind, tokens, redis_dump
