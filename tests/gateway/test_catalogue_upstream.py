"""The upstream catalogue client: data minimization, timeouts, bounded retries, breaker.

The upstream here is an httpx MockTransport (a stand-in for a remote catalogue, not for Redis or
PostgreSQL); the real ``catalogue-serve`` process is exercised in test_processes.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

import vin as vinlib
from gateway.catalogue.backends import (
    Catalogue,
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
    CircuitBreaker,
    UpstreamBackend,
)
from gateway.lookups.endpoints import features_of

VIN = "1HGCM82633A004352"
TYPE = {"id": "vt_1", "make": "Honda", "model": "Accord", "years": {"from": 2003, "to": 2007}}


def catalogue_with(handler, **kw) -> tuple[Catalogue, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    backend = UpstreamBackend("http://upstream.test", transport=httpx.MockTransport(record), **kw)
    return Catalogue(backend), seen


def healthy(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/catalogue/v1/match":
        return httpx.Response(200, json={"types": [TYPE]})
    return httpx.Response(
        200,
        json={
            "parts": [
                {"part_number": "X1", "name": "Oil filter", "category": "filters", "brand": "Mann"}
            ]
        },
    )


async def test_upstream_never_receives_the_vin() -> None:
    catalogue, seen = catalogue_with(healthy)
    answer = await catalogue.lookup(features_of(vinlib.decode(VIN)))
    assert answer.vehicle_type == TYPE and answer.parts
    assert len(seen) == 2
    for request in seen:
        sent = request.content.decode() + str(request.url)
        assert VIN not in sent
        assert VIN[-6:] not in sent  # not even the serial number
    features = json.loads(seen[0].content)["features"]
    assert features["wmi"] == "1HG" and features["vds"] == "CM826"
    # a second lookup of the same vehicle features is served from the bounded caches
    await catalogue.lookup(features_of(vinlib.decode(VIN)))
    assert len(seen) == 2


async def test_server_errors_are_retried_then_502() -> None:
    catalogue, seen = catalogue_with(lambda r: httpx.Response(503), retries=2)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features_of(vinlib.decode(VIN)))
    assert len(seen) == 3


async def test_client_errors_are_not_retried() -> None:
    catalogue, seen = catalogue_with(lambda r: httpx.Response(400, json={}), retries=2)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features_of(vinlib.decode(VIN)))
    assert len(seen) == 1


async def test_timeouts_are_504() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    catalogue, _ = catalogue_with(slow, retries=1)
    with pytest.raises(CatalogueTimeout):
        await catalogue.lookup(features_of(vinlib.decode(VIN)))


async def test_breaker_opens_and_recovers() -> None:
    state = {"up": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        return healthy(request) if state["up"] else httpx.Response(500)

    now = [1000.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    catalogue, seen = catalogue_with(flaky, retries=0, breaker=breaker)
    features = features_of(vinlib.decode(VIN))
    for _ in range(2):
        with pytest.raises(CatalogueBadGateway):
            await catalogue.lookup(features)
    calls = len(seen)
    with pytest.raises(CatalogueUnavailable) as refused:
        await catalogue.lookup(features)
    assert len(seen) == calls  # open: the upstream is not called at all
    assert int(refused.value.headers["Retry-After"]) >= 1
    state["up"] = True
    now[0] += 9
    with pytest.raises(CatalogueUnavailable):  # still open within the cooldown
        await catalogue.lookup(features)
    now[0] += 2
    assert (await catalogue.lookup(features)).vehicle_type == TYPE


async def test_bad_json_is_502() -> None:
    catalogue, _ = catalogue_with(lambda r: httpx.Response(200, content=b"<html>"), retries=0)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features_of(vinlib.decode(VIN)))
