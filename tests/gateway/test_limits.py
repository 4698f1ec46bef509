"""Suspicious-usage limits through the HTTP API: each abuse pattern is stopped within its bound,
the honest workshop passes, and the limiter fails closed and recovers when Redis goes away."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import vin as vinlib
from tests.gateway import signing
from tests.gateway.conftest import PASSWORD, Account, Api, serving, settings_for
from tests.gateway.procs import FAST_ENV, free_port, running, workshop
from tests.gateway.test_accounts import problem

MODES = ["embedded", "services"]
# the tests whose Redis semantics (scripts, TTLs, per-account and per-IP keys) also run on a
# 3-master Redis Cluster
WITH_CLUSTER = [*MODES, "cluster"]


def fix(vin: str) -> str:
    """The VIN with its computed check digit."""
    return vin[:8] + vinlib.check_digit(vin) + vin[9:]


def walk(n: int, start: int = 4352) -> list[str]:
    """A sequential scraper's VINs: one Accord series (1HGCM826, 2003, plant A), serial + 1."""
    return [fix(f"1HGCM8260 3A{start + i:06d}".replace(" ", "")) for i in range(n)]


NA_WMIS = ["1HG", "1FA", "2T1", "3VW", "5YJ", "1G1", "4T1", "5NP"]  # check digit required
WMIS = [*NA_WMIS, "JTD", "KMH", "WBA", "WDD", "WVW", "JN1"]
ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
YEAR_CODES = "ABCDEFGHJKLMNPRST"


def unrelated(n: int, rng: secrets.SystemRandom, wmis: list[str] = WMIS) -> list[str]:
    """Distinct, unrelated, well-formed VINs (random series and serials)."""
    vins = set()
    while len(vins) < n:
        body = "".join(rng.choice(ALPHABET) for _ in range(5))
        serial = f"{rng.randrange(10**6):06d}"
        vins.add(fix(rng.choice(wmis) + body + "0" + rng.choice(YEAR_CODES) + "A" + serial))
    return sorted(vins)


async def admin_of(api: Api) -> dict[str, str]:
    email = f"admin{secrets.token_hex(4)}@example.com"
    await api.state.accounts.create_admin(email, PASSWORD)
    return {"Authorization": f"Bearer {await api.login(email)}"}


async def flags_of(
    api: Api, admin: dict[str, str], account_id: str, *, count: int = 1, resolved: bool = False
) -> list[dict]:
    """The account's flags, oldest first, once at least ``count`` are there (they are written
    off the request path)."""
    url = "/v1/admin/flags" + ("?include_resolved=true" if resolved else "")
    mine: list[dict] = []
    for _ in range(50):
        flags = (await api.client.get(url, headers=admin)).json()
        mine = sorted((f for f in flags if f["account_id"] == account_id), key=lambda f: f["id"])
        if len(mine) >= count:
            break
        await asyncio.sleep(0.02)
    return mine


async def until_blocked(api: Api, acct: Account, vins: list[str], send=None) -> tuple[int, dict]:
    """Send queries until one is refused 429; returns (queries sent, problem body)."""
    send = send or api.lookup
    for i, vin in enumerate(vins, start=1):
        r = await send(acct, vin)
        if r.status_code == 429:
            return i, r.json()
    return len(vins) + 1, {}


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_sequential_scraper_stopped_within_20(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        sent, body = await until_blocked(api, acct, walk(30))
        assert sent <= 20, f"the walk went on for {sent} queries"
        assert body["code"] == "suspicious_usage_blocked" and body["policy"] == "sequential"
        # blocked means blocked: a valid, unrelated query is refused too
        problem(await api.lookup(acct, "JH4DC4340RS003205"), 429, "suspicious_usage_blocked")
        admin = await admin_of(api)
        flags = await flags_of(api, admin, acct.id)
        assert [f["policy"] for f in flags] == ["sequential"]
        assert flags[0]["evidence"]["sequential_run"] >= 8 and flags[0]["block_s"] == 900
        assert "1HGCM826" not in str(flags)


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_vin_guesser_stopped_within_30(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        rng = secrets.SystemRandom()
        guesses = []
        for vin in unrelated(40, rng, NA_WMIS):
            wrong = next(d for d in "0123456789X" if d != vin[8])
            guesses.append(vin[:8] + wrong + vin[9:])
        sent, body = await until_blocked(api, acct, guesses)
        assert sent <= 30
        assert body["code"] == "suspicious_usage_blocked" and body["policy"] == "guessing"


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_attestation_forger_stopped_within_30(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        forged_key = signing.ec_key()[0]

        async def forge(a: Account, vin: str) -> httpx.Response:
            token = signing.attestation(forged_key, a.kid, a.id, vin)
            headers = {**a.auth, "VIN-Attestation": token}
            r = await api.client.post("/v1/lookups", json={"vin": vin}, headers=headers)
            assert r.status_code in {403, 429}, r.text
            return r

        sent, body = await until_blocked(api, acct, unrelated(40, secrets.SystemRandom()), forge)
        assert sent <= 30
        assert body["code"] == "suspicious_usage_blocked"
        # the genuine key is refused too now: the account is blocked, not just the forgeries
        problem(await api.lookup(acct, "JH4DC4340RS003205"), 429, "suspicious_usage_blocked")


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_concurrent_flood_is_limited(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        vins = unrelated(80, secrets.SystemRandom())
        started = time.monotonic()
        responses = await asyncio.gather(*(api.lookup(acct, v) for v in vins))
        elapsed = time.monotonic() - started
        ok = [r for r in responses if r.status_code == 200]
        limited = [r for r in responses if r.status_code == 429]
        assert len(ok) + len(limited) == len(vins), {r.status_code for r in responses}
        policy = api.state.limiter.policy
        allowed = policy.capacity // 2 + int(elapsed * policy.refill_per_s / 2) + 1
        assert len(ok) <= allowed
        assert limited and all(r.json()["code"] == "rate_limited" for r in limited)
        assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
        assert all('"vin";r=' in r.headers["RateLimit"] for r in responses)


@pytest.mark.slow
async def test_honest_workshop_is_never_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """150 distinct, unrelated VINs at 2 per second (with a few typos) on the defaults."""
    async with serving(settings_for("services", request, tmp_path), "services") as api:
        acct = await api.workshop()
        rng = secrets.SystemRandom()
        vins = unrelated(150, rng)
        rng.shuffle(vins)
        typos = {i for i, v in enumerate(vins) if v[:3] in NA_WMIS[:4]}
        typos = set(sorted(typos)[:10])  # ten typos, each on a VIN whose check digit is required
        assert len(typos) == 10
        statuses = []
        started = time.monotonic()
        for i, vin in enumerate(vins):
            if i in typos:  # a mistyped check digit first, then the right VIN
                wrong = next(d for d in "0123456789X" if d != vin[8])
                r = await api.lookup(acct, vin[:8] + wrong + vin[9:])
                assert r.status_code == 422, r.text
            r = await api.lookup(acct, vin)
            statuses.append(r.status_code)
            assert r.status_code == 200, (i, r.text)
            await asyncio.sleep(max(0.0, started + (len(statuses) / 2.0) - time.monotonic()))
        assert statuses.count(200) == 150


@pytest.mark.parametrize("mode", MODES)
async def test_distinct_vins_per_day(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = settings_for(mode, request, tmp_path, limit_distinct_max=12)
    async with serving(settings, mode) as api:
        acct = await api.workshop()
        vins = unrelated(12, secrets.SystemRandom())
        for vin in vins:
            assert (await api.lookup(acct, vin)).status_code == 200
        for vin in vins[:3]:  # the same VINs again are not new distinct VINs
            assert (await api.lookup(acct, vin)).status_code == 200
        body = problem(await api.lookup(acct, "JH4DC4340RS003205"), 429, "suspicious_usage_blocked")
        assert body["policy"] == "distinct_vins"


@pytest.mark.parametrize("mode", MODES)
async def test_shadow_mode_flags_without_refusing(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = settings_for(mode, request, tmp_path, limit_shadow="sequential")
    async with serving(settings, mode) as api:
        acct = await api.workshop()
        sent, _ = await until_blocked(api, acct, walk(18, start=1000))
        assert sent == 19  # never refused (18 lookups stay within the flood burst)
        flags = await flags_of(api, await admin_of(api), acct.id)
        assert [(f["policy"], f["shadow"]) for f in flags] == [("sequential", True)]


@pytest.mark.parametrize("mode", MODES)
async def test_allow_list_exempts_from_suspicious_usage(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as probe:
        acct = await probe.workshop()
    # the operator allow-lists the account (accounts and keys persist across the restart)
    settings = settings_for(mode, request, tmp_path, limit_allow_list=f"acct_other,{acct.id}")
    async with serving(settings, mode) as api:
        sent, _ = await until_blocked(api, acct, walk(15, start=2000))
        assert sent == 16  # never refused


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_escalation_and_manual_unblock(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        admin = await admin_of(api)
        await until_blocked(api, acct, walk(20, start=3000))
        assert await flags_of(api, admin, acct.id)  # the flag is written off the request path
        r = await api.client.post(
            f"/v1/admin/accounts/{acct.id}/unblock",
            json={"reason": "customer called, fleet of rentals"},
            headers=admin,
        )
        assert r.status_code == 200 and r.json()["was_blocked"] is True
        assert (await api.lookup(acct, "JH4DC4340RS003205")).status_code == 200
        await until_blocked(api, acct, walk(20, start=5000))
        mine = await flags_of(api, admin, acct.id, count=2, resolved=True)
        assert [(f["block_s"], f["resolved_at"] is not None) for f in mine] == [
            (900, True),
            (1800, False),
        ]


@pytest.mark.parametrize("mode", MODES)
async def test_ratelimit_fields_on_authenticated_answers(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        acct = await api.workshop()
        for r in (
            await api.client.get("/v1/me", headers=acct.auth),
            await api.lookup(acct, "JH4DC4340RS003205"),
            await api.client.post(
                "/v1/lookups", json={"vin": "JH4DC4340RS003205"}, headers=acct.auth
            ),  # refused: no attestation
        ):
            assert r.headers["RateLimit-Policy"] == '"vin";q=40;w=8', r.headers
            assert r.headers["RateLimit"].startswith('"vin";r=')


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_credential_stuffing_limited_per_ip(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with serving(settings_for(mode, request, tmp_path), mode) as api:
        codes = []
        for i in range(25):
            r = await api.client.post(
                "/v1/auth/token",
                data={"username": f"victim{i}@example.com", "password": "guess guess 1"},
            )
            codes.append(r.status_code)
        assert codes[:20] == [401] * 20
        assert 429 in codes[20:]
        r = await api.client.post(
            "/v1/auth/token", data={"username": "a@example.com", "password": "x"}
        )
        body = problem(r, 429, "rate_limited")
        assert body["policy"] == "ip"


# --- Redis going away --------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict]:
    """A Redis server of this test's own, so it can be stopped and restarted."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    holder: dict = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        holder["proc"] = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop() -> None:
        holder["proc"].terminate()
        holder["proc"].wait(10)

    holder["start"], holder["stop"] = start, stop
    start()
    yield holder
    if holder["proc"].poll() is None:
        stop()


async def test_redis_restart_mid_run(
    private_redis: dict, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = settings_for("embedded", request, tmp_path, redis_url=private_redis["url"])
    async with serving(settings, "services") as api:
        acct = await api.workshop()
        assert (await api.lookup(acct, "JH4DC4340RS003205")).status_code == 200
        private_redis["stop"]()
        # fails closed, never hangs (a hang-guard, not a speed claim: the client gives up
        # after its socket timeout, one attempt)
        r = await asyncio.wait_for(api.lookup(acct, "1HGCM82633A004352"), timeout=10)
        body = problem(r, 503, "limiter_unavailable")
        assert int(r.headers["Retry-After"]) >= 1
        assert "127.0.0.1" not in str(body)
        private_redis["start"]()  # an empty Redis: scripts are gone (NOSCRIPT) and reloaded
        r = await api.lookup(acct, "1HGCM82633A004352")
        assert r.status_code == 200, r.text


async def test_redis_down_fails_closed(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for("embedded", request, tmp_path, redis_url=dead)
    async with serving(settings, "services") as api:
        acct = await api.register()  # registration and login fail open on the per-IP limit
        # non-VIN endpoints keep working, without the RateLimit fields (the export, which must
        # include the search-log events still queued in Redis, waits for Redis)
        acct = await api.with_key(acct)
        r = await api.client.get("/v1/me", headers=acct.auth)
        assert r.status_code == 200 and "RateLimit" not in r.headers
        r = await asyncio.wait_for(api.lookup(acct, "1HGCM82633A004352"), timeout=10)
        problem(r, 503, "limiter_unavailable")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_two_workers_never_exceed_the_quota(
    tmp_path: Path, redis_url: str, postgres_urls: tuple[str, str]
) -> None:
    """Two gateway processes hammer one account: the flood bucket is exact across workers
    (atomic in Redis), so successes never exceed burst + refill during the run."""
    accounts_url, log_url = postgres_urls
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_DATABASE_URL": accounts_url,
        "VINGW_LOG_DATABASE_URL": log_url,
        "VINGW_MIGRATE_ON_START": "true",
        "VINGW_ACCESS_LOG_LEVEL": "WARNING",
    }
    with running(["serve"], env) as (base_a, _), running(["serve"], env) as (base_b, _):
        with httpx.Client(base_url=base_a) as client:
            w = workshop(client)
        account_id, auth, key, kid = w["id"], w["auth"], w["key"], w["kid"]
        vins = unrelated(120, secrets.SystemRandom())

        async def hammer() -> tuple[list[int], float]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                started = time.monotonic()
                rs = await asyncio.gather(
                    *(
                        client.post(
                            (base_a, base_b)[i % 2] + "/v1/lookups",
                            json={"vin": v},
                            headers={
                                **auth,
                                "VIN-Attestation": signing.attestation(key, kid, account_id, v),
                            },
                        )
                        for i, v in enumerate(vins)
                    )
                )
                return [r.status_code for r in rs], time.monotonic() - started

        codes, elapsed = asyncio.run(hammer())
    assert set(codes) <= {200, 429}, set(codes)
    burst, refill, cost = 40, 5.0, 2
    assert codes.count(200) <= burst // cost + int(elapsed * refill / cost) + 1
    assert codes.count(429) > 0


@pytest.mark.parametrize("mode", ["embedded", "services"])
async def test_a_web_lookup_costs_what_a_lookup_costs(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Issuing a gateway attestation and using it count as one query against the flood budget:
    with a burst of 8 tokens, four lookups either way (before, issue 1 + lookup 2 gave two)."""
    settings = settings_for(mode, request, tmp_path, limit_vin_burst=8, limit_vin_per_s=0.001)
    vins = unrelated(12, secrets.SystemRandom())
    async with serving(settings, mode) as api:
        web, client_signed = await api.register(), await api.workshop()

        async def web_lookup(vin: str) -> int:
            issued = await api.client.post(
                "/v1/attestations",
                json={"vin": vin, "basis": "owner", "purpose": "parts_inquiry"},
                headers=web.auth,
            )
            if issued.status_code != 201:
                return issued.status_code
            token = issued.json()["attestation"]
            r = await api.client.post(
                "/v1/lookups", json={"vin": vin}, headers={**web.auth, "VIN-Attestation": token}
            )
            return r.status_code

        web_codes = [await web_lookup(v) for v in vins[:6]]
        api_codes = [(await api.lookup(client_signed, v)).status_code for v in vins[6:]]
    assert web_codes == [200, 200, 200, 200, 429, 429]
    assert api_codes == web_codes
