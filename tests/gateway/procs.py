"""Start real ``vin-gateway`` processes for tests that must cross a process boundary."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.redis_procs import free_ports

BIN = Path(sys.executable).parent / "vin-gateway"


def free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def running(
    args: list[str],
    env: dict[str, str],
    *,
    health: str = "/healthz",
    timeout_s: float = 30.0,
    raw: bool = False,
    cwd: Path | None = None,
) -> Iterator[tuple[str, list[str]]]:
    """Run ``vin-gateway ARGS`` (or the command ARGS itself when ``raw``) in ``cwd`` until the
    block ends; yields (base URL, captured output lines)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full_env.update(env)
    proc = subprocess.Popen(
        [*(args if raw else [str(BIN), *args]), "--port", str(port)],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vin-gateway exited early:\n{proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(base + health, timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("vin-gateway did not become healthy in time")
            time.sleep(0.1)
        yield base, output
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        output.extend(out.splitlines())


FAST_ENV = {
    "VINGW_ARGON2_TIME_COST": "1",
    "VINGW_ARGON2_MEMORY_KIB": "1024",
    "VINGW_ARGON2_PARALLELISM": "1",
    "VINGW_ACCESS_LOG_LEVEL": "INFO",
}


PASSWORD = "correct horse battery staple"  # the same as the ASGI fixtures' (conftest)


def workshop(client: httpx.Client, *, kind: str = "ec", api_key: bool = False) -> dict[str, Any]:
    """Register, log in, register an attestation key (EC P-256 or RSA) and, if asked, create an
    API key, through a running gateway: what the README shows a newcomer."""
    from tests.gateway import signing

    policy = client.get("/v1/privacy-policy").json()["version"]
    email = f"w{secrets.token_hex(6)}@workshop.example"
    r = client.post(
        "/v1/accounts",
        json={"email": email, "password": PASSWORD, "privacy_policy_version": policy},
    )
    assert r.status_code == 201, r.text
    token = client.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    key, jwk = signing.ec_key() if kind == "ec" else signing.rsa_key()
    kid = client.post("/v1/attestation-keys", json={"jwk": jwk}, headers=auth).json()["kid"]
    found: dict[str, Any] = {"id": r.json()["id"], "auth": auth, "key": key, "kid": kid}
    if api_key:
        made = client.post("/v1/api-keys", json={"name": "workshop"}, headers=auth)
        found["api_key"] = made.json()["key"]
    return found
