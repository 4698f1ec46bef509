"""Grants: to a workshop by its code, or pending until a one-time code is redeemed; revocation,
listings and statuses."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Account, Api, serving, settings_for
from tests.grants.conftest import (
    PURPOSES,
    Serve,
    grant,
    in_days,
    problem,
    vehicle,
    workshop_code,
)

WORKSHOP_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
ONE_TIME_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}")


def sloppy(code: str) -> str:
    """How a person may type a code: lower case, spaces instead of the hyphen, O for 0, l for 1."""
    return " " + code.replace("-", " ").replace("0", "O").replace("1", "l").lower() + " "


async def redeem(api: Api, account: Account, code: str, **kw: Any) -> httpx.Response:
    return await api.client.post(
        "/v1/grant-codes/redeem", json={"code": code}, headers=account.auth, **kw
    )


async def test_workshop_code_on_me_and_registration(api: Api) -> None:
    a, b = await api.register(), await api.register()
    code_a, code_b = await workshop_code(api, a), await workshop_code(api, b)
    assert WORKSHOP_CODE.fullmatch(code_a) and WORKSHOP_CODE.fullmatch(code_b)
    assert code_a != code_b


async def test_grant_by_workshop_code(api: Api) -> None:
    owner = await api.register(company="Owner")
    shop = await api.register(company="Garage Ltd")
    vid = await vehicle(api, owner, label="car")
    code = await workshop_code(api, shop)
    created = await grant(api, owner, vid, workshop_code=sloppy(code), max_uses=5)
    assert set(created) == {"grant", "code", "code_expires_at", "qr_svg"}
    assert created["code"] is None and created["qr_svg"] is None
    g = created["grant"]
    assert re.fullmatch(r"grt_[0-9a-f]{20}", g["id"])
    assert g["status"] == "active" and g["purposes"] == PURPOSES and g["max_uses"] == 5
    assert g["uses"] == 0
    assert g["vehicle"] == {"id": vid, "label": "car"}
    assert g["grantee"] == {"workshop_code": code, "company": "Garage Ltd"}
    assert g["owner"] is None

    received = (await api.client.get("/v1/grants", headers=shop.auth)).json()
    assert received["given"] == []
    [seen] = received["received"]
    assert seen["id"] == g["id"] and seen["status"] == "active"
    assert seen["vehicle"] is None  # the grantee does not see the owner's vehicle list
    assert seen["owner"] == {"workshop_code": await workshop_code(api, owner), "company": "Owner"}
    given = (await api.client.get("/v1/grants", headers=owner.auth)).json()
    assert [x["id"] for x in given["given"]] == [g["id"]] and given["received"] == []


async def test_grant_refusals(api: Api) -> None:
    owner, shop, stranger = await api.register(), await api.register(), await api.register()
    vid = await vehicle(api, owner)
    code = await workshop_code(api, shop)

    async def post(**body: Any) -> httpx.Response:
        return await api.client.post(
            "/v1/grants",
            json={"vehicle_id": vid, "valid_until": in_days(10), **body},
            headers=owner.auth,
        )

    problem(await post(workshop_code="ZZZZ-ZZZZ"), 404, "workshop_unknown")
    problem(await post(workshop_code="not a code"), 404, "workshop_unknown")
    problem(await post(workshop_code=await workshop_code(api, owner)), 422, "grant_to_self")
    for valid_until, why in ((in_days(-1), "in_the_past"), (in_days(366), "too_far")):
        body = problem(
            await post(valid_until=valid_until, workshop_code=code), 422, "invalid_request"
        )
        assert body["errors"] == [
            {"field": "valid_until", "code": why, "message": body["errors"][0]["message"]}
        ]
    body = problem(await post(valid_until="2030-01-01T00:00:00"), 422, "invalid_request")
    assert body["errors"][0]["field"] == "valid_until"  # a time without its offset
    for bad in ({"purposes": []}, {"purposes": ["joyride"]}, {"max_uses": 0}, {"max_uses": 10_001}):
        problem(await post(**bad), 422, "invalid_request")
    r = await api.client.post(
        "/v1/grants",
        json={"vehicle_id": vid, "valid_until": in_days(10), "workshop_code": code},
        headers=stranger.auth,
    )
    problem(r, 404, "not_found")  # someone else's vehicle
    assert (await api.client.get("/v1/grants", headers=owner.auth)).json()["given"] == []


async def test_grant_by_one_time_code(api: Api) -> None:
    owner, shop, other = await api.register(), await api.register(), await api.register()
    vid = await vehicle(api, owner)
    created = await grant(api, owner, vid, purposes=["maintenance"])
    g = created["grant"]
    assert g["status"] == "pending" and g["grantee"] is None and g["purposes"] == ["maintenance"]
    assert ONE_TIME_CODE.fullmatch(created["code"])
    assert created["qr_svg"].startswith("<svg") and created["code"] not in created["qr_svg"]
    assert created["code_expires_at"]

    # the owner cannot redeem its own grant, and trying does not use the code up
    problem(await redeem(api, owner, created["code"]), 422, "grant_to_self")
    r = await redeem(api, shop, sloppy(created["code"]))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == g["id"] and out["status"] == "active"
    assert out["owner"]["workshop_code"] == await workshop_code(api, owner)
    assert out["vehicle"] is None
    assert out["redeemed_at"] is not None
    # single use: the same code, by anyone, is invalid now
    problem(await redeem(api, shop, created["code"]), 404, "grant_code_invalid")
    problem(await redeem(api, other, created["code"]), 404, "grant_code_invalid")
    problem(
        await api.client.post(f"/v1/grants/{g['id']}/code", headers=owner.auth),
        409,
        "grant_not_pending",
    )

    [given] = (await api.client.get("/v1/grants", headers=owner.auth)).json()["given"]
    assert given["status"] == "active"
    assert given["grantee"]["workshop_code"] == await workshop_code(api, shop)


async def test_a_new_code_replaces_the_old_one(api: Api) -> None:
    owner, shop, other = await api.register(), await api.register(), await api.register()
    vid = await vehicle(api, owner)
    first = await grant(api, owner, vid)
    gid = first["grant"]["id"]
    problem(await api.client.post(f"/v1/grants/{gid}/code", headers=other.auth), 404, "not_found")
    r = await api.client.post(f"/v1/grants/{gid}/code", headers=owner.auth)
    assert r.status_code == 200, r.text
    second = r.json()
    assert ONE_TIME_CODE.fullmatch(second["code"]) and second["code"] != first["code"]
    assert second["qr_svg"].startswith("<svg") and second["grant"]["status"] == "pending"
    problem(await redeem(api, shop, first["code"]), 404, "grant_code_invalid")
    assert (await redeem(api, shop, second["code"])).status_code == 200


async def test_codes_expire(serve: Serve) -> None:
    async with serve(grant_code_ttl_s=60) as api:
        owner, shop = await api.register(), await api.register()
        vid = await vehicle(api, owner)
        created = await grant(api, owner, vid)
        service = api.state.grant_service
        service.clock = lambda: time.time() + 61  # a minute later, without sleeping
        problem(await redeem(api, shop, created["code"]), 404, "grant_code_invalid")
        service.clock = time.time
        # a fresh code lives its TTL again
        r = await api.client.post(f"/v1/grants/{created['grant']['id']}/code", headers=owner.auth)
        assert (await redeem(api, shop, r.json()["code"])).status_code == 200


async def test_wrong_codes_are_throttled_per_account_and_network(serve: Serve) -> None:
    async with serve(grant_code_max_failures=3, grant_code_window_s=600) as api:
        owner, guesser, neighbour = [await api.register() for _ in range(3)]
        vid = await vehicle(api, owner)
        created = await grant(api, owner, vid)
        for guess in ("AAAAA-AAAAA", "BBBBB-BBBBB", "not even a code"):
            problem(await redeem(api, guesser, guess), 404, "grant_code_invalid")
        # the budget is spent: even the right code is refused, without being looked at
        r = await redeem(api, guesser, created["code"])
        body = problem(r, 429, "grant_code_throttled")
        assert body["policy"] == "grant_code"
        assert 1 <= int(r.headers["Retry-After"]) <= 600
        # another account on the same network (/24) is refused too: the network's budget is spent
        problem(await redeem(api, neighbour, created["code"]), 429, "grant_code_throttled")
        # from another network the guesser's own budget still refuses it
        far = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app, client=("203.0.113.9", 40000)),
            base_url="http://gw.test",
        )
        async with far:
            r = await far.post(
                "/v1/grant-codes/redeem", json={"code": created["code"]}, headers=guesser.auth
            )
            problem(r, 429, "grant_code_throttled")
            # and a fresh account there redeems it: the code was not used up by the refusals
            r = await far.post(
                "/v1/grant-codes/redeem", json={"code": created["code"]}, headers=neighbour.auth
            )
            assert r.status_code == 200, r.text
        # Redis holds pseudonyms: no account id, no address
        keys = [
            k.decode() if isinstance(k, bytes) else k async for k in api.state.redis.scan_iter()
        ]
        grc = [k for k in keys if k.startswith("vl:{grc:")]
        assert len(grc) >= 3
        for k in grc:
            assert guesser.id not in k and neighbour.id not in k and api.ip not in k
            assert api.ip.rsplit(".", 1)[0] not in k


async def test_successful_redemptions_do_not_use_the_budget(serve: Serve) -> None:
    async with serve(grant_code_max_failures=2) as api:
        owner, shop = await api.register(), await api.register()
        vid = await vehicle(api, owner)
        for _ in range(3):
            created = await grant(api, owner, vid)
            assert (await redeem(api, shop, created["code"])).status_code == 200
        problem(await redeem(api, shop, "AAAAA-AAAAA"), 404, "grant_code_invalid")


async def test_revoke(api: Api) -> None:
    owner, shop, other = await api.register(), await api.register(), await api.register()
    vid = await vehicle(api, owner)
    g = (await grant(api, owner, vid, workshop_code=await workshop_code(api, shop)))["grant"]
    cache = api.state.grants
    before = await cache.grant(g["id"])
    assert before is not None and not before.revoked and before.grantee_id == shop.id

    problem(
        await api.client.post(f"/v1/grants/{g['id']}/revoke", headers=shop.auth), 404, "not_found"
    )
    problem(
        await api.client.post(f"/v1/grants/{g['id']}/revoke", headers=other.auth), 404, "not_found"
    )
    r = await api.client.post(f"/v1/grants/{g['id']}/revoke", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "revoked" and r.json()["revoked_at"] is not None
    after = await cache.grant(g["id"])  # the cached entry was dropped: revoked at once
    assert after is not None and after.revoked
    again = await api.client.post(f"/v1/grants/{g['id']}/revoke", headers=owner.auth)
    assert again.json()["revoked_at"] == r.json()["revoked_at"]  # idempotent
    [seen] = (await api.client.get("/v1/grants", headers=shop.auth)).json()["received"]
    assert seen["status"] == "revoked"

    # a pending grant's code dies with it
    pending = await grant(api, owner, vid)
    await api.client.post(f"/v1/grants/{pending['grant']['id']}/revoke", headers=owner.auth)
    problem(await redeem(api, shop, pending["code"]), 404, "grant_code_invalid")
    problem(
        await api.client.post(f"/v1/grants/{pending['grant']['id']}/code", headers=owner.auth),
        409,
        "grant_not_pending",
    )


async def test_statuses(api: Api) -> None:
    owner, shop = await api.register(), await api.register()
    vid = await vehicle(api, owner)
    code = await workshop_code(api, shop)
    soon = (await grant(api, owner, vid, workshop_code=code, valid_until=in_days(1)))["grant"]
    later = (await grant(api, owner, vid, workshop_code=code, valid_until=in_days(3)))["grant"]
    pending = (await grant(api, owner, vid, valid_until=in_days(3)))["grant"]
    service = api.state.grant_service
    service.clock = lambda: time.time() + 2 * 86_400
    try:
        given = (await api.client.get("/v1/grants", headers=owner.auth)).json()["given"]
    finally:
        service.clock = time.time
    status = {g["id"]: g["status"] for g in given}
    assert status == {soon["id"]: "expired", later["id"]: "active", pending["id"]: "pending"}


async def test_the_cache_follows_the_authenticators_invalidations(api: Api) -> None:
    owner, shop = await api.register(), await api.register()
    vid = await vehicle(api, owner)
    g = (await grant(api, owner, vid, workshop_code=await workshop_code(api, shop)))["grant"]
    cache = api.state.grants
    assert await cache.grant("grt_" + "0" * 20) is None
    assert await cache.grant("not-a-grant") is None
    assert await cache.grant(g["id"]) is not None
    assert cache.sizes() == {"grants": 1, "negative": 1}  # an ill-formed id is not even cached
    api.state.auth.forget(owner.id)  # either party drops it
    assert cache.sizes()["grants"] == 0
    await cache.grant(g["id"])
    api.state.auth.forget(shop.id)
    assert cache.sizes()["grants"] == 0
    await cache.grant(g["id"])
    api.state.auth.clear()
    assert cache.sizes() == {"grants": 0, "negative": 0}


async def test_revocation_reaches_another_worker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two apps on one Redis and one database: a grant cached by the second is seen revoked
    there within a second of its revocation through the first (pub/sub, not the TTL)."""
    settings = settings_for("services", request, tmp_path)
    async with serving(settings, "services") as one, serving(settings, "services") as two:
        owner, shop = await one.register(), await one.register()
        vid = await vehicle(one, owner)
        g = (await grant(one, owner, vid, workshop_code=await workshop_code(one, shop)))["grant"]
        cached = await two.state.grants.grant(g["id"])
        assert cached is not None and not cached.revoked
        for _ in range(50):  # the second app's subscription is up before the change
            if two.state.auth.live:
                break
            await asyncio.sleep(0.05)
        r = await one.client.post(f"/v1/grants/{g['id']}/revoke", headers=owner.auth)
        assert r.status_code == 200
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            state = await two.state.grants.grant(g["id"])
            if state is not None and state.revoked:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the other worker still serves the grant as not revoked")
