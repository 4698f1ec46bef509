"""Client IP behind a reverse proxy: X-Forwarded-For counts only from VINGW_TRUSTED_PROXIES.

Seen through the per-network login limit (burst 1): two logins from different forwarded
networks share one bucket unless the proxy that forwarded them is trusted."""

from __future__ import annotations

import httpx
import pytest

from gateway.cli import proxy_options
from gateway.config import Settings, trusted_networks

from . import procs

pytestmark = pytest.mark.slow

LOGIN = {"username": "nobody@workshop.example", "password": "not the password"}


def two_logins(base: str) -> list[int]:
    statuses = []
    for network in ("203.0.113.7", "198.51.100.9"):
        r = httpx.post(base + "/v1/auth/token", data=LOGIN, headers={"X-Forwarded-For": network})
        statuses.append(r.status_code)
    return statuses


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [("127.0.0.1", [401, 401]), ("", [401, 429]), ("192.0.2.0/24", [401, 429])],
)
def test_forwarded_for_only_from_trusted_proxies(
    tmp_path, trusted: str, expected: list[int]
) -> None:
    env = {
        **procs.FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_LIMIT_IP_BURST": "1",
        "VINGW_LIMIT_IP_PER_S": "0.001",
        "VINGW_TRUSTED_PROXIES": trusted,
    }
    with procs.running(["serve"], env, health="/readyz") as (base, _):
        assert two_logins(base) == expected


def test_trusted_proxies_are_checked() -> None:
    assert trusted_networks(" 10.0.0.0/8, ::1 ,") == ["10.0.0.0/8", "::1"]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address or CIDR"):
        Settings(trusted_proxies="10.0.0.300")
    assert proxy_options([]) == {"proxy_headers": False, "forwarded_allow_ips": None}
    assert proxy_options(["10.0.0.0/8"])["proxy_headers"] is True


@pytest.mark.parametrize("trusted", [True, False])
def test_every_use_of_the_client_address_follows_the_trust(tmp_path, trusted: bool) -> None:
    """Behind a trusted proxy the forwarded client counts everywhere: the login throttle's
    known networks, the search log's truncated address, the registration address (the per-IP
    limit: above). Not trusted, the TCP peer counts, whatever the header says."""
    import sqlite3

    from tests.gateway import signing

    env = {
        **procs.FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_TRUSTED_PROXIES": "127.0.0.1" if trusted else "",
        "VINGW_LIMIT_IP_BURST": "100",
        "VINGW_LOGIN_FREE_FAILURES": "1",
        "VINGW_LOGIN_KNOWN_FREE_FAILURES": "10",
        "VINGW_LOGIN_BASE_DELAY_S": "600",
    }
    vin = "1HGCM82633A004352"
    home = {"X-Forwarded-For": "203.0.113.7"}  # where the workshop registers and logs in
    with (
        procs.running(["serve"], env, health="/readyz") as (base, _),
        httpx.Client(base_url=base, headers=home) as client,
    ):
        w = procs.workshop(client)  # its successful login makes its network known
        token = signing.attestation(w["key"], w["kid"], w["id"], vin)
        r = client.post(
            "/v1/lookups", json={"vin": vin}, headers={**w["auth"], "VIN-Attestation": token}
        )
        assert r.status_code == 200, r.text
        email = client.get("/v1/me", headers=w["auth"]).json()["email"]
        away = {"X-Forwarded-For": "198.51.100.9"}  # someone else guessing its password
        guesses = [
            client.post(
                "/v1/auth/token",
                data={"username": email, "password": "a wrong guess 123"},
                headers=away,
            ).status_code
            for _ in range(2)
        ]
    # forwarded: an unfamiliar network (1 free failure); the peer: the known one (10)
    assert guesses == ([401, 429] if trusted else [401, 401])
    with sqlite3.connect(tmp_path / "accounts.sqlite3") as db:
        (registered,) = db.execute(
            "SELECT registration_ip FROM account WHERE id = ?", (w["id"],)
        ).fetchone()
    assert registered == ("203.0.113.7" if trusted else "127.0.0.1")
    with sqlite3.connect(tmp_path / "searchlog.sqlite3") as db:
        logged = [row[0] for row in db.execute("SELECT client_ip FROM search_event")]
    assert logged == (["203.0.113.0/24"] if trusted else ["127.0.0.0/24"])
