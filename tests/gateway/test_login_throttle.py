"""Per-account login throttling (gateway/accounts/throttle.py): guesses at one account from many
networks wait longer and longer, the holder at a known network still logs in, an unknown email
is treated identically, the per-network limit still works, and Redis holds no email.

Time is the throttle's injected clock (moved by the tests), so no test sleeps."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.accounts.throttle import LoginThrottle
from gateway.kv import make_redis
from gateway.limits.exceptions import LimiterUnavailable
from tests.gateway.conftest import PASSWORD, Api, embedded_settings, serving, settings_for
from tests.gateway.procs import free_port
from tests.gateway.test_accounts import problem

MODES = ["embedded", "services"]
WITH_CLUSTER = [*MODES, "cluster"]  # on a 3-master Redis Cluster too
WRONG = "not the password 1"
#: small numbers: 3 free failures (unfamiliar networks), 6 (known), waits 1 s doubling to 8 s
SMALL = {
    "login_free_failures": 3,
    "login_known_free_failures": 6,
    "login_base_delay_s": 1.0,
    "login_max_delay_s": 8.0,
    "login_window_s": 600.0,
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Networks:
    """A new client network (its own /24) for each call, never the holder's 198.18.0.0/15."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"10.{self.n // 256}.{self.n % 256}.{secrets.randbelow(254) + 1}"


@asynccontextmanager
async def throttled(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Api, Clock, list[int]]]:
    """The app with SMALL throttling on a moved clock, and a count of password verifications."""
    settings = settings_for(mode, request, tmp_path, **{**SMALL, **overrides})
    async with serving(settings, mode) as api:
        clock = Clock()
        accounts = api.state.accounts
        accounts.login_throttle.clock = clock
        verified = [0]
        verify: Callable[[str | None, str], Awaitable[bool]] = accounts.passwords.verify

        async def counting(stored: str | None, password: str) -> bool:
            verified[0] += 1
            return await verify(stored, password)

        accounts.passwords.verify = counting
        yield api, clock, verified


async def login(api: Api, email: str, password: str, ip: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=api.app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        return await client.post("/v1/auth/token", data={"username": email, "password": password})


def throttle_problem(r: httpx.Response) -> tuple[int, dict[str, Any]]:
    body = problem(r, 429, "login_throttled")
    assert body["policy"] == "login"
    assert "password was not checked" in body["detail"]
    assert r.headers["RateLimit-Policy"] == '"login";q=3;w=600'
    return int(r.headers["Retry-After"]), body


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_guesses_from_many_networks_wait_longer_and_longer(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with throttled(mode, request, tmp_path) as (api, clock, verified):
        victim = await api.register()  # logs in from api.ip: its /24 becomes known
        nets = Networks()
        for _ in range(3):
            problem(await login(api, victim.email, WRONG, nets.next()), 401, "invalid_credentials")
        waits = []
        for _ in range(5):
            before = verified[0]
            wait, _body = throttle_problem(await login(api, victim.email, WRONG, nets.next()))
            # the right password from an unfamiliar network is refused too, unchecked
            throttle_problem(await login(api, victim.email, PASSWORD, nets.next()))
            assert verified[0] == before, "a throttled attempt must not run Argon2"
            waits.append(wait)
            clock.advance(wait - 0.5)
            throttle_problem(await login(api, victim.email, WRONG, nets.next()))
            clock.advance(0.5)
            problem(await login(api, victim.email, WRONG, nets.next()), 401, "invalid_credentials")
        assert waits == [1, 2, 4, 8, 8]
        # the holder at its known network is not held up by failures from elsewhere
        r = await api.client.post(
            "/v1/auth/token", data={"username": victim.email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        # nor is any address of that /24
        holder_net = api.ip.rsplit(".", 1)[0]
        r = await login(api, victim.email, PASSWORD, f"{holder_net}.{secrets.randbelow(254) + 1}")
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_email_is_throttled_identically(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with throttled(mode, request, tmp_path) as (api, clock, verified):
        real = (await api.register()).email
        unknown = f"w{secrets.token_hex(6)}@workshop.example"
        nets = Networks()
        seen: dict[str, list[tuple[Any, ...]]] = {real: [], unknown: []}
        for step in range(12):
            if step in (6, 9):
                clock.advance(1)  # the first wait (1 s) is over, then the second is half over
            for email in (real, unknown):
                before = verified[0]
                r = await login(api, email, WRONG, nets.next())
                body = r.json()
                seen[email].append(
                    (
                        r.status_code,
                        body,
                        r.headers.get("Retry-After"),
                        r.headers.get("RateLimit-Policy"),
                        r.headers.get("RateLimit"),
                        r.headers.get("WWW-Authenticate"),
                        verified[0] - before,  # Argon2 runs: 1 for a 401, 0 when throttled
                    )
                )
        assert seen[real] == seen[unknown]
        statuses = [entry[0] for entry in seen[real]]
        assert statuses == [401, 401, 401, 429, 429, 429, 401, 429, 429, 429, 429, 429]
        assert [entry[6] for entry in seen[real]] == [int(s == 401) for s in statuses]


@pytest.mark.parametrize("mode", MODES)
async def test_known_networks_have_their_own_larger_budget(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with throttled(mode, request, tmp_path) as (api, clock, _verified):
        holder = await api.register()
        nets = Networks()
        for _ in range(3):
            problem(await login(api, holder.email, WRONG, nets.next()), 401, "invalid_credentials")
        throttle_problem(await login(api, holder.email, WRONG, nets.next()))
        # typos at home: six free failures, unaffected by the three from elsewhere
        for _ in range(6):
            r = await login(api, holder.email, WRONG, api.ip)
            problem(r, 401, "invalid_credentials")
        r = await login(api, holder.email, PASSWORD, api.ip)
        problem(r, 429, "login_throttled")  # even the known network's budget runs out
        clock.advance(1)
        assert (await login(api, holder.email, PASSWORD, api.ip)).status_code == 200
        # the success cleared the known network's budget (six free failures again) ...
        for _ in range(5):
            problem(await login(api, holder.email, WRONG, api.ip), 401, "invalid_credentials")
        assert (await login(api, holder.email, PASSWORD, api.ip)).status_code == 200
        # ... and a network the holder logs in from becomes known: travelling, once the wait
        # is over, the holder logs in from a hotel; the attack goes on; the hotel still works
        hotel = nets.next()
        assert (await login(api, holder.email, PASSWORD, hotel)).status_code == 200
        for _ in range(4):
            await login(api, holder.email, WRONG, nets.next())
        throttle_problem(await login(api, holder.email, PASSWORD, nets.next()))
        assert (await login(api, holder.email, PASSWORD, hotel)).status_code == 200


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_the_per_network_limit_still_works(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ip_limit = {"limit_ip_burst": 10, "limit_ip_per_s": 0.001}
    async with throttled(mode, request, tmp_path, **ip_limit) as (api, _clock, _v):
        one_network = Networks().next()
        victim = f"w{secrets.token_hex(6)}@workshop.example"
        codes = []
        for _ in range(5):  # one account from one network: the account's throttle first
            r = await login(api, victim, WRONG, one_network)
            codes.append(r.json()["code"])
        assert codes == ["invalid_credentials"] * 3 + ["login_throttled"] * 2
        for i in range(10):  # many accounts from that network: the per-network bucket
            r = await login(api, f"victim{i}@example.com", WRONG, one_network)
            codes.append(r.json()["code"])
        # the ten tokens of the network were spent by throttled attempts too
        assert codes[5:] == ["invalid_credentials"] * 5 + ["rate_limited"] * 5
        assert problem(r, 429, "rate_limited")["policy"] == "ip"


async def _everything_in(redis: Any) -> list[bytes]:
    found: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        found.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            found.append(await redis.get(key) or b"")
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                found += [field, value]
        elif kind == "zset":
            found += [m for m, _score in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            found += list(await redis.smembers(key))
        elif kind == "list":
            found += list(await redis.lrange(key, 0, -1))
    return found


@pytest.mark.parametrize("mode", WITH_CLUSTER)
async def test_redis_holds_no_email_and_no_address(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with throttled(mode, request, tmp_path) as (api, _clock, _verified):
        holder = await api.register()
        unknown = f"w{secrets.token_hex(6)}@workshop.example"
        nets = Networks()
        attackers = [nets.next() for _ in range(5)]
        for ip in attackers:
            await login(api, holder.email, WRONG, ip)
            await login(api, unknown, WRONG, ip)
        contents = await _everything_in(api.state.redis)
        keys_of = api.state.accounts.login_throttle.keys_of
        holder_keys, unknown_keys = keys_of(holder.email), keys_of(unknown)
        # both emails' unfamiliar-network budgets and the holder's known networks
        expected = {holder_keys[0], holder_keys[2], unknown_keys[0]}
        assert expected <= {k.decode() for k in contents if k.startswith(b"vl:{login:")}
        secrets_of_test = [holder.email, unknown, api.ip, *attackers]
        for ip in [api.ip, *attackers]:
            secrets_of_test.append(ip.rsplit(".", 1)[0] + ".0")  # the /24 network
        for needle in secrets_of_test:
            for text in (needle, needle.split("@")[0]):
                hits = [c for c in contents if text.encode() in c]
                assert hits == [], f"{text!r} found in Redis"


def unavailable(decision: str) -> float:
    labels = {"decision": decision}
    return REGISTRY.get_sample_value("vingw_login_throttle_unavailable_total", labels) or 0


async def test_redis_down_login_fails_open_and_is_counted(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = settings_for("embedded", request, tmp_path, redis_url=dead)
    async with serving(settings, "services") as api:
        before = unavailable("open")
        await api.register()  # registers and logs in, as the per-IP limit fails open
        assert unavailable("open") == before + 1  # its login let through unthrottled


async def test_redis_down_login_can_fail_closed(tmp_path: Path) -> None:
    """With VINGW_LIMIT_IP_FAIL_OPEN=false (over HTTP the per-IP limit refuses first, 503 too)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = embedded_settings(tmp_path, redis_url=dead, limit_ip_fail_open=False)
    redis = make_redis(settings)
    throttle = LoginThrottle(redis, settings, key=secrets.token_bytes(32))
    try:
        before = unavailable("closed")
        with pytest.raises(LimiterUnavailable) as refused:
            await throttle.admit("nobody@example.com", "203.0.113.9")
        assert refused.value.headers["Retry-After"] == "1"
        assert unavailable("closed") == before + 1
    finally:
        await redis.aclose()


def test_the_token_endpoint_declares_login_throttled(tmp_path: Path) -> None:
    from gateway.main import create_app
    from tests.gateway.test_openapi import codes, operation

    doc = create_app(embedded_settings(tmp_path)).openapi()
    responses = operation(doc, "post", "/v1/auth/token")["responses"]
    assert codes(responses["429"]) == {"rate_limited", "login_throttled"}
    assert {"Retry-After", "RateLimit-Policy", "RateLimit"} <= set(responses["429"]["headers"])
    assert {"invalid_credentials"} <= codes(responses["401"])
    assert "limiter_unavailable" in codes(responses["503"])
