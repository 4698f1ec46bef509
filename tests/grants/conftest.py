"""Fixtures of the grants tests: the app on both configurations (embedded SQLite + the
in-process Redis stand-in, and real PostgreSQL + Redis), with settings overrides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Account, Api, serving, settings_for

VIN = "1HGCM82633A004352"
OTHER_VIN = "WVWZZZ1JZXW000001"
PURPOSES = ["parts_inquiry", "maintenance"]

Serve = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture(params=["embedded", "services"])
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Serve:
    """``async with serve(**settings overrides) as api``: the app in this test's configuration."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[Api]:
        return serving(settings_for(request.param, request, tmp_path, **overrides), request.param)

    return start


@pytest.fixture
async def api(serve: Serve) -> AsyncIterator[Api]:
    async with serve() as a:
        yield a


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def vehicle(
    api: Api, owner: Account, vin: str = VIN, label: str | None = "family car"
) -> str:
    r = await api.client.post("/v1/vehicles", json={"vin": vin, "label": label}, headers=owner.auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def workshop_code(api: Api, account: Account) -> str:
    r = await api.client.get("/v1/me", headers=account.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["workshop_code"])


async def grant(api: Api, owner: Account, vehicle_id: str, **body: Any) -> dict[str, Any]:
    r = await api.client.post(
        "/v1/grants",
        json={"vehicle_id": vehicle_id, "valid_until": in_days(30), **body},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["code"] == code, body
    return body
