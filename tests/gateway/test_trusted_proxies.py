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
