"""Real ``vin-gateway`` processes: the README flow over HTTP, replay across two workers,
the upstream catalogue served by ``catalogue-serve``, and start-up refusals."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.gateway import signing
from tests.gateway.procs import BIN, FAST_ENV, running, workshop

pytestmark = pytest.mark.slow

VIN = "1HGCM82633A004352"


def test_embedded_serve_end_to_end(tmp_path: Path) -> None:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path / "var")}
    with running(["serve"], env) as (base, output), httpx.Client(base_url=base) as client:
        w = workshop(client)
        token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
        r = client.post(
            "/v1/lookups", json={"vin": VIN}, headers={**w["auth"], "VIN-Attestation": token}
        )
        assert r.status_code == 200, r.text
        assert r.json()["vehicle"]["make"] == "Honda"
        assert client.get("/readyz").status_code == 200
    log = "\n".join(output)
    assert "POST /v1/lookups 200" in log  # the scrubbed access log: route templates only
    assert VIN not in log and token not in log
    assert (tmp_path / "var" / "accounts.sqlite3").exists()
    assert (tmp_path / "var" / "searchlog.sqlite3").exists()
    assert (tmp_path / "var" / "secrets" / "token_signing.key").stat().st_mode & 0o077 == 0


def test_embedded_refuses_many_workers(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN), "serve", "--workers", "2"],
        env={"VINGW_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "VINGW_REDIS_URL" in result.stderr


def test_same_database_for_both_stores_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/one.sqlite3"
    result = subprocess.run(
        [str(BIN), "serve"],
        env={"VINGW_DATABASE_URL": url, "VINGW_LOG_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "same database" in result.stderr


@pytest.mark.redis
@pytest.mark.postgres
def test_replay_across_two_workers(
    tmp_path: Path, redis_url: str, postgres_urls: tuple[str, str]
) -> None:
    accounts_url, log_url = postgres_urls
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_DATABASE_URL": accounts_url,
        "VINGW_LOG_DATABASE_URL": log_url,
        "VINGW_MIGRATE_ON_START": "true",
    }
    with running(["serve"], env) as (base_a, _), running(["serve"], env) as (base_b, _):
        with httpx.Client(base_url=base_a) as client:
            w = workshop(client)

        async def race() -> list[int]:
            outcomes = []
            for _ in range(5):
                token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
                headers = {**w["auth"], "VIN-Attestation": token}
                async with httpx.AsyncClient() as client:
                    responses = await asyncio.gather(
                        client.post(base_a + "/v1/lookups", json={"vin": VIN}, headers=headers),
                        client.post(base_b + "/v1/lookups", json={"vin": VIN}, headers=headers),
                    )
                codes = sorted(r.status_code for r in responses)
                assert codes == [200, 403], [r.text for r in responses]
                refused = next(r for r in responses if r.status_code == 403)
                assert refused.json()["code"] == "attestation_replayed"
                outcomes.extend(codes)
            return outcomes

        assert asyncio.run(race()).count(200) == 5


def test_upstream_catalogue_end_to_end(tmp_path: Path) -> None:
    with running(["catalogue-serve"], {}) as (catalogue_url, catalogue_log):
        env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path), "VINGW_CATALOGUE_URL": catalogue_url}
        with running(["serve"], env) as (base, _), httpx.Client(base_url=base) as client:
            w = workshop(client)
            token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
            r = client.post(
                "/v1/lookups", json={"vin": VIN}, headers={**w["auth"], "VIN-Attestation": token}
            )
            assert r.status_code == 200, r.text
            cats = client.get("/v1/catalogue/categories", headers=w["auth"]).json()
            assert cats["categories"]
    assert VIN not in "\n".join(catalogue_log)


def test_create_admin_command(tmp_path: Path) -> None:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [str(BIN), "create-admin", "--email", "Ops@Example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    password = next(
        line.split(": ", 1)[1]
        for line in made.stdout.splitlines()
        if line.startswith("one-time password")
    )
    again = subprocess.run(  # promoting an existing account with a password read from stdin
        [str(BIN), "create-admin", "--email", "ops@example.com", "--password-stdin"],
        env=env,
        input="a new admin passphrase 7\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "one-time password" not in again.stdout
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path)}
    with running(["serve"], env) as (base, _), httpx.Client(base_url=base) as client:
        old = client.post(
            "/v1/auth/token", data={"username": "ops@example.com", "password": password}
        )
        assert old.status_code == 401
        token = client.post(
            "/v1/auth/token",
            data={"username": "ops@example.com", "password": "a new admin passphrase 7"},
        )
        assert token.status_code == 200
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert client.get("/v1/admin/flags", headers=auth).status_code == 200


@pytest.mark.redis
def test_many_workers_share_metrics_and_state(tmp_path: Path, redis_url: str) -> None:
    """`serve --workers 2` with Redis: metrics from every worker, no VIN in any label."""
    import re

    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path), "VINGW_REDIS_URL": redis_url}
    with running(["serve", "--workers", "2"], env) as (base, _):
        with httpx.Client(base_url=base) as client:
            w = workshop(client)
            for _ in range(4):
                token = signing.attestation(w["key"], w["kid"], w["id"], VIN)
                r = client.post(
                    "/v1/lookups",
                    json={"vin": VIN},
                    headers={**w["auth"], "VIN-Attestation": token},
                )
                assert r.status_code == 200, r.text
        # new connections spread over both workers
        for _ in range(30):
            assert httpx.get(base + "/healthz").status_code == 200
        metrics = httpx.get(base + "/metrics").text
    samples = re.findall(
        r'^vingw_requests_total\{route="/v1/lookups",status="200"\} (\S+)$', metrics, re.M
    )
    assert sum(float(v) for v in samples) == 4
    assert VIN not in metrics and w["id"] not in metrics
