"""The VIN path under an owner's grant (basis ``owner_granted``): the claim, the grant step and
its order, the use counter in the admission round trip, the grant policy, end to end."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import httpx
import pytest

from gateway.config import Settings
from gateway.limits.consequences import signal_of
from gateway.limits.limiter import Limiter, LimitPolicy
from gateway.security import jws
from gateway.security.attestation import AttestationVerifier
from gateway.security.exceptions import (
    AttestationError,
    GrantExhausted,
    GrantExpired,
    GrantPurposeOutOfScope,
    GrantRevoked,
    GrantUnknown,
    GrantVehicleMismatch,
    OwnerGrantRequired,
)
from tests.gateway import signing
from tests.gateway.conftest import Account, Api, serving, settings_for
from tests.gateway.test_accounts import problem

VIN = "1HGCM82633A004352"
OTHER_VIN = "JH4DC4340RS003205"
GRANT_REFUSALS = [
    GrantUnknown,
    GrantRevoked,
    GrantExpired,
    GrantVehicleMismatch,
    GrantPurposeOutOfScope,
    GrantExhausted,
]


def test_grant_refusals_are_signals_and_the_policy_refusal_is_not() -> None:
    for cls in GRANT_REFUSALS:
        assert issubclass(cls, AttestationError) and cls.status == 403
        assert signal_of(cls.code) == "attestation_refused", cls.code
    assert OwnerGrantRequired.code == "owner_grant_required" and OwnerGrantRequired.status == 403
    assert not issubclass(OwnerGrantRequired, AttestationError)
    assert signal_of("owner_grant_required") is None
    # the grants API's own codes never reach the VIN path's signal reporting as signals
    assert signal_of("grant_code_invalid") is None


# --- the claim ---------------------------------------------------------------------------------


async def _verify(**claims: Any) -> Any:
    key, jwk = signing.ec_key()
    bound = jws.public_key_from_jwk("ak_test", jwk, owner="acct_grantee01")

    async def resolve(kid: str) -> jws.BoundKey | None:
        return bound if kid == "ak_test" else None

    verifier = AttestationVerifier(
        resolve_key=resolve,
        issuer="vin-gateway",
        audience="vin-gateway",
        max_lifetime_s=300,
        future_iat_leeway_s=60,
        exp_leeway_s=0,
    )
    token = signing.attestation(key, "ak_test", "acct_grantee01", VIN, **claims)
    return await verifier.check(
        token, account_id="acct_grantee01", normalized_vin=VIN, now=int(time.time())
    )


@pytest.mark.parametrize(
    "grant_id",
    [
        None, 17, "", "grt_", "tok_0123456789abcdef0123", "grt_" + "a" * 29, "grt_ab/cd",
        ["grt_a"], "zzz grt_abc !!", "grt_a\n", "grt_a\x00", "\u202egrt_a", "grt_a\u200b",
    ],
    ids=[
        "missing", "int", "empty", "bare-prefix", "other-prefix", "33-chars", "slash", "list",
        "inside-text", "newline-after", "nul-after", "bidi-before", "zero-width-after",
    ],
)  # fmt: skip
async def test_grant_id_claim_must_be_a_grant_id(grant_id: Any) -> None:
    claims: dict[str, Any] = {"basis": "owner_granted", "purpose": "maintenance"}
    if grant_id is not None:
        claims["grant_id"] = grant_id
    with pytest.raises(AttestationError) as refused:
        await _verify(**claims)
    assert refused.value.code == "attestation_malformed"
    assert "grant_id" in str(refused.value.detail)


async def test_grant_id_claim_is_carried_only_with_its_basis() -> None:
    grant_id = "grt_" + secrets.token_hex(10)
    accepted = await _verify(basis="owner_granted", purpose="maintenance", grant_id=grant_id)
    assert accepted.basis == "owner_granted" and accepted.grant_id == grant_id
    assert accepted.owner_ref is None  # no owner_authorization needed
    longest = "grt_" + "a" * 28
    assert (await _verify(basis="owner_granted", grant_id=longest)).grant_id == longest
    # another basis: a grant_id claim is ignored, never checked as a grant
    assert (await _verify(basis="owner", grant_id=grant_id)).grant_id is None


# --- the use counter in the admission round trip ----------------------------------------------


@pytest.fixture(params=["embedded", "redis", "cluster"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    policy = LimitPolicy.from_settings(Settings(_env_file=None))
    key = secrets.token_bytes(32)
    if request.param == "embedded":
        yield Limiter(fakeredis.FakeAsyncRedis(), policy, key=key)
        return
    if request.param == "redis":
        from redis.asyncio import Redis

        client: Any = Redis.from_url(request.getfixturevalue("redis_url"))
    else:
        from redis.asyncio.cluster import RedisCluster

        client = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    try:
        yield Limiter(client, policy, key=key)
    finally:
        await client.aclose()


async def _keys(limiter: Limiter) -> set[str]:
    redis: Any = limiter.redis
    if hasattr(redis, "get_primaries"):
        found: set[str] = set()
        for node in redis.get_primaries():
            async for key in redis.scan_iter(count=1000, target_nodes=node):
                found.add(key.decode())
        return found
    return {key.decode() async for key in redis.scan_iter(count=1000)}


async def _admit(limiter: Limiter, account: str, grant_id: str | None, **grant: Any) -> str:
    decision = await limiter.admit(
        account,
        jti=secrets.token_urlsafe(16),
        jti_ttl=300,
        cost=2,
        vin=limiter.signals_of(VIN),
        iat=int(time.time()),
        grant_id=grant_id,
        **grant,
    )
    return decision.verdict


async def test_uses_counted_in_the_admission_and_refused_once_used_up(limiter: Limiter) -> None:
    account = f"acct_{secrets.token_hex(5)}"
    grant_id = "grt_" + secrets.token_hex(10)
    limited = {"grant_max_uses": 3, "grant_ttl_s": 3600}
    assert [await _admit(limiter, account, grant_id, **limited) for _ in range(3)] == ["ok"] * 3
    score = (await limiter.peek(account)).score
    assert await _admit(limiter, account, grant_id, **limited) == "grant_exhausted"
    # refused uncounted, scored like a refused attestation
    assert await limiter.grant_uses(account, [grant_id]) == {grant_id: 3}
    assert (await limiter.peek(account)).score == score + limiter.policy.weights[
        "attestation_refused"
    ]
    # without a limit the counter still counts; another grant has its own counter
    free = "grt_" + secrets.token_hex(10)
    for _ in range(4):
        assert await _admit(limiter, account, free, grant_ttl_s=3600) == "ok"
    never = "grt_" + secrets.token_hex(10)
    assert await limiter.grant_uses(account, [grant_id, free, never]) == {
        grant_id: 3,
        free: 4,
        never: 0,
    }
    assert await limiter.grant_uses(account, []) == {}
    # the counter lives in the grantee's slot under a keyed pseudonym: no grant id in Redis,
    # and it expires with the TTL given
    keys = await _keys(limiter)
    counters = {k for k in keys if k.startswith("vl:{" + account + "}:grant:")}
    assert len(counters) == 2
    assert not any(g in k for k in keys for g in (grant_id, free, grant_id[4:], free[4:]))
    for key in counters:
        assert 3500 <= int(await limiter.redis.ttl(key)) <= 3600


async def test_only_admitted_queries_count(limiter: Limiter) -> None:
    account = f"acct_{secrets.token_hex(5)}"
    grant_id = "grt_" + secrets.token_hex(10)
    jti = secrets.token_urlsafe(16)
    for expected in ("ok", "replayed"):
        decision = await limiter.admit(
            account, jti=jti, jti_ttl=300, cost=2, grant_id=grant_id, grant_ttl_s=60
        )
        assert decision.verdict == expected
    # a flood refusal: the bucket holds 40 tokens
    decision = await limiter.admit(account, jti=None, jti_ttl=0, cost=41, grant_id=grant_id)
    assert decision.verdict == "limited"
    # issuing an attestation checks the grant's uses without counting one
    for _ in range(3):
        decision = await limiter.admit(
            account, jti=None, jti_ttl=0, grant_id=grant_id, grant_max_uses=2,
            grant_ttl_s=60, count_grant_use=False,
        )  # fmt: skip
        assert decision.verdict == "ok"
    assert await limiter.grant_uses(account, [grant_id]) == {grant_id: 1}
    assert await _admit(limiter, account, grant_id, grant_max_uses=2, grant_ttl_s=60) == "ok"
    decision = await limiter.admit(
        account, jti=None, jti_ttl=0, grant_id=grant_id, grant_max_uses=2, count_grant_use=False
    )
    assert decision.verdict == "grant_exhausted"


async def test_erasure_drops_the_grant_counters(limiter: Limiter) -> None:
    account, other = f"acct_{secrets.token_hex(5)}", f"acct_{secrets.token_hex(5)}"
    grants = ["grt_" + secrets.token_hex(10) for _ in range(3)]
    for who in (account, other):
        for grant_id in grants:
            assert await _admit(limiter, who, grant_id, grant_ttl_s=600) == "ok"
    removed = await limiter.forget_account(account, [])
    keys = await _keys(limiter)
    assert not {k for k in keys if k.startswith("vl:{" + account + "}")}
    assert removed >= 3 + 3  # its replay records and its three grant counters at least
    assert await limiter.grant_uses(other, grants) == dict.fromkeys(grants, 1)


async def test_embedded_counters_survive_a_clean_restart(tmp_path: Any) -> None:
    from gateway.limits import embedded

    policy = LimitPolicy.from_settings(Settings(_env_file=None))
    key, account, grant_id = secrets.token_bytes(32), "acct_restart01", "grt_" + "0" * 20
    before = Limiter(fakeredis.FakeAsyncRedis(), policy, key=key)
    await embedded.restore(tmp_path, before)
    for _ in range(2):
        assert await _admit(before, account, grant_id, grant_max_uses=2, grant_ttl_s=600) == "ok"
    await embedded.save(tmp_path, before)
    after = Limiter(fakeredis.FakeAsyncRedis(), policy, key=key)  # a new process's stand-in
    await embedded.restore(tmp_path, after)
    assert await after.grant_uses(account, [grant_id]) == {grant_id: 2}
    verdict = await _admit(after, account, grant_id, grant_max_uses=2, grant_ttl_s=600)
    assert verdict == "grant_exhausted"


# --- end to end: grants made through the grants API ----------------------------------------

MODES = ["embedded", "services"]
WEIGHT = 12  # the guessing score of one refused attestation (docs/limits.md)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def workshop_code(api: Api, account: Account) -> str:
    r = await api.client.get("/v1/me", headers=account.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["workshop_code"])


async def vehicle(api: Api, owner: Account, vin: str = VIN) -> str:
    r = await api.client.post("/v1/vehicles", json={"vin": vin}, headers=owner.auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def grant(
    api: Api,
    owner: Account,
    vehicle_id: str,
    grantee: Account | None,
    *,
    valid_s: float = 3600,
    **fields: Any,
) -> dict[str, Any]:
    """A grant made by ``owner``: active for ``grantee`` at once (its workshop code), or
    pending (None)."""
    body = {"vehicle_id": vehicle_id, "valid_until": rfc3339(time.time() + valid_s), **fields}
    if grantee is not None:
        body["workshop_code"] = await workshop_code(api, grantee)
    r = await api.client.post("/v1/grants", json=body, headers=owner.auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


def granted(api: Api, shop: Account, vin: str, grant_id: str, **claims: Any) -> dict[str, str]:
    claims = {"basis": "owner_granted", "purpose": "maintenance", "grant_id": grant_id, **claims}
    return api.attest(shop, vin, **claims)


async def lookup(api: Api, headers: dict[str, str], vin: str = VIN) -> httpx.Response:
    return await api.client.post("/v1/lookups", json={"vin": vin}, headers=headers)


async def setup(api: Api, **grant_fields: Any) -> tuple[Account, Account, str]:
    """An owner with one vehicle (VIN) granted to a workshop with a key; (owner, shop, id)."""
    owner, shop = await api.register(), await api.workshop()
    made = await grant(api, owner, await vehicle(api, owner), shop, **grant_fields)
    return owner, shop, str(made["grant"]["id"])


async def rows(api: Api, account: Account) -> list[Any]:
    await api.state.searchlog.flush()
    return list(await api.state.searchlog.rows_for_account(account.id))


async def uses(api: Api, owner: Account, grant_id: str) -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/grants/{grant_id}/uses", headers=owner.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["uses"])


async def test_lookup_under_a_grant(api: Api) -> None:
    owner, shop, grant_id = await setup(api, max_uses=5)
    r = await lookup(api, granted(api, shop, VIN, grant_id))
    assert r.status_code == 200, r.text
    assert r.json()["vehicle"]["vin"] == VIN
    r = await api.client.post(
        "/v1/vins/decode", json={"vin": VIN.lower()}, headers=granted(api, shop, VIN, grant_id)
    )
    assert r.status_code == 200, r.text
    logged = await rows(api, shop)
    assert [(x.outcome, x.basis, x.granted) for x in logged] == [
        ("ok", "owner_granted", True),
        ("ok", "owner_granted", True),
    ]
    seen = await uses(api, owner, grant_id)
    assert sorted(u["endpoint"] for u in seen) == ["decode", "lookup"]
    listed = (await api.client.get("/v1/grants", headers=shop.auth)).json()["received"]
    assert [(g["id"], g["uses"]) for g in listed] == [(grant_id, 2)]


async def test_gateway_issued_attestation_under_a_grant(api: Api) -> None:
    owner = await api.register()
    shop = await api.register()  # an interactive user: no key of their own
    made = await grant(api, owner, await vehicle(api, owner), shop, max_uses=1)
    grant_id = made["grant"]["id"]

    async def issue(**fields: Any) -> httpx.Response:
        body = {"vin": VIN, "basis": "owner_granted", "purpose": "maintenance", **fields}
        return await api.client.post("/v1/attestations", json=body, headers=shop.auth)

    r = await issue(grant_id=grant_id)
    assert r.status_code == 201, r.text
    token = r.json()["attestation"]
    claims = jws.split_compact(token)[1]
    assert b'"grant_id":"' + grant_id.encode() + b'"' in claims.replace(b" ", b"")
    # issuing counts no use: the only use allowed is still there for the query
    r = await issue(grant_id=grant_id)
    assert r.status_code == 201, r.text
    headers = {**shop.auth, "VIN-Attestation": token}
    assert (await lookup(api, headers)).status_code == 200
    problem(await lookup(api, headers), 403, "attestation_replayed")
    # now used up: issuing refuses too, and the grant checks run before signing
    problem(await issue(grant_id=grant_id), 403, "grant_exhausted")
    problem(await issue(grant_id="grt_" + "0" * 20), 403, "grant_unknown")
    problem(await issue(grant_id=grant_id, purpose="parts_inquiry", vin=OTHER_VIN), 403,
            "grant_vehicle_mismatch")  # fmt: skip
    r = await issue()
    problem(r, 422, "invalid_request")
    assert [e["field"] for e in r.json()["errors"]] == ["grant_id"]


async def test_replay_under_a_grant_is_refused_and_counts_once(api: Api) -> None:
    _owner, shop, grant_id = await setup(api, max_uses=3)
    headers = granted(api, shop, VIN, grant_id)
    assert (await lookup(api, headers)).status_code == 200
    problem(await lookup(api, headers), 403, "attestation_replayed")
    assert await api.state.limiter.grant_uses(shop.id, [grant_id]) == {grant_id: 1}


async def _refused(api: Api, scenario: str) -> tuple[Account, Account | None, str, httpx.Response]:
    """(caller, owner of the grant named or None, grant id, the refused lookup)."""
    owner = await api.register()
    shop = await api.workshop()
    vehicle_id = await vehicle(api, owner)
    if scenario == "unknown":
        grant_id = "grt_" + secrets.token_hex(10)
        return shop, None, grant_id, await lookup(api, granted(api, shop, VIN, grant_id))
    if scenario == "other_workshops":
        other = await api.workshop()
        grant_id = (await grant(api, owner, vehicle_id, other))["grant"]["id"]
        return shop, owner, grant_id, await lookup(api, granted(api, shop, VIN, grant_id))
    if scenario == "pending":
        made = await grant(api, owner, vehicle_id, None)
        assert made["grant"]["status"] == "pending" and made["code"]
        grant_id = made["grant"]["id"]
        return shop, owner, grant_id, await lookup(api, granted(api, shop, VIN, grant_id))
    fields: dict[str, Any] = {}
    if scenario == "purpose":
        fields["purposes"] = ["parts_inquiry"]
    if scenario == "expired":
        fields["valid_s"] = 2
    if scenario == "exhausted":
        fields["max_uses"] = 2
    made = (await grant(api, owner, vehicle_id, shop, **fields))["grant"]
    grant_id = made["id"]
    vin = VIN
    if scenario == "revoked":
        r = await api.client.post(f"/v1/grants/{grant_id}/revoke", headers=owner.auth)
        assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
    elif scenario == "expired":
        assert (await lookup(api, granted(api, shop, VIN, grant_id))).status_code == 200
        # expired once now (whole seconds) is past valid_until
        until = datetime.fromisoformat(made["valid_until"].replace("Z", "+00:00")).timestamp()
        await _sleep_until(int(until) + 1.05)
    elif scenario == "vehicle":
        vin = OTHER_VIN
    elif scenario == "exhausted":
        for _ in range(2):
            assert (await lookup(api, granted(api, shop, VIN, grant_id))).status_code == 200
    return shop, owner, grant_id, await lookup(api, granted(api, shop, vin, grant_id), vin)


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))


REFUSED = {
    "unknown": "grant_unknown",
    "other_workshops": "grant_unknown",
    "pending": "grant_unknown",
    "revoked": "grant_revoked",
    "expired": "grant_expired",
    "vehicle": "grant_vehicle_mismatch",
    "purpose": "grant_purpose_out_of_scope",
    "exhausted": "grant_exhausted",
}


@pytest.mark.parametrize("scenario", list(REFUSED))
async def test_each_grant_refusal(api: Api, scenario: str) -> None:
    shop, owner, grant_id, r = await _refused(api, scenario)
    code = REFUSED[scenario]
    problem(r, 403, code)
    # a signal reaching the limiter: the guessing score, and the RateLimit fields
    assert "RateLimit" in r.headers and "RateLimit-Policy" in r.headers
    assert (await api.state.limiter.peek(shop.id)).score == WEIGHT
    # its search-log row; under the grant's pseudonym only when the grant is the caller's
    logged = await rows(api, shop)
    mine = scenario not in {"unknown", "other_workshops", "pending"}
    assert [(x.outcome, x.code, x.granted) for x in logged if x.outcome == "refused"] == [
        ("refused", code, mine)
    ]
    if owner is not None:
        refused = [u for u in await uses(api, owner, grant_id) if u["outcome"] == "refused"]
        assert [u["code"] for u in refused] == ([code] if mine else [])
    if scenario == "exhausted":  # refused, not counted
        assert await api.state.limiter.grant_uses(shop.id, [grant_id]) == {grant_id: 2}


async def test_the_grant_checks_run_in_their_order(api: Api) -> None:
    """Grants with several defects at once: the first check in the documented order decides.
    A ladder (every defect, then all but the first, ...) pins the whole order: swapping any two
    checks makes one rung answer with the other's code. The pairs named in the review are
    checked on their own too."""
    owner, shop, other = await api.register(), await api.workshop(), await api.workshop()
    vehicle_id = await vehicle(api, owner)
    # each grant: only parts_inquiry, one use (spent at once), so every later query with purpose
    # maintenance is out of scope and one with parts_inquiry finds it exhausted
    defective = {"purposes": ["parts_inquiry"], "max_uses": 1}
    short_lived, revoked, long_lived = [
        (await grant(api, owner, vehicle_id, shop, valid_s=valid_s, **defective))["grant"]
        for valid_s in (2, 2, 3600)
    ]
    for made in (short_lived, revoked, long_lived):
        spend = granted(api, shop, VIN, made["id"], purpose="parts_inquiry")
        assert (await lookup(api, spend)).status_code == 200
    r = await api.client.post(f"/v1/grants/{revoked['id']}/revoke", headers=owner.auth)
    assert r.status_code == 200, r.text

    async def answer(caller: Account, made: dict[str, Any], vin: str, purpose: str) -> str:
        r = await lookup(api, granted(api, caller, vin, made["id"], purpose=purpose), vin)
        assert r.status_code == 403, r.text
        return str(r.json()["code"])

    # before the expiry: revoked + another VIN, and (unexpired) another VIN + wrong purpose
    assert await answer(shop, revoked, OTHER_VIN, "maintenance") == "grant_revoked"
    assert await answer(shop, short_lived, OTHER_VIN, "maintenance") == "grant_vehicle_mismatch"
    # expired once now (whole seconds) is past valid_until
    await _sleep_until(max(_until(short_lived), _until(revoked)) + 1.05)
    ladder = [
        (other, revoked, OTHER_VIN, "maintenance", "grant_unknown"),  # + revoked, expired ...
        (shop, revoked, OTHER_VIN, "maintenance", "grant_revoked"),  # + expired, vehicle ...
        (shop, short_lived, OTHER_VIN, "maintenance", "grant_expired"),  # + vehicle, purpose ...
        (shop, long_lived, OTHER_VIN, "maintenance", "grant_vehicle_mismatch"),  # + purpose ...
        (shop, long_lived, VIN, "maintenance", "grant_purpose_out_of_scope"),  # + exhausted
        (shop, long_lived, VIN, "parts_inquiry", "grant_exhausted"),  # nothing else wrong
    ]
    got = [await answer(caller, made, vin, purpose) for caller, made, vin, purpose, _ in ladder]
    assert got == [code for *_, code in ladder]
    # the pairs on their own: expired + wrong purpose, unknown to the caller + revoked
    assert await answer(shop, short_lived, VIN, "maintenance") == "grant_expired"
    assert await answer(other, revoked, VIN, "parts_inquiry") == "grant_unknown"
    # and nothing wrong at all is served (a fresh grant), so every rung was a real refusal
    fresh = (await grant(api, owner, vehicle_id, shop))["grant"]
    assert (await lookup(api, granted(api, shop, VIN, fresh["id"]))).status_code == 200


def _until(made: dict[str, Any]) -> float:
    return datetime.fromisoformat(made["valid_until"].replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("mode", MODES)
async def test_grant_policy_shadow_then_enforced(
    mode: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    from tests.gateway.test_limits import admin_of, flags_of

    shadow = settings_for(mode, request, tmp_path, grant_policy="all")
    async with serving(shadow, mode) as api:
        _owner, shop, grant_id = await setup(api)
        before = _shadow_count("all")
        for _ in range(2):  # let through, counted each time, flagged once
            assert (await api.lookup(shop, VIN)).status_code == 200
        assert _shadow_count("all") == before + 2
        admin = await admin_of(api)
        flags = await flags_of(api, admin, shop.id)
        assert [(f["policy"], f["shadow"]) for f in flags] == [("grant_policy", True)]
        assert (await lookup(api, granted(api, shop, VIN, grant_id))).status_code == 200
        assert _shadow_count("all") == before + 2
    enforced = settings_for(mode, request, tmp_path, grant_policy="all", grant_policy_shadow=False)
    async with serving(enforced, mode) as api:
        _owner, shop, grant_id = await setup(api)
        r = await api.lookup(shop, VIN)
        problem(r, 403, "owner_grant_required")
        assert "RateLimit" in r.headers
        assert (await api.state.limiter.peek(shop.id)).score == 0  # not a signal
        r = await api.client.post(
            "/v1/attestations",
            json={"vin": VIN, "basis": "owner", "purpose": "maintenance"},
            headers=shop.auth,
        )
        problem(r, 403, "owner_grant_required")
        assert (await lookup(api, granted(api, shop, VIN, grant_id))).status_code == 200
        assert [x.code for x in await rows(api, shop)].count("owner_grant_required") == 2


@pytest.mark.parametrize("mode", MODES)
async def test_grant_policy_flagged_applies_to_open_flags_only(
    mode: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    from gateway.accounts.models import Flag
    from tests.gateway.test_limits import admin_of

    settings = settings_for(
        mode, request, tmp_path, grant_policy="flagged", grant_policy_shadow=False
    )
    async with serving(settings, mode) as api:
        shop = await api.workshop()
        assert (await api.lookup(shop, VIN)).status_code == 200  # no flag: the cached state
        await api.state.accounts.add_flag(
            Flag(account_id=shop.id, policy="guessing", reason="test", evidence={})
        )
        problem(await api.lookup(shop, VIN), 403, "owner_grant_required")
        admin = await admin_of(api)
        r = await api.client.post(
            f"/v1/admin/accounts/{shop.id}/unblock", json={"reason": "checked"}, headers=admin
        )
        assert r.status_code in {200, 204}, r.text
        assert (await api.lookup(shop, VIN)).status_code == 200  # resolved: no open flag


@pytest.mark.parametrize("mode", MODES)
async def test_a_shadow_flag_does_not_make_an_account_flagged(
    mode: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """A shadow policy only observes: its flag neither puts the account under the grant policy
    ``flagged`` nor drops any worker's cached credentials. An enforced flag does both."""
    from gateway.accounts.models import Flag
    from tests.gateway.test_limits import admin_of, flags_of

    shadow = settings_for(mode, request, tmp_path, grant_policy="all")
    async with serving(shadow, mode) as api:
        shop = await api.workshop()
        published = _record_notifications(api)
        assert (await api.lookup(shop, VIN)).status_code == 200
        admin = await admin_of(api)
        flags = await flags_of(api, admin, shop.id)
        assert [(f["policy"], f["shadow"], f["resolved_at"]) for f in flags] == [
            ("grant_policy", True, None)
        ]
        await api.state.consequences.drain()  # add_flag publishes after its commit
        assert [p for p in published if p[0] == shop.id] == []  # a shadow flag drops nothing
    enforced = settings_for(
        mode, request, tmp_path, grant_policy="flagged", grant_policy_shadow=False
    )
    async with serving(enforced, mode) as api:  # state read afresh from the database
        published = _record_notifications(api)
        assert (await api.lookup(shop, VIN)).status_code == 200  # its open shadow flag: ignored
        await api.state.accounts.add_flag(
            Flag(account_id=shop.id, policy="guessing", reason="test", evidence={})
        )
        assert [p for p in published if p[0] == shop.id] == [(shop.id, "status_changed")]
        problem(await api.lookup(shop, VIN), 403, "owner_grant_required")


def _record_notifications(api: Api) -> list[tuple[str, str]]:
    """What the account service tells the other workers from now on (passed on unchanged)."""
    accounts = api.state.accounts
    published: list[tuple[str, str]] = []
    notify = accounts.notify

    async def recording(account_id: str, reason: str, key_id: str | None) -> None:
        published.append((account_id, reason))
        await notify(account_id, reason, key_id)

    accounts.notify = recording
    return published


def _shadow_count(policy: str) -> float:
    from gateway.lookups.service import GRANT_POLICY_SHADOW

    return float(GRANT_POLICY_SHADOW.labels(policy)._value.get())


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_revocation_reaches_a_second_worker_within_a_second(
    tmp_path: Any, redis_url: str, postgres_urls: tuple[str, str]
) -> None:
    from tests.gateway.procs import FAST_ENV, running, workshop

    accounts_url, log_url = postgres_urls
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_DATABASE_URL": accounts_url,
        "VINGW_LOG_DATABASE_URL": log_url,
        "VINGW_MIGRATE_ON_START": "true",
    }
    with (
        running(["serve"], env) as (base_a, _),
        running(["serve"], env) as (base_b, _),
        httpx.Client(base_url=base_a) as a,
        httpx.Client(base_url=base_b) as b,
    ):
        owner, shop = workshop(a), workshop(a)
        code = a.get("/v1/me", headers=shop["auth"]).json()["workshop_code"]
        vehicle_id = a.post("/v1/vehicles", json={"vin": VIN}, headers=owner["auth"]).json()["id"]
        body = {"vehicle_id": vehicle_id, "valid_until": rfc3339(time.time() + 3600),
                "workshop_code": code}  # fmt: skip
        made = a.post("/v1/grants", json=body, headers=owner["auth"])
        assert made.status_code == 201, made.text
        grant_id = made.json()["grant"]["id"]

        def query() -> httpx.Response:
            token = signing.attestation(
                shop["key"], shop["kid"], shop["id"], VIN,
                basis="owner_granted", purpose="maintenance", grant_id=grant_id,
            )  # fmt: skip
            return b.post("/v1/lookups", json={"vin": VIN},
                          headers={**shop["auth"], "VIN-Attestation": token})  # fmt: skip

        for _ in range(2):  # worker B has the grant cached now
            assert query().status_code == 200
        revoked = a.post(f"/v1/grants/{grant_id}/revoke", headers=owner["auth"])
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        while True:
            r = query()
            if r.status_code == 403:
                break
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 1.0, "worker B still served the revoked grant"
            time.sleep(0.02)
        assert r.json()["code"] == "grant_revoked"
        assert time.monotonic() - started < 1.0
