"""Data-subject rights and admin views of the search log through the HTTP API, on embedded
defaults, on Redis + PostgreSQL and on a Redis Cluster + PostgreSQL, with events deliberately
still queued when asked."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts.repository import AccountRepository
from tests.gateway.conftest import PASSWORD, Account, Api, serving, settings_for

VIN = "1HGCM82633A004352"


def queue_holding(mode: str) -> dict[str, Any]:
    """Settings under which recorded events stay queued until something flushes them."""
    if mode == "embedded":
        return {"searchlog_flush_interval_s": 3600, "searchlog_purge_interval_s": 0}
    return {
        "searchlog_consumer": False,
        "searchlog_ship_interval_ms": 3_600_000,
        "searchlog_purge_interval_s": 0,
    }


@pytest.fixture(params=["embedded", "services", "cluster"])
async def gw(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The gateway on embedded defaults, on Redis + PostgreSQL, and on a 3-master Redis
    Cluster + PostgreSQL (the queue's shards on different masters)."""
    mode = request.param
    overrides = queue_holding(mode)
    if mode != "embedded":
        overrides["log_database_url"] = request.getfixturevalue("fresh_postgres")()
        overrides["searchlog_stream"] = f"vingw:test:searchlog:{secrets.token_hex(4)}"
    async with serving(settings_for(mode, request, tmp_path, **overrides), mode) as api:
        yield api


async def admin(api: Api) -> dict[str, str]:
    email = f"admin-{secrets.token_hex(4)}@example.com"
    await api.state.accounts.create_admin(email, PASSWORD)
    return {"Authorization": f"Bearer {await api.login(email)}"}


async def lookups(api: Api, acct: Account, n: int) -> None:
    for _ in range(n):
        assert (await api.lookup(acct, VIN)).status_code == 200


async def test_export_and_erasure_include_queued_events(gw: Api) -> None:
    a, b = await gw.workshop(), await gw.workshop()
    await lookups(gw, a, 3)
    r = await gw.client.post("/v1/lookups", json={"vin": VIN}, headers=a.auth)  # no attestation
    assert r.status_code == 403
    await lookups(gw, b, 2)
    assert gw.state.searchlog.pending == 6  # nothing written yet

    export = (await gw.client.get("/v1/me/export", headers=a.auth)).json()
    rows = export["search_log"]
    assert len(rows) == 4
    assert sorted(r["outcome"] for r in rows) in (["ok", "ok", "ok", "refused"],)
    assert {r["code"] for r in rows if r["outcome"] == "refused"} == {"attestation_missing"}
    ok = next(r for r in rows if r["outcome"] == "ok")
    assert ok["make"] == "Honda" and ok["wmi"] == "1HG" and ok["country_code"] == "US"
    assert ok["basis"] == "owner" and ok["purpose"] == "parts_inquiry"
    assert ok["client_ip"] == ".".join(gw.ip.split(".")[:3]) + ".0/24"
    assert VIN not in str(export["search_log"])

    await lookups(gw, a, 1)  # queued again when the account is cancelled
    assert gw.state.searchlog.pending == 1
    assert (await gw.client.delete("/v1/me", headers=a.auth)).status_code == 204
    assert await gw.state.searchlog.rows_for_account(a.id) == []
    assert len(await gw.state.searchlog.rows_for_account(b.id)) == 2


async def test_disclosure_is_audited_and_legal_hold_survives_erasure(gw: Api) -> None:
    boss = await admin(gw)
    suspect = await gw.workshop()
    await lookups(gw, suspect, 2)
    reason = {"reason": "misuse case 2026-117: scraping report"}

    r = await gw.client.post(
        f"/v1/admin/accounts/{suspect.id}/disclosure", json=reason, headers=boss
    )
    assert r.status_code == 200, r.text
    disclosed = r.json()
    assert len(disclosed["rows"]) == 2
    assert {row["basis"] for row in disclosed["rows"]} == {"owner"}
    assert all(row["jti_digest"] for row in disclosed["rows"])

    r = await gw.client.post(
        f"/v1/admin/accounts/{suspect.id}/legal-hold", json=reason, headers=boss
    )
    assert r.status_code == 200, r.text
    assert r.json()["held"] is True
    async with gw.state.accounts_db.session() as session:
        trail = await AccountRepository(session).audit_trail(suspect.id)
    assert [(t.action, t.reason) for t in trail] == [
        ("disclosure", reason["reason"]),
        ("legal_hold", reason["reason"]),
    ]

    # the suspect cancels the account: the account goes, the held rows stay (until release)
    assert (await gw.client.delete("/v1/me", headers=suspect.auth)).status_code == 204
    assert len(await gw.state.searchlog.rows_for_account(suspect.id)) == 2
    r = await gw.client.post(
        f"/v1/admin/accounts/{suspect.id}/legal-hold/release", json=reason, headers=boss
    )
    assert r.status_code == 200 and r.json()["held"] is False
    await gw.state.searchlog.erase_account(suspect.id)
    assert await gw.state.searchlog.rows_for_account(suspect.id) == []


async def test_search_stats_from_the_log_store(gw: Api) -> None:
    boss = await admin(gw)
    acct = await gw.workshop()
    await lookups(gw, acct, 3)
    r = await gw.client.post(
        "/v1/lookups", json={"vin": VIN[:-1] + "X"}, headers=gw.attest(acct, VIN)
    )
    assert r.status_code in (403, 422)
    refused_code = r.json()["code"]
    r = await gw.client.get("/v1/admin/search-stats", params={"days": 2}, headers=boss)
    assert r.status_code == 200, r.text
    counts = r.json()["counts"]
    today = int(time.time()) // 86400 * 86400

    def count(dimension: str, value: Any) -> int:
        return sum(
            c["count"]
            for c in counts
            if c["dimension"] == dimension and c["value"] == value and c["day"] == today
        )

    assert count("make", "Honda") == 3
    assert count("model_year", 2003) == 3
    assert count("country_code", "US") == 3
    assert count("outcome", "ok") == 3
    assert count("code", None) == 3  # the answered lookups
    refused = [c for c in counts if c["dimension"] == "code" and c["value"] is not None]
    assert [(c["value"], c["count"], c["day"]) for c in refused] == [(refused_code, 1, today)]
    assert count("outcome", "refused") == 1
