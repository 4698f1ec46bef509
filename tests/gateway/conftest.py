"""API test fixtures: the app on embedded defaults and on real Redis + PostgreSQL.

``api`` is parametrized over both configurations, so every API test runs against each.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway.config import Settings
from gateway.main import create_app
from tests.gateway import signing

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
PASSWORD = "correct horse battery staple"  # also the default of tests/gateway/procs.workshop


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **{**FAST_ARGON2, **overrides})


@dataclass
class Account:
    id: str
    email: str
    token: str
    key: Any = None
    kid: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """A client that speaks to the app like workshop software does."""

    def __init__(self, client: httpx.AsyncClient, app: Any, mode: str, ip: str) -> None:
        self.client = client
        self.ip = ip
        self.app = app
        self.mode = mode

    @property
    def state(self) -> Any:
        return self.app.state.gw

    async def register(self, **fields: Any) -> Account:
        email = fields.pop("email", f"w{secrets.token_hex(6)}@workshop.example")
        policy = (await self.client.get("/v1/privacy-policy")).json()["version"]
        r = await self.client.post(
            "/v1/accounts",
            json={"email": email, "password": PASSWORD, "privacy_policy_version": policy, **fields},
        )
        assert r.status_code == 201, r.text
        token = await self.login(email)
        return Account(id=r.json()["id"], email=email, token=token)

    async def login(self, email: str, password: str = PASSWORD) -> str:
        r = await self.client.post("/v1/auth/token", data={"username": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def with_key(self, account: Account, kind: str = "ec") -> Account:
        key, jwk = signing.ec_key() if kind == "ec" else signing.rsa_key()
        r = await self.client.post("/v1/attestation-keys", json={"jwk": jwk}, headers=account.auth)
        assert r.status_code == 201, r.text
        account.key, account.kid = key, r.json()["kid"]
        return account

    async def workshop(self) -> Account:
        return await self.with_key(await self.register())

    def attest(self, account: Account, vin: str, **claims: Any) -> dict[str, str]:
        token = signing.attestation(account.key, account.kid, account.id, vin, **claims)
        return {**account.auth, "VIN-Attestation": token}

    async def lookup(self, account: Account, vin: str, **body: Any) -> httpx.Response:
        return await self.client.post(
            "/v1/lookups", json={"vin": vin, **body}, headers=self.attest(account, vin)
        )


def settings_for(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any
) -> Settings:
    """Embedded defaults, or real Redis + PostgreSQL ("services"; "cluster": a real 3-master
    Redis Cluster of the test session instead of one Redis), plus overrides."""
    if mode == "embedded":
        return embedded_settings(tmp_path, **overrides)
    accounts_url, log_url = request.getfixturevalue("postgres_urls")
    if mode == "cluster":
        overrides = {"redis_cluster": True, **overrides}
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        **{
            "redis_url": request.getfixturevalue(
                "redis_cluster_url" if mode == "cluster" else "redis_url"
            ),
            "database_url": accounts_url,
            "log_database_url": log_url,
            "migrate_on_start": True,
            **FAST_ARGON2,
            **overrides,
        },
    )


@asynccontextmanager
async def serving(settings: Settings, mode: str) -> AsyncIterator[Api]:
    """The app with its lifespan, and a client that speaks to it over ASGI."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        # each app gets its own client address: the per-IP limit of registration and login
        # is shared through Redis across the apps of a test run
        client_ip = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            yield Api(client, app, mode, client_ip)


@pytest.fixture(params=["embedded", "services"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(settings_for(request.param, request, tmp_path), request.param) as a:
        yield a
