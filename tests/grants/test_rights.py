"""Uses, export and erasure: what the owner sees of a grant's queries, what an export holds, and
that erasing either party leaves no grant and no link in the search log; the VIN appears in no
answer, log record, Redis key or database file."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from gateway.grants.models import OwnerGrant, Vehicle
from tests.gateway.conftest import Account, Api
from tests.grants.conftest import VIN, grant, problem, vehicle, workshop_code


async def granted_lookup(api: Api, shop: Account, grant_id: str, vin: str = VIN) -> Any:
    headers = api.attest(shop, vin, basis="owner_granted", grant_id=grant_id)
    return await api.client.post("/v1/lookups", json={"vin": vin}, headers=headers)


async def grant_rows(api: Api) -> tuple[int, int]:
    async with api.state.accounts_db.session() as session:
        grants = (await session.exec(select(OwnerGrant))).all()
        vehicles = (await session.exec(select(Vehicle))).all()
    return len(grants), len(vehicles)


async def linked_rows(api: Api) -> int:
    """Search-log rows still linked to a grant (after the queue is flushed). The PostgreSQL
    databases are the test session's: tests compare counts before and after."""
    await api.state.searchlog.flush()
    async with api.state.searchlog_db.engine.connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM search_event WHERE grant_pseudonym IS NOT NULL")
        )
        return int(found.scalar_one())


async def setup(api: Api) -> tuple[Account, Account, str, dict[str, Any]]:
    owner, shop = await api.register(company="Owner"), await api.workshop()
    vid = await vehicle(api, owner)
    g = (await grant(api, owner, vid, workshop_code=await workshop_code(api, shop), max_uses=2))[
        "grant"
    ]
    return owner, shop, vid, g


async def test_uses_are_counted_and_listed_for_the_owner(api: Api) -> None:
    owner, shop, _vid, g = await setup(api)
    r = await granted_lookup(api, shop, g["id"])
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/grants/{g['id']}/uses", headers=owner.auth)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["grant"]["uses"] == 1 and out["grant"]["status"] == "active"
    [use] = out["uses"]
    assert use["endpoint"] == "lookup" and use["outcome"] in {"ok", "miss"}
    assert use["purpose"] == "parts_inquiry" and use["code"] is None
    problem(await api.client.get(f"/v1/grants/{g['id']}/uses", headers=shop.auth), 404, "not_found")

    assert (await granted_lookup(api, shop, g["id"])).status_code == 200
    [seen] = (await api.client.get("/v1/grants", headers=shop.auth)).json()["received"]
    assert seen["uses"] == 2 and seen["status"] == "exhausted"
    assert (
        len((await api.client.get(f"/v1/grants/{g['id']}/uses", headers=owner.auth)).json()["uses"])
        == 2
    )


async def test_export_holds_vehicles_and_grants(api: Api) -> None:
    owner, shop, vid, g = await setup(api)
    pending = (await grant(api, owner, vid))["grant"]
    mine = (await api.client.get("/v1/me/export", headers=owner.auth)).json()
    assert mine["vehicles"] == [
        {"id": vid, "label": "family car", "created_at": mine["vehicles"][0]["created_at"]}
    ]
    assert {x["id"] for x in mine["grants"]["given"]} == {g["id"], pending["id"]}
    assert mine["grants"]["received"] == []
    assert mine["account"]["workshop_code"]
    theirs = (await api.client.get("/v1/me/export", headers=shop.auth)).json()
    assert theirs["vehicles"] == [] and theirs["grants"]["given"] == []
    [held] = theirs["grants"]["received"]
    assert held["id"] == g["id"] and held["vehicle"] is None
    assert held["owner"]["company"] == "Owner"


@pytest.mark.parametrize("erased", ["owner", "grantee"])
async def test_erasure_leaves_no_grant_and_no_link(api: Api, erased: str) -> None:
    base = await linked_rows(api)
    grants_before = await grant_rows(api)
    owner, shop, _vid, g = await setup(api)
    assert (await granted_lookup(api, shop, g["id"])).status_code == 200
    assert await linked_rows(api) == base + 1
    await grant(api, owner, _vid)  # a pending one too
    cache = api.state.grants
    assert await cache.grant(g["id"]) is not None
    gone = owner if erased == "owner" else shop
    assert (await api.client.delete("/v1/me", headers=gone.auth)).status_code == 204
    left = (0, 0) if erased == "owner" else (1, 1)  # the pending grant and its vehicle
    assert await grant_rows(api) == (grants_before[0] + left[0], grants_before[1] + left[1])
    assert await linked_rows(api) == base
    assert await cache.grant(g["id"]) is None  # dropped from the cache at once
    if erased == "owner":
        assert (await api.client.get("/v1/grants", headers=shop.auth)).json()["received"] == []
        assert (await granted_lookup(api, shop, g["id"])).json()["code"] == "grant_unknown"
    else:
        given = (await api.client.get("/v1/grants", headers=owner.auth)).json()["given"]
        assert [x["status"] for x in given] == ["pending"]


async def test_deleting_a_vehicle_unlinks_its_grants(api: Api) -> None:
    base, grants_before = await linked_rows(api), await grant_rows(api)
    owner, shop, vid, g = await setup(api)
    assert (await granted_lookup(api, shop, g["id"])).status_code == 200
    assert await linked_rows(api) == base + 1
    assert (await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)).status_code == 204
    assert await grant_rows(api) == grants_before
    assert await linked_rows(api) == base
    assert (await granted_lookup(api, shop, g["id"])).json()["code"] == "grant_unknown"


async def test_the_vin_appears_nowhere(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    owner, shop = await api.register(), await api.workshop()
    r = await api.client.post("/v1/vehicles", json={"vin": VIN.lower()}, headers=owner.auth)
    answers.append(r.text)
    vid = r.json()["id"]
    answers.append(
        (await api.client.post("/v1/vehicles", json={"vin": VIN}, headers=owner.auth)).text
    )
    created = await grant(api, owner, vid)
    r = await api.client.post(
        "/v1/grant-codes/redeem", json={"code": created["code"]}, headers=shop.auth
    )
    answers.append(r.text)
    gid = created["grant"]["id"]
    answers.append((await granted_lookup(api, shop, gid)).text)
    for path in ("/v1/vehicles", "/v1/grants", f"/v1/grants/{gid}/uses", "/v1/me/export"):
        answers.append((await api.client.get(path, headers=owner.auth)).text)
    answers.append((await api.client.get("/v1/me/export", headers=shop.auth)).text)
    answers.append((await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)).text)
    for i, answer in enumerate(answers):
        if i == 3:  # the lookup's own answer: the decoded vehicle is what the workshop asked for
            continue
        assert VIN not in answer.upper(), answer
    assert VIN not in caplog.text.upper()
    for record in caplog.records:
        assert VIN not in str(record.args).upper()
    keys = [k.decode() if isinstance(k, bytes) else k async for k in api.state.redis.scan_iter()]
    assert keys and not [k for k in keys if VIN in k.upper()]
    if api.mode == "embedded":  # the accounts database file holds no trace of it either
        from pathlib import Path

        from sqlalchemy.engine import make_url

        db = Path(str(make_url(api.state.settings.accounts_url).database))
        for path in (db, db.with_name(db.name + "-wal")):
            if path.exists():
                assert VIN.encode() not in path.read_bytes().upper()
