"""What the review of the grants asked for: invalidations without grant ids, counters deleted
with their grants, a declaration budget, one expiry rule, ASCII-only codes, the limits of codes,
vehicles and grants."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlmodel import select

from gateway.accounts.codes import WORKSHOP_CODE_LENGTH, new_workshop_code, normalize
from gateway.accounts.models import Account as AccountRow
from gateway.grants.models import Vehicle, grant_expired
from tests.gateway.conftest import Account, Api, serving, settings_for
from tests.gateway.test_redis_faults import OwnRedis, settings_on
from tests.grants.conftest import (
    OTHER_VIN,
    VIN,
    Serve,
    grant,
    in_days,
    problem,
    vehicle,
    workshop_code,
)
from tests.grants.test_rights import granted_lookup
from vin.checkdigit import compute_check_digit


def vins(n: int) -> list[str]:
    """``n`` valid, distinct VINs (serial numbers with their check digit)."""
    found = []
    for serial in range(n):
        body = f"1HGCM82603A{serial:06d}"
        digit = compute_check_digit(body)
        assert digit is not None
        found.append(body[:8] + digit + body[9:])
    return found


async def redeem(api: Api, account: Account, code: str) -> httpx.Response:
    return await api.client.post(
        "/v1/grant-codes/redeem", json={"code": code}, headers=account.auth
    )


async def counters_of(api: Api, account: Account) -> list[str]:
    """The grant use counters in the account's slot."""
    pattern = "vl:{" + account.id + "}:grant:*"
    return [
        k.decode() if isinstance(k, bytes) else k async for k in api.state.redis.scan_iter(pattern)
    ]


# --- invalidations name accounts only ---------------------------------------------------------


async def test_invalidations_carry_no_grant_id_and_no_vin(api: Api) -> None:
    """Every message a grant change publishes names an account and nothing else: no grant id
    (not as the message's key either), no VIN, no code."""
    assert api.state.invalidations is not None
    pubsub = api.state.redis.pubsub()
    await pubsub.subscribe(api.state.invalidations.channel)
    seen: list[bytes] = []

    async def drain() -> None:
        quiet_until = time.monotonic() + 0.3
        while time.monotonic() < quiet_until:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message is not None:
                seen.append(bytes(message["data"]))
                quiet_until = time.monotonic() + 0.3

    try:
        owner, shop = await api.register(), await api.workshop()
        vid = await vehicle(api, owner)
        active = (await grant(api, owner, vid, workshop_code=await workshop_code(api, shop)))[
            "grant"
        ]
        assert (await granted_lookup(api, shop, active["id"])).status_code == 200
        pending = await grant(api, owner, vid)
        assert (await redeem(api, shop, pending["code"])).status_code == 200
        r = await api.client.post(f"/v1/grants/{active['id']}/revoke", headers=owner.auth)
        assert r.status_code == 200
        assert (await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)).status_code
        second = await vehicle(api, owner, OTHER_VIN)
        await grant(api, owner, second, workshop_code=await workshop_code(api, shop))
        assert (await api.client.delete("/v1/me", headers=owner.auth)).status_code == 204
        await drain()
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
    assert len(seen) >= 5, seen  # redemption, revocation, deletion, erasure were all published
    secrets_ = [active["id"], pending["grant"]["id"], VIN, OTHER_VIN, pending["code"]]
    for data in seen:
        assert not [s for s in secrets_ if s.encode() in data.upper() or s.encode() in data], data
        assert b"grt_" not in data, data
        message = orjson.loads(data)
        assert message["key"] is None, message
        assert message["reason"] in {"account_updated", "account_deleted"}, message
        assert message["account"] in {owner.id, shop.id}, message


# --- use counters go with their grants --------------------------------------------------------


@pytest.mark.parametrize("how", ["vehicle", "owner"])
async def test_use_counters_go_with_their_grants(api: Api, how: str) -> None:
    owner, shop = await api.register(), await api.workshop()
    vid = await vehicle(api, owner)
    gid = (await grant(api, owner, vid, workshop_code=await workshop_code(api, shop)))["grant"][
        "id"
    ]
    assert (await granted_lookup(api, shop, gid)).status_code == 200
    assert len(await counters_of(api, shop)) == 1
    if how == "vehicle":
        r = await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)
    else:
        r = await api.client.delete("/v1/me", headers=owner.auth)
    assert r.status_code == 204
    assert await counters_of(api, shop) == []


# --- declarations per day ---------------------------------------------------------------------


async def test_declarations_are_counted_per_day(serve: Serve) -> None:
    async with serve(grant_max_declarations_per_day=3) as api:
        owner, other = await api.register(), await api.register()
        first = await vehicle(api, owner, VIN)
        # refused declarations do not count: a duplicate, an invalid VIN
        problem(
            await api.client.post("/v1/vehicles", json={"vin": VIN}, headers=owner.auth),
            409,
            "vehicle_exists",
        )
        problem(
            await api.client.post("/v1/vehicles", json={"vin": VIN[:-1] + "X"}, headers=owner.auth),
            422,
            "invalid_vin",
        )
        # deleting and declaring again is a declaration
        assert (
            await api.client.delete(f"/v1/vehicles/{first}", headers=owner.auth)
        ).status_code == 204
        await vehicle(api, owner, VIN)
        await vehicle(api, owner, OTHER_VIN)
        r = await api.client.post("/v1/vehicles", json={"vin": vins(1)[0]}, headers=owner.auth)
        body = problem(r, 429, "vehicle_declarations_throttled")
        assert body["policy"] == "vehicle_declarations" and body["max_declarations"] == 3
        assert 1 <= int(r.headers["Retry-After"]) <= 86_400
        assert VIN not in r.text
        await vehicle(api, other, VIN)  # per account
        keys = [
            k.decode() if isinstance(k, bytes) else k async for k in api.state.redis.scan_iter()
        ]
        assert "vl:{" + owner.id + "}:decl" in keys
        assert (await api.client.delete("/v1/me", headers=owner.auth)).status_code == 204
        keys = [
            k.decode() if isinstance(k, bytes) else k async for k in api.state.redis.scan_iter()
        ]
        assert "vl:{" + owner.id + "}:decl" not in keys  # erasure deletes it


# --- one expiry rule --------------------------------------------------------------------------


async def test_a_grant_is_valid_through_its_last_second(api: Api) -> None:
    assert not grant_expired(100, 100) and grant_expired(100, 101)
    owner, shop = await api.register(), await api.register()
    vid = await vehicle(api, owner)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    g = (
        await grant(
            api,
            owner,
            vid,
            workshop_code=await workshop_code(api, shop),
            valid_until=end.isoformat(),
        )
    )["grant"]
    service = api.state.grant_service
    statuses = {}
    try:
        for offset in (0, 1):
            service.clock = lambda offset=offset: end.timestamp() + offset  # type: ignore[misc]
            [seen] = (await api.client.get("/v1/grants", headers=shop.auth)).json()["received"]
            statuses[offset] = seen["status"]
    finally:
        service.clock = time.time
    assert statuses == {0: "active", 1: "expired"}
    state = await api.state.grants.grant(g["id"])
    assert state is not None and state.valid_until == int(end.timestamp())


# --- codes are ASCII --------------------------------------------------------------------------


def test_codes_are_read_as_ascii_only() -> None:
    assert normalize("abcd-efgh", WORKSHOP_CODE_LENGTH) == "ABCDEFGH"
    assert normalize("OIL0 1234", WORKSHOP_CODE_LENGTH) == "01101234"
    for text in ("ſſſſ-ſſſſ", "ABCD-EFﬀ", "ABCD-EFGı", "ABCD-EFG\u0130", "ＡＢＣＤ-ＥＦＧＨ"):
        assert normalize(text, WORKSHOP_CODE_LENGTH) is None, text


async def test_a_unicode_look_alike_is_no_workshop_code(api: Api) -> None:
    owner, shop = await api.register(), await api.register()
    vid = await vehicle(api, owner)
    code = "S" + new_workshop_code()[1:]  # a code with an S, which 'ſ' upper-cases to
    async with api.state.accounts_db.session() as session:
        row = (await session.exec(select(AccountRow).where(AccountRow.id == shop.id))).one()
        row.workshop_code = code
        session.add(row)
        await session.commit()
    api.state.auth.forget(shop.id)
    r = await api.client.post(
        "/v1/grants",
        json={"vehicle_id": vid, "valid_until": in_days(5), "workshop_code": "ſ" + code[1:]},
        headers=owner.auth,
    )
    problem(r, 404, "workshop_unknown")
    await grant(api, owner, vid, workshop_code=code.lower())  # the ASCII spelling works


# --- codes of ended grants, live grants per vehicle, the vehicle limit under concurrency ------


async def test_an_expired_pending_grant_has_no_code(api: Api) -> None:
    owner, shop = await api.register(), await api.register()
    vid = await vehicle(api, owner)
    soon = await grant(api, owner, vid, valid_until=in_days(5 / 1440))  # 5 minutes
    later = await grant(api, owner, vid, valid_until=in_days(1))
    service = api.state.grant_service
    service.clock = lambda: time.time() + 360  # 6 minutes on: the codes live 10
    try:
        problem(
            await api.client.post(f"/v1/grants/{soon['grant']['id']}/code", headers=owner.auth),
            409,
            "grant_not_pending",
        )
        problem(await redeem(api, shop, soon["code"]), 404, "grant_code_invalid")
        assert (await redeem(api, shop, later["code"])).status_code == 200
    finally:
        service.clock = time.time


async def test_live_grants_per_vehicle_are_capped(serve: Serve) -> None:
    async with serve(grant_max_live_per_vehicle=2) as api:
        owner = await api.register()
        vid = await vehicle(api, owner)
        first = (await grant(api, owner, vid))["grant"]
        await grant(api, owner, vid)
        r = await api.client.post(
            "/v1/grants", json={"vehicle_id": vid, "valid_until": in_days(3)}, headers=owner.auth
        )
        body = problem(r, 409, "vehicle_grant_limit_reached")
        assert body["max_live_grants"] == 2
        await api.client.post(f"/v1/grants/{first['id']}/revoke", headers=owner.auth)
        await grant(api, owner, vid)  # a revoked grant is not live
        other = await vehicle(api, owner, OTHER_VIN)
        await grant(api, owner, other)  # per vehicle


async def test_the_vehicle_limit_holds_under_concurrent_declarations(serve: Serve) -> None:
    async with serve(grant_max_vehicles=2) as api:
        owner = await api.register()

        async def declare(vin: str) -> int:
            r = await api.client.post("/v1/vehicles", json={"vin": vin}, headers=owner.auth)
            return r.status_code

        statuses = await asyncio.gather(*(declare(v) for v in vins(8)))
        listed = (await api.client.get("/v1/vehicles", headers=owner.auth)).json()["vehicles"]
        assert sorted(statuses) == [201, 201] + [409] * 6, statuses
        assert len(listed) == 2


async def test_a_declaration_waits_for_the_owners_row_lock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL: the count and the insert run under the owner's account row lock, so a
    declaration in another worker (here: a transaction holding that lock) waits for it."""
    settings = settings_for("services", request, tmp_path)
    async with serving(settings, "services") as api:
        owner = await api.register()
        async with api.state.accounts_db.session() as session:
            # FOR SHARE: it blocks the declaration's FOR UPDATE, not the FOR KEY SHARE its
            # insert takes on the account row (the foreign key), so only the explicit lock waits
            await session.exec(
                select(AccountRow.id).where(AccountRow.id == owner.id).with_for_update(read=True)
            )
            declaring = asyncio.create_task(
                api.client.post("/v1/vehicles", json={"vin": VIN}, headers=owner.auth)
            )
            await asyncio.sleep(0.5)
            assert not declaring.done(), "the declaration did not wait for the row lock"
            await session.commit()
        r = await asyncio.wait_for(declaring, 5)
        assert r.status_code == 201, r.text


@pytest.mark.postgres
async def test_a_grant_waits_for_its_vehicles_row_lock(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL: the vehicle's live grants are counted and the new one inserted under the
    vehicle's row lock, so a grant made in another worker (here: a transaction holding a
    conflicting lock on that row) waits for it."""
    settings = settings_for("services", request, tmp_path)
    async with serving(settings, "services") as api:
        owner, shop = await api.register(), await api.register()
        vid = await vehicle(api, owner)
        body = {"vehicle_id": vid, "valid_until": in_days(30)}
        async with api.state.accounts_db.session() as session:
            # FOR SHARE blocks the count's FOR NO KEY UPDATE, not the FOR KEY SHARE the insert
            # takes on the vehicle row (the foreign key): only the explicit lock waits
            await session.exec(
                select(Vehicle.id).where(Vehicle.id == vid).with_for_update(read=True)
            )
            granting = asyncio.create_task(
                api.client.post(
                    "/v1/grants",
                    json={**body, "workshop_code": await workshop_code(api, shop)},
                    headers=owner.auth,
                )
            )
            await asyncio.sleep(0.5)
            assert not granting.done(), "the grant did not wait for the vehicle's row lock"
            await session.commit()
        r = await asyncio.wait_for(granting, 5)
        assert r.status_code == 201, r.text


async def test_a_declaration_refused_by_the_vehicle_limit_gives_its_count_back(
    serve: Serve,
) -> None:
    """Counted before the insert, given back when refused: a refusal for the vehicle limit
    does not use up the day's declarations."""
    async with serve(grant_max_vehicles=1, grant_max_declarations_per_day=2) as api:
        owner = await api.register()
        first, second = vins(2)
        vid = await vehicle(api, owner, first)
        r = await api.client.post("/v1/vehicles", json={"vin": second}, headers=owner.auth)
        problem(r, 409, "vehicle_limit_reached")
        r = await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)
        assert r.status_code == 204, r.text
        await vehicle(api, owner, second)  # the second of two: the refusal was not counted
        r = await api.client.post("/v1/vehicles", json={"vin": first}, headers=owner.auth)
        problem(r, 429, "vehicle_declarations_throttled")  # a third is over the day's two


@pytest.mark.redis
@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_the_grant_throttles_follow_the_ip_limits_fail_open_setting(
    tmp_path: Path, fail_open: bool
) -> None:
    """With Redis frozen, the declaration and redemption throttles do what the per-IP limit and
    the login throttle do (``VINGW_LIMIT_IP_FAIL_OPEN``): let the request through, or refuse it
    503 ``limiter_unavailable``, each within one Redis timeout."""
    server = OwnRedis(tmp_path / "redis")
    try:
        settings = settings_on(tmp_path, server, limit_ip_fail_open=fail_open)
        async with serving(settings, "services") as api:
            owner = await api.register()
            server.freeze()
            try:
                declared = await api.client.post(
                    "/v1/vehicles", json={"vin": VIN}, headers=owner.auth
                )
                redeemed = await redeem(api, owner, "00000-00000")
            finally:
                server.thaw()
            if fail_open:
                assert declared.status_code == 201, declared.text
                problem(redeemed, 404, "grant_code_invalid")
            else:
                problem(declared, 503, "limiter_unavailable")
                problem(redeemed, 503, "limiter_unavailable")
    finally:
        server.stop()
