"""The attested VIN endpoints through the HTTP API: happy paths and every refusal."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.gateway import signing
from tests.gateway.conftest import Api
from tests.gateway.test_accounts import problem

VIN = "1HGCM82633A004352"  # public example VIN (Honda Accord 2003), used by many decoders' docs
EU_VIN = "WVWZZZ1KZ6W612305"  # sunrise-php/vin tests: a VW Golf V built in Germany


async def test_lookup_happy_path(api: Api) -> None:
    acct = await api.workshop()
    r = await api.lookup(acct, VIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"query_id", "vehicle", "vehicle_type", "alternatives", "parts"}
    vehicle = body["vehicle"]
    assert vehicle["vin"] == VIN and vehicle["valid"] is True
    assert vehicle["wmi"] == "1HG" and vehicle["model_year"] == 2003
    assert vehicle["check_digit"] == {
        "required": True,
        "valid": True,
        "expected": "3",
        "found": "3",
    }
    assert "RateLimit" in r.headers and "RateLimit-Policy" in r.headers
    if body["vehicle_type"] is None:
        assert body["parts"] == [] and body["reason"]
    else:
        assert body["parts"] and {"part_number", "name", "category", "brand"} <= set(
            body["parts"][0]
        )


async def test_decode_endpoint_and_lowercase_vin(api: Api) -> None:
    acct = await api.workshop()
    lower = "  " + EU_VIN.lower() + " "
    r = await api.client.post(
        "/v1/vins/decode", json={"vin": lower}, headers=api.attest(acct, EU_VIN)
    )
    assert r.status_code == 200, r.text
    vehicle = r.json()["vehicle"]
    assert vehicle["vin"] == EU_VIN
    assert vehicle["country_code"] == "DE"
    assert vehicle["check_digit"]["required"] is False


async def test_categories_filter_and_catalogue_listing(api: Api) -> None:
    acct = await api.workshop()
    cats = (await api.client.get("/v1/catalogue/categories", headers=acct.auth)).json()
    ids = [c["id"] for c in cats["categories"]]
    assert "brakes" in ids and "filters" in ids
    r = await api.lookup(acct, VIN, categories=["brakes"])
    assert r.status_code == 200
    assert {p["category"] for p in r.json()["parts"]} <= {"brakes"}


async def test_unknown_vehicle_is_a_miss_not_an_error(api: Api) -> None:
    import vin as vinlib

    acct = await api.workshop()
    base = "9ZZAB1230AB123456"  # well-formed, but no catalogue knows this manufacturer
    vin = base[:8] + vinlib.check_digit(base) + base[9:]
    r = await api.lookup(acct, vin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["vehicle"]["valid"] is True
    assert body["vehicle_type"] is None and body["parts"] == [] and body["reason"]


async def test_vehicle_type_choice(api: Api) -> None:
    vin = "WA1EY74LX9D205644"  # an Audi Q7 2009: the sample catalogue offers several types
    acct = await api.workshop()
    first = (await api.lookup(acct, vin)).json()
    assert first["vehicle_type"] is not None and first["alternatives"], first
    chosen = first["alternatives"][0]
    assert chosen["id"] != first["vehicle_type"]["id"]
    r = await api.lookup(acct, vin, vehicle_type_id=chosen["id"])
    assert r.status_code == 200
    body = r.json()
    assert body["vehicle_type"]["id"] == chosen["id"]
    assert first["vehicle_type"]["id"] in [t["id"] for t in body["alternatives"]]
    problem(
        await api.lookup(acct, vin, vehicle_type_id="vt_not_this_one"),
        422,
        "vehicle_type_not_matching",
    )


async def test_invalid_vin_is_422_with_every_problem(api: Api) -> None:
    acct = await api.workshop()
    bad = "1HGCM82643A00435Q"  # wrong check digit and a Q
    r = await api.lookup(acct, bad)
    body = problem(r, 422, "invalid_vin")
    codes = {(e["code"], e.get("position")) for e in body["errors"]}
    assert ("invalid_character", 17) in codes
    assert bad not in r.text.replace(json.dumps(bad), "")  # not echoed in messages
    for e in body["errors"]:
        assert bad not in e["message"]


def _now() -> int:
    return int(time.time())


REFUSALS = [
    ("attestation_missing", lambda a, acct, vin: {**acct.auth}),
    ("attestation_malformed", lambda a, acct, vin: {**acct.auth, "VIN-Attestation": "abc.def"}),
    ("attestation_malformed", lambda a, acct, vin: a.attest(acct, vin, header={"typ": "JWT"})),
    ("attestation_malformed", lambda a, acct, vin: a.attest(acct, vin, jti="short")),
    (
        "attestation_malformed",
        lambda a, acct, vin: a.attest(acct, vin, header={"crit": ["x-foo"], "x-foo": 1}),
    ),
    (
        "attestation_malformed",
        lambda a, acct, vin: a.attest(acct, vin, header={"crit": [["x"], {}]}),
    ),
    ("attestation_malformed", lambda a, acct, vin: a.attest(acct, vin, header={"crit": []})),
    (
        "attestation_bad_signature",
        lambda a, acct, vin: {
            **acct.auth,
            "VIN-Attestation": signing.attestation(signing.ec_key()[0], acct.kid, acct.id, vin),
        },
    ),
    (
        "attestation_unknown_key",
        lambda a, acct, vin: {
            **acct.auth,
            "VIN-Attestation": signing.attestation(acct.key, "ak_doesnotexist00", acct.id, vin),
        },
    ),
    (
        "attestation_algorithm_not_allowed",
        lambda a, acct, vin: {
            **acct.auth,
            "VIN-Attestation": signing.attestation(acct.key, acct.kid, acct.id, vin, alg="RS256"),
        },
    ),
    (
        "attestation_expired",
        lambda a, acct, vin: a.attest(acct, vin, iat=_now() - 400, exp=_now() - 200),
    ),
    (
        "attestation_not_yet_valid",
        lambda a, acct, vin: a.attest(acct, vin, iat=_now() + 600, exp=_now() + 700),
    ),
    ("attestation_lifetime_too_long", lambda a, acct, vin: a.attest(acct, vin, exp=_now() + 3600)),
    (
        "attestation_subject_mismatch",
        lambda a, acct, vin: a.attest(acct, vin, sub="acct_someoneelse"),
    ),
    (
        "attestation_issuer_mismatch",
        lambda a, acct, vin: a.attest(acct, vin, iss="acct_someoneelse"),
    ),
    (
        "attestation_audience_mismatch",
        lambda a, acct, vin: a.attest(acct, vin, aud="another-service"),
    ),
    ("attestation_vin_mismatch", lambda a, acct, vin: a.attest(acct, "JH4DC4340RS003205")),
    ("attestation_basis_invalid", lambda a, acct, vin: a.attest(acct, vin, basis="none")),
    ("attestation_purpose_invalid", lambda a, acct, vin: a.attest(acct, vin, purpose="resale")),
    (
        "owner_authorization_missing",
        lambda a, acct, vin: a.attest(acct, vin, basis="owner_authorized"),
    ),
    (
        "owner_authorization_expired",
        lambda a, acct, vin: a.attest(
            acct,
            vin,
            basis="owner_authorized",
            owner_authorization={"ref": "WO-1", "valid_until": _now() - 1},
        ),
    ),
    (
        "purpose_out_of_scope",
        lambda a, acct, vin: a.attest(
            acct,
            vin,
            basis="owner_authorized",
            purpose="maintenance",
            owner_authorization={
                "ref": "WO-2",
                "valid_until": _now() + 99,
                "scope": ["parts_inquiry"],
            },
        ),
    ),
]


@pytest.mark.parametrize(("code", "make_headers"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_attestation_refusals(api: Api, code: str, make_headers) -> None:
    acct = await api.workshop()
    headers = make_headers(api, acct, VIN)
    r = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
    problem(r, 403, code)


async def test_hs256_forgery_with_public_key_is_refused(api: Api) -> None:
    import hashlib
    import hmac

    acct = await api.workshop()
    jwk = (await api.client.get("/v1/attestation-keys", headers=acct.auth)).json()[0]["jwk"]
    header = signing.b64(
        json.dumps({"alg": "HS256", "kid": acct.kid, "typ": "vin-attestation+jwt"}).encode()
    )
    claims = signing.b64(
        json.dumps(
            {
                "iss": acct.id,
                "sub": acct.id,
                "aud": "vin-gateway",
                "iat": _now(),
                "exp": _now() + 60,
                "jti": "forged-jti-0000000001",
                "vin_sha256": signing.vin_sha256(VIN),
                "basis": "owner",
                "purpose": "parts_inquiry",
            }
        ).encode()
    )
    secret = json.dumps(jwk).encode()
    sig = signing.b64(hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    r = await api.client.post(
        "/v1/lookups",
        json={"vin": VIN},
        headers={**acct.auth, "VIN-Attestation": f"{header}.{claims}.{sig}"},
    )
    problem(r, 403, "attestation_algorithm_not_allowed")


@pytest.mark.parametrize("api", ["embedded", "services", "cluster"], indirect=True)
async def test_replay_is_refused(api: Api) -> None:
    acct = await api.workshop()
    headers = api.attest(acct, VIN)
    first = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
    assert first.status_code == 200
    again = await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
    problem(again, 403, "attestation_replayed")


async def test_other_accounts_key_is_unknown(api: Api) -> None:
    owner = await api.workshop()
    thief = await api.workshop()
    token = signing.attestation(owner.key, owner.kid, thief.id, VIN, iss=thief.id)
    r = await api.client.post(
        "/v1/lookups", json={"vin": VIN}, headers={**thief.auth, "VIN-Attestation": token}
    )
    problem(r, 403, "attestation_unknown_key")


async def test_gateway_issued_attestation(api: Api) -> None:
    acct = await api.register()  # an interactive user: no key of their own
    r = await api.client.post(
        "/v1/attestations",
        json={
            "vin": VIN,
            "basis": "owner_authorized",
            "purpose": "maintenance",
            "owner_authorization": {"ref": "WO-77", "valid_until": _now() + 3600},
        },
        headers=acct.auth,
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    assert set(issued) == {"attestation", "expires_at", "jti"}
    headers = {**acct.auth, "VIN-Attestation": issued["attestation"]}
    assert (
        await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers)
    ).status_code == 200
    problem(
        await api.client.post("/v1/lookups", json={"vin": VIN}, headers=headers),
        403,
        "attestation_replayed",
    )
    other = await api.register()
    r = await api.client.post(
        "/v1/lookups",
        json={"vin": VIN},
        headers={**other.auth, "VIN-Attestation": issued["attestation"]},
    )
    problem(r, 403, "attestation_subject_mismatch")
    problem(
        await api.client.post(
            "/v1/attestations",
            json={"vin": VIN, "basis": "owner_authorized", "purpose": "maintenance"},
            headers=acct.auth,
        ),
        403,
        "owner_authorization_missing",
    )


async def test_bad_bodies(api: Api) -> None:
    acct = await api.workshop()
    h = api.attest(acct, VIN)
    problem(
        await api.client.post(
            "/v1/lookups", content=b"{not json", headers={**h, "Content-Type": "application/json"}
        ),
        400,
        "malformed_json",
    )
    problem(
        await api.client.post(
            "/v1/lookups",
            content=b"vin=" + VIN.encode(),
            headers={**h, "Content-Type": "text/plain"},
        ),
        415,
        "unsupported_media_type",
    )
    problem(
        await api.client.post(
            "/v1/lookups",
            content=b"{" + b" " * 20000 + b"}",
            headers={**h, "Content-Type": "application/json"},
        ),
        413,
        "payload_too_large",
    )
    body = problem(
        await api.client.post("/v1/lookups", json={"vin": VIN, "colour": "red"}, headers=h),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["code"] == "extra_forbidden"
    assert "colour" not in str(body)  # unknown field names are client input: not echoed
    problem(
        await api.client.post("/v1/lookups", json={"vin": VIN, VIN: 1}, headers=h),
        422,
        "invalid_request",
    )
    problem(
        await api.client.post("/v1/lookups", json={"vin": 17}, headers=h), 422, "invalid_request"
    )
    # none of these consumed the attestation: it still works once
    assert (await api.client.post("/v1/lookups", json={"vin": VIN}, headers=h)).status_code == 200


async def test_no_vin_or_token_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    acct = await api.workshop()
    await api.lookup(acct, VIN)
    await api.lookup(acct, "1HGCM82643A00435Q")
    await api.client.post(
        "/v1/lookups", json={"vin": VIN}, headers={**acct.auth, "VIN-Attestation": "x.y.z"}
    )
    text = caplog.text
    for secret in (VIN, "1HGCM82643A00435Q", acct.token):
        assert secret not in text
