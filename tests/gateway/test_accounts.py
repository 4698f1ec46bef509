"""Accounts through the HTTP API: registration, login, keys, consent, rights, suspension."""

from __future__ import annotations

import time

import pytest

from tests.gateway import signing
from tests.gateway.conftest import PASSWORD, Api


def problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


async def test_register_login_and_me(api: Api) -> None:
    acct = await api.register(email="  Garage@Example.COM ", company="Garage GmbH")
    assert acct.email.strip().lower() == "garage@example.com"
    r = await api.client.get("/v1/me", headers=acct.auth)
    assert r.status_code == 200
    me = r.json()
    assert me["email"] == "garage@example.com"
    assert me["company"] == "Garage GmbH"
    assert me["consent_version"] == (await api.client.get("/v1/privacy-policy")).json()["version"]
    assert "password_hash" not in me and "registration_ip" not in me


async def test_registration_refusals(api: Api) -> None:
    acct = await api.register()
    policy = (await api.client.get("/v1/privacy-policy")).json()["version"]
    base = {"email": acct.email.upper(), "password": PASSWORD, "privacy_policy_version": policy}
    problem(await api.client.post("/v1/accounts", json=base), 409, "email_taken")
    weak = {**base, "email": "new@example.com", "password": "short"}
    body = problem(await api.client.post("/v1/accounts", json=weak), 422, "weak_password")
    assert "short" not in body["detail"]
    stale = {**base, "email": "new@example.com", "privacy_policy_version": "1999-01-01"}
    problem(
        await api.client.post("/v1/accounts", json=stale), 422, "privacy_policy_version_mismatch"
    )
    unknown = {**base, "email": "new@example.com", "role": "admin"}
    problem(await api.client.post("/v1/accounts", json=unknown), 422, "invalid_request")
    bad_email = {**base, "email": "not-an-email"}
    body = problem(await api.client.post("/v1/accounts", json=bad_email), 422, "invalid_request")
    assert "not-an-email" not in str(body)


async def test_login_does_not_tell_unknown_from_wrong(api: Api) -> None:
    acct = await api.register()
    wrong = await api.client.post(
        "/v1/auth/token", data={"username": acct.email, "password": "wrong password 123"}
    )
    unknown = await api.client.post(
        "/v1/auth/token", data={"username": "nobody@example.com", "password": "wrong password 123"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"


async def test_bearer_required_and_checked(api: Api) -> None:
    problem(await api.client.get("/v1/me"), 401, "not_authenticated")
    problem(
        await api.client.get("/v1/me", headers={"Authorization": "Bearer nonsense"}),
        401,
        "invalid_token",
    )
    acct = await api.register()
    tampered = acct.token[:-4] + ("AAAA" if not acct.token.endswith("AAAA") else "BBBB")
    problem(
        await api.client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}),
        401,
        "invalid_token",
    )


async def test_api_keys_lifecycle(api: Api) -> None:
    acct = await api.register()
    r = await api.client.post("/v1/api-keys", json={"name": "workshop pc"}, headers=acct.auth)
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("vgk_")
    listed = (await api.client.get("/v1/api-keys", headers=acct.auth)).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and "secret_sha256" not in listed[0]
    as_key = {"Authorization": f"Bearer {created['key']}"}
    assert (await api.client.get("/v1/me", headers=as_key)).json()["id"] == acct.id
    r = await api.client.delete(f"/v1/api-keys/{created['id']}", headers=acct.auth)
    assert r.status_code == 200 and r.json()["revoked_at"]
    problem(await api.client.get("/v1/me", headers=as_key), 401, "invalid_token")
    other = await api.register()
    problem(
        await api.client.delete(f"/v1/api-keys/{created['id']}", headers=other.auth),
        404,
        "not_found",
    )


@pytest.mark.parametrize(
    ("make_jwk", "reason"),
    [
        (lambda: signing.rsa_key(1024)[1], "1024"),
        (lambda: {**signing.ec_key()[1], "crv": "P-384"}, "P-256"),
        (lambda: {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}, "symmetric"),
        (lambda: {**signing.ec_key()[1], "d": "AAAA"}, "private"),
        (lambda: {**signing.ec_key()[1], "alg": "RS256"}, "'alg' does not match"),
        (lambda: {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, "EC P-256 and RSA"),
    ],
)
async def test_attestation_key_refusals(api: Api, make_jwk, reason: str) -> None:
    acct = await api.register()
    r = await api.client.post("/v1/attestation-keys", json={"jwk": make_jwk()}, headers=acct.auth)
    body = problem(r, 422, "attestation_key_unsupported")
    assert reason in body["detail"]


async def test_a_declared_alg_is_not_echoed(api: Api) -> None:
    acct = await api.register()
    jwk = {**signing.ec_key()[1], "alg": "<b>HS999</b>"}
    r = await api.client.post("/v1/attestation-keys", json={"jwk": jwk}, headers=acct.auth)
    problem(r, 422, "attestation_key_unsupported")
    assert "HS999" not in r.text


async def test_attestation_keys_lifecycle(api: Api) -> None:
    acct = await api.with_key(await api.register(), "rsa")
    listed = (await api.client.get("/v1/attestation-keys", headers=acct.auth)).json()
    assert [(k["kid"], k["alg"]) for k in listed] == [(acct.kid, "RS256")]
    vin = "1HGCM82633A004352"
    assert (await api.lookup(acct, vin)).status_code == 200
    r = await api.client.delete(f"/v1/attestation-keys/{acct.kid}", headers=acct.auth)
    assert r.status_code == 200 and r.json()["revoked_at"]
    problem(await api.lookup(acct, vin), 403, "attestation_unknown_key")


async def test_policy_change_requires_acceptance(api: Api) -> None:
    acct = await api.workshop()
    vin = "1HGCM82633A004352"
    assert (await api.lookup(acct, vin)).status_code == 200
    # The operator publishes a new policy version: VIN endpoints refuse until it is accepted.
    object.__setattr__(api.state.settings, "privacy_policy_version", "2099-01-01")
    api.state.auth.forget(acct.id)
    body = problem(await api.lookup(acct, vin), 403, "privacy_policy_acceptance_required")
    assert body["privacy_policy_version"] == "2099-01-01"
    problem(
        await api.client.post(
            "/v1/me/consent", json={"privacy_policy_version": "2026-11-01"}, headers=acct.auth
        ),
        422,
        "privacy_policy_version_mismatch",
    )
    r = await api.client.post(
        "/v1/me/consent", json={"privacy_policy_version": "2099-01-01"}, headers=acct.auth
    )
    assert r.status_code == 200 and r.json()["consent_version"] == "2099-01-01"
    assert (await api.lookup(acct, vin)).status_code == 200


async def test_consent_withdrawal_stops_vin_queries(api: Api) -> None:
    acct = await api.workshop()
    r = await api.client.delete("/v1/me/consent", headers=acct.auth)
    assert r.status_code == 200 and r.json()["consent_version"] is None
    problem(await api.lookup(acct, "1HGCM82633A004352"), 403, "consent_withdrawn")
    export = (await api.client.get("/v1/me/export", headers=acct.auth)).json()
    assert [c["action"] for c in export["consents"]] == ["accept", "withdraw"]


async def test_correct_and_cancel_account(api: Api) -> None:
    acct = await api.register()
    r = await api.client.patch("/v1/me", json={"company": "New Name Ltd"}, headers=acct.auth)
    assert r.status_code == 200 and r.json()["company"] == "New Name Ltd"
    problem(
        await api.client.patch("/v1/me", json={"email": "x@example.com"}, headers=acct.auth),
        422,
        "invalid_request",
    )
    r = await api.client.patch(
        "/v1/me",
        json={"email": "Moved@Example.com", "current_password": PASSWORD},
        headers=acct.auth,
    )
    assert r.status_code == 200 and r.json()["email"] == "moved@example.com"
    r = await api.client.delete("/v1/me", headers=acct.auth)
    assert r.status_code == 204
    problem(await api.client.get("/v1/me", headers=acct.auth), 401, "invalid_token")
    problem(
        await api.client.post(
            "/v1/auth/token", data={"username": "moved@example.com", "password": PASSWORD}
        ),
        401,
        "invalid_credentials",
    )


async def test_export_has_every_part(api: Api) -> None:
    acct = await api.workshop()
    await api.client.post("/v1/api-keys", json={"name": "k"}, headers=acct.auth)
    assert (await api.lookup(acct, "1HGCM82633A004352")).status_code == 200
    export = (await api.client.get("/v1/me/export", headers=acct.auth)).json()
    assert set(export) == {
        "account", "consents", "api_keys", "attestation_keys", "search_log", "vehicles", "grants"
    }  # fmt: skip
    assert export["account"]["id"] == acct.id
    assert "password_hash" not in export["account"]
    assert export["account"]["registration_ip"] == api.ip
    assert [k["name"] for k in export["api_keys"]] == ["k"]
    assert "secret_sha256" not in export["api_keys"][0]
    assert [k["kid"] for k in export["attestation_keys"]] == [acct.kid]
    assert len(export["search_log"]) == 1
    row = export["search_log"][0]
    assert row["outcome"] in {"ok", "miss"}
    # the attestation's facts: basis, purpose, keyed digests of its jti and of the token
    assert row["basis"] == "owner" and row["purpose"] == "parts_inquiry"
    assert len(row["jti_digest"]) == len(row["token_digest"]) == 32
    assert row["jti_digest"] != row["token_digest"]


async def test_admin_suspends_and_unsuspends(api: Api) -> None:
    admin_acct, _ = await api.state.accounts.create_admin("boss@example.com", PASSWORD)
    admin_token = await api.login("boss@example.com")
    admin = {"Authorization": f"Bearer {admin_token}"}
    user = await api.workshop()
    problem(
        await api.client.post(
            f"/v1/admin/accounts/{admin_acct.id}/suspend",
            json={"reason": "test"},
            headers=user.auth,
        ),
        403,
        "admin_required",
    )
    r = await api.client.post(
        f"/v1/admin/accounts/{user.id}/suspend", json={"reason": "scraping case 17"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    problem(await api.lookup(user, "1HGCM82633A004352"), 403, "account_suspended")
    problem(await api.client.get("/v1/me", headers=user.auth), 403, "account_suspended")
    r = await api.client.post(
        f"/v1/admin/accounts/{user.id}/unsuspend", json={"reason": "cleared"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert (await api.lookup(user, "1HGCM82633A004352")).status_code == 200


async def test_access_token_expiry(api: Api) -> None:
    acct = await api.register()
    token, _ = api.state.tokens.issue(acct.id, now=int(time.time()) - 3600)
    problem(
        await api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}),
        401,
        "invalid_token",
    )


async def test_timestamps_carry_their_utc_offset_on_both_databases(api: Api) -> None:
    """RFC 3339 as docs/api.md promises: SQLite used to give them back without an offset."""
    from datetime import datetime

    acct = await api.register()
    r = await api.client.post("/v1/api-keys", json={"name": "ci"}, headers=acct.auth)
    assert r.status_code == 201, r.text
    stamps = [
        (await api.client.get("/v1/me", headers=acct.auth)).json()["created_at"],
        (await api.client.get("/v1/api-keys", headers=acct.auth)).json()[0]["created_at"],
    ]
    for stamp in stamps:
        parsed = datetime.fromisoformat(stamp)
        assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0, stamp
