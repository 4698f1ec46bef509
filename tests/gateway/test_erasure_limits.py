"""Erasure (``DELETE /v1/me``) deletes the account's keys in Redis: limiter state (block,
strikes, buckets, per-API-key buckets, score, VIN pseudonyms, walks, origin, replay records)
and the login throttle's budgets and known networks. Other accounts' keys stay.

On the embedded stand-in and real Redis through the API, and on a real 3-master Redis Cluster
through ``Limiter.forget_account`` (the hash tag puts an account's keys on one slot)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.limits.limiter import Limiter, LimitPolicy
from tests.gateway import signing
from tests.gateway.conftest import serving, settings_for
from tests.gateway.test_limits import until_blocked, walk


async def all_keys(redis: Any) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter(count=1000)}


def of_account(keys: set[str], account_id: str) -> set[str]:
    return {k for k in keys if k.startswith("vl:{" + account_id + "}")}


@pytest.mark.parametrize("mode", ["embedded", "services", "cluster"])
async def test_erasure_deletes_the_accounts_redis_keys(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct, other = await api.workshop(), await api.workshop()
        made = await api.client.post("/v1/api-keys", json={"name": "pc"}, headers=acct.auth)
        api_key = made.json()["key"]
        vin = walk(1, start=9000)[0]
        assert acct.kid is not None
        token = signing.attestation(acct.key, acct.kid, acct.id, vin)
        r = await api.client.post(
            "/v1/lookups",
            json={"vin": vin},
            headers={"Authorization": f"Bearer {api_key}", "VIN-Attestation": token},
        )
        assert r.status_code == 200, r.text
        sent, body = await until_blocked(api, acct, walk(30))  # a block, strikes, a walk
        assert body.get("code") == "suspicious_usage_blocked", (sent, body)
        wrong = await api.client.post(
            "/v1/auth/token", data={"username": acct.email, "password": "not it at all 1"}
        )
        assert wrong.status_code == 401  # the login throttle counted a failure
        assert (await api.lookup(other, walk(1, start=7000)[0])).status_code == 200

        redis, throttle = api.state.redis, api.state.accounts.login_throttle
        login_keys = set(throttle.keys_of(acct.email.lower()))
        before = await all_keys(redis)
        mine = of_account(before, acct.id)
        suffixes = {k.split("}:", 1)[1].split(":", 1)[0] for k in mine}
        # the block deleted the walk (seq) and the score: the cluster test below has a walk
        assert {"ban", "strikes", "bucket", "kb", "jti", "vins", "origin"} <= suffixes
        assert login_keys & before
        others = of_account(before, other.id)
        assert others

        r = await api.client.delete("/v1/me", headers=acct.auth)
        assert r.status_code == 204, r.text

        after = await all_keys(redis)
        assert of_account(after, acct.id) == set()
        assert login_keys & after == set()
        assert others <= after  # nobody else's state went with it


async def test_forget_account_on_redis_cluster(redis_cluster_url: str) -> None:
    from redis.asyncio.cluster import RedisCluster

    cluster = RedisCluster.from_url(redis_cluster_url)
    try:
        settings = Settings(_env_file=None)  # 6 steps of a walk: below its threshold
        limiter = Limiter(cluster, LimitPolicy.from_settings(settings), key=b"k" * 32)
        target = f"acct_{secrets.token_hex(5)}"
        neighbour = next(  # another account whose keys share the target's slot
            a
            for a in (f"acct_{secrets.token_hex(5)}" for _ in range(1_000_000))
            if cluster.keyslot("vl:{" + a + "}") == cluster.keyslot("vl:{" + target + "}")
        )
        others = [neighbour, *(f"acct_{secrets.token_hex(5)}" for _ in range(20))]
        ids = [target, *others]
        for account in ids:
            for vin in walk(6, start=secrets.randbelow(900_000)):
                await limiter.admit(
                    account,
                    jti=secrets.token_hex(8),
                    jti_ttl=300,
                    cost=2,
                    key_id="key_" + account[-4:],
                    vin=limiter.signals_of(vin),
                    iat=int(time.time()),  # an iat: the origin record is written too
                )

        async def keys_on_every_node() -> set[str]:
            found: set[str] = set()
            for node in cluster.get_primaries():
                async for key in cluster.scan_iter(count=1000, target_nodes=node):
                    found.add(key.decode())
            return found

        before = await keys_on_every_node()
        assert {k.split("}:", 1)[1].split(":")[0] for k in of_account(before, target)} >= {
            "bucket", "kb", "jti", "seq", "vins", "origin",
        }  # fmt: skip
        removed = await limiter.forget_account(target, ["key_" + target[-4:]])
        after = await keys_on_every_node()
        assert removed == len(of_account(before, target))
        assert of_account(after, target) == set()
        assert before - of_account(before, target) <= after
        assert of_account(after, neighbour)
    finally:
        await cluster.aclose()
