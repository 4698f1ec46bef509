"""Declared vehicles: the VIN is checked like on the VIN endpoints and never comes back."""

from __future__ import annotations

from tests.gateway.conftest import Api
from tests.grants.conftest import OTHER_VIN, VIN, Serve, problem, vehicle


async def test_vehicle_crud(api: Api) -> None:
    owner, other = await api.register(), await api.register()
    r = await api.client.post(
        "/v1/vehicles", json={"vin": " " + VIN.lower() + "\n", "label": "van"}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "label", "created_at"}
    assert created["id"].startswith("veh_") and len(created["id"]) == 20
    assert created["label"] == "van"
    assert VIN not in r.text and VIN.lower() not in r.text
    vid = created["id"]

    listed = (await api.client.get("/v1/vehicles", headers=owner.auth)).json()
    assert listed == {"vehicles": [created]}
    assert (await api.client.get("/v1/vehicles", headers=other.auth)).json() == {"vehicles": []}

    r = await api.client.patch(f"/v1/vehicles/{vid}", json={"label": "old van"}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["label"] == "old van"
    r = await api.client.patch(f"/v1/vehicles/{vid}", json={}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["label"] == "old van"  # nothing sent, nothing changed
    r = await api.client.patch(f"/v1/vehicles/{vid}", json={"label": None}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["label"] is None

    # another account's vehicle does not exist for it
    problem(
        await api.client.patch(f"/v1/vehicles/{vid}", json={"label": "x"}, headers=other.auth),
        404,
        "not_found",
    )
    problem(await api.client.delete(f"/v1/vehicles/{vid}", headers=other.auth), 404, "not_found")
    problem(
        await api.client.delete("/v1/vehicles/veh_0000000000000000", headers=owner.auth),
        404,
        "not_found",
    )

    r = await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth)
    assert r.status_code == 204
    assert (await api.client.get("/v1/vehicles", headers=owner.auth)).json() == {"vehicles": []}
    problem(await api.client.delete(f"/v1/vehicles/{vid}", headers=owner.auth), 404, "not_found")


async def test_invalid_vins_are_refused_like_on_the_vin_endpoints(api: Api) -> None:
    owner = await api.workshop()
    bad_check_digit = VIN[:8] + ("0" if VIN[8] != "0" else "1") + VIN[9:]
    for bad in (bad_check_digit, VIN[:-1], VIN[:5] + "\u017f" + VIN[6:], VIN[:3] + "O" + VIN[4:]):
        r = await api.client.post("/v1/vehicles", json={"vin": bad}, headers=owner.auth)
        body = problem(r, 422, "invalid_vin")
        assert body["errors"] and all("code" in e for e in body["errors"])
        assert bad.strip() not in r.text
        # the same problem as the VIN endpoints give for that VIN
        d = await api.client.post(
            "/v1/vins/decode", json={"vin": bad}, headers=api.attest(owner, bad)
        )
        assert problem(d, 422, "invalid_vin")["errors"] == body["errors"]
    problem(
        await api.client.post("/v1/vehicles", json={"label": "no vin"}, headers=owner.auth),
        422,
        "invalid_request",
    )
    problem(
        await api.client.post(
            "/v1/vehicles", json={"vin": VIN, "label": "x" * 65}, headers=owner.auth
        ),
        422,
        "invalid_request",
    )
    assert (await api.client.get("/v1/vehicles", headers=owner.auth)).json() == {"vehicles": []}


async def test_duplicates_per_owner(api: Api) -> None:
    owner, other = await api.register(), await api.register()
    await vehicle(api, owner)
    r = await api.client.post("/v1/vehicles", json={"vin": VIN.lower()}, headers=owner.auth)
    problem(r, 409, "vehicle_exists")
    assert VIN not in r.text
    await vehicle(api, other)  # another owner may declare it (the server cannot tell who is right)
    await vehicle(api, owner, OTHER_VIN)
    assert len((await api.client.get("/v1/vehicles", headers=owner.auth)).json()["vehicles"]) == 2


async def test_vehicle_limit(serve: Serve) -> None:
    async with serve(grant_max_vehicles=2) as api:
        owner = await api.register()
        await vehicle(api, owner, VIN)
        await vehicle(api, owner, OTHER_VIN)
        r = await api.client.post(
            "/v1/vehicles", json={"vin": "JH4KA7561PC008269"}, headers=owner.auth
        )
        body = problem(r, 409, "vehicle_limit_reached")
        assert body["max_vehicles"] == 2
        # a duplicate is still a duplicate at the limit
        r = await api.client.post("/v1/vehicles", json={"vin": VIN}, headers=owner.auth)
        problem(r, 409, "vehicle_exists")
