"""The VIN endpoints answered by ``VinDispatch`` (before FastAPI's router) and by their FastAPI
routes (what the OpenAPI document describes) give the same answers, refusals included."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway.main import create_app

from .conftest import Api

VIN = "1HGCM82633A004352"


def routes_only(api: Api) -> httpx.AsyncClient:
    """A client of the same gateway (its state: accounts, limiter, search log) whose VIN
    requests go through FastAPI's routes instead of ``VinDispatch``."""
    twin = create_app(api.state.settings, vin_dispatch=False)
    twin.state.gw = api.state
    transport = httpx.ASGITransport(app=twin, client=(api.ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


def shape(r: httpx.Response) -> tuple[int, str, list[str], Any]:
    body = r.json()
    if "query_id" in body:
        body["query_id"] = "q"  # random per answer
    if "attestation" in body:
        body = sorted(body)  # a new token and jti each time
    headers = sorted(k for k in r.headers if k.lower() not in {"content-length"})
    return r.status_code, r.headers["content-type"], headers, body


@pytest.mark.parametrize(
    ("path", "make_body", "status"),
    [
        ("/v1/lookups", lambda: {"vin": VIN}, 200),
        ("/v1/vins/decode", lambda: {"vin": VIN}, 200),
        ("/v1/attestations", lambda: {"vin": VIN, "basis": "owner", "purpose": "maintenance"}, 201),
        ("/v1/lookups", lambda: {"vin": "1HGCM82633A00435Q"}, 422),  # invalid VIN
        ("/v1/lookups", lambda: {"vin": VIN, "colour": "red"}, 422),  # schema
    ],
)
async def test_dispatch_and_fastapi_route_answer_alike(
    api: Api, path: str, make_body: Any, status: int
) -> None:
    acct = await api.workshop()
    routes = routes_only(api)
    answers = []
    for client in (api.client, routes):
        body = make_body()
        headers = api.attest(acct, body["vin"])
        answers.append(await client.post(path, json=body, headers=headers))
    await routes.aclose()
    assert answers[0].status_code == status, answers[0].text
    assert shape(answers[0]) == shape(answers[1])


async def test_refused_attestation_alike(api: Api) -> None:
    acct = await api.workshop()
    routes = routes_only(api)
    bad = {**acct.auth, "VIN-Attestation": "x.y.z", "Content-Type": "application/json"}
    answers = [
        await c.post("/v1/lookups", content=orjson.dumps({"vin": VIN}), headers=bad)
        for c in (api.client, routes)
    ]
    await routes.aclose()
    assert answers[0].status_code == 403
    assert shape(answers[0]) == shape(answers[1])


async def test_a_refused_declaration_is_a_suspicious_usage_signal(api: Api) -> None:
    """POST /v1/attestations checks the declaration before admission, so a refused one is
    reported to the limiter like a refused attestation (the guessing score grows)."""
    acct = await api.workshop()
    before = (await api.state.limiter.peek(acct.id)).score
    expired = {"ref": "WO-1", "valid_until": 1}
    r = await api.client.post(
        "/v1/attestations",
        json={"vin": VIN, "basis": "owner_authorized", "purpose": "maintenance",
              "owner_authorization": expired},
        headers=acct.auth,
    )  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "owner_authorization_expired"
    weight = api.state.limiter.policy.weights["attestation_refused"]
    assert (await api.state.limiter.peek(acct.id)).score == before + weight
