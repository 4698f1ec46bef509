"""Ended grants are purged ``grant_retention_s`` after their end (revocation or valid_until),
like a deletion: rows gone, search-log rows unlinked, use counters deleted, caches dropped. On
SQLite and PostgreSQL (the two configurations of ``api``), by call and by the maintenance task.

The PostgreSQL database is the test session's: assertions name this test's grants only."""

from __future__ import annotations

import asyncio
import time

from sqlmodel import col, select

from gateway.grants.models import OwnerGrant
from tests.gateway.conftest import Api
from tests.grants.conftest import Serve, grant, in_days, vehicle, workshop_code
from tests.grants.test_hardening import counters_of
from tests.grants.test_rights import granted_lookup, linked_rows

DAY = 86_400


async def stored(api: Api, ids: list[str]) -> set[str]:
    async with api.state.accounts_db.session() as session:
        found = await session.exec(select(OwnerGrant.id).where(col(OwnerGrant.id).in_(ids)))
        return set(found.all())


async def test_ended_grants_are_purged_after_the_retention(api: Api) -> None:
    settings = api.state.settings
    assert settings.grant_retention_days is None  # the default: the search log's ceiling
    retention = settings.grant_retention_s
    assert retention == (settings.searchlog_retention_days + settings.searchlog_grace_days) * DAY
    base = await linked_rows(api)
    owner, shop = await api.register(), await api.workshop()
    vid = await vehicle(api, owner)
    code = await workshop_code(api, shop)
    revoked = (await grant(api, owner, vid, workshop_code=code))["grant"]["id"]
    assert (await granted_lookup(api, shop, revoked)).status_code == 200
    assert await linked_rows(api) == base + 1 and len(await counters_of(api, shop)) == 1
    r = await api.client.post(f"/v1/grants/{revoked}/revoke", headers=owner.auth)
    assert r.status_code == 200
    short = (await grant(api, owner, vid, workshop_code=code, valid_until=in_days(0.5)))["grant"]
    pending = (await grant(api, owner, vid, valid_until=in_days(0.5)))["grant"]
    active = (await grant(api, owner, vid, workshop_code=code, valid_until=in_days(30)))["grant"]
    ids = [revoked, short["id"], pending["id"], active["id"]]
    assert await api.state.grants.grant(revoked) is not None  # cached

    service = api.state.grant_service
    now = time.time()
    await service.purge_ended(now=now + retention - DAY)  # nothing ended that long ago
    assert await stored(api, ids) == set(ids)
    # a day and a bit past the retention: the revoked one and those that ran out in half a
    # day are gone; the one valid for 30 days stays
    await service.purge_ended(now=now + retention + 1.5 * DAY)
    assert await stored(api, ids) == {active["id"]}
    assert await linked_rows(api) == base  # the revoked grant's use is unlinked
    assert await counters_of(api, shop) == []  # its counter went with it
    assert await api.state.grants.grant(revoked) is None  # every worker's cache dropped it
    given = (await api.client.get("/v1/grants", headers=owner.auth)).json()["given"]
    assert [g["id"] for g in given] == [active["id"]]
    await service.purge_ended(now=now + retention + 1.5 * DAY)  # idempotent
    assert await stored(api, ids) == {active["id"]}


async def test_the_maintenance_task_purges(serve: Serve) -> None:
    async with serve(
        grant_purge_interval_s=0.1, searchlog_purge_interval_s=0, grant_retention_days=1
    ) as api:
        owner = await api.register()
        vid = await vehicle(api, owner)
        gone = (await grant(api, owner, vid))["grant"]["id"]
        kept = (await grant(api, owner, vid))["grant"]["id"]
        await api.client.post(f"/v1/grants/{gone}/revoke", headers=owner.auth)
        service = api.state.grant_service
        assert service.task is not None
        service.clock = lambda: time.time() + 1.5 * DAY  # revoked a day and a half ago
        try:
            for _ in range(100):
                if gone not in await stored(api, [gone]):
                    break
                await asyncio.sleep(0.05)
        finally:
            service.clock = time.time
        assert await stored(api, [gone, kept]) == {kept}
