"""The wheel ships every file the package reads, and runs from a fresh venv on embedded defaults.

This is what an editable install hides: a runtime dependency that only a dev tool brought in
(greenlet, once) and a data file that was never package data (admit.lua, once)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.gateway import procs, signing

from .conftest import CLEAN_ENV, ROOT, tracked_files

PUBLIC_VIN = "1HGCM82633A004352"  # a public example VIN (Honda Accord 2003)


def package_files() -> list[str]:
    """Every file of the gateway and vin packages in the tree as committed."""
    return sorted(f for f in tracked_files() if f.startswith(("gateway/", "vin/")))


def test_wheel_ships_every_package_data_file(wheel_names: set[str]) -> None:
    files = [f for f in package_files() if not f.endswith(".py")]
    assert "gateway/limits/admit.lua" in files  # the listing itself is not empty or wrong
    missing = [f for f in files if f not in wheel_names]
    assert not missing, f"tracked files missing from the wheel (pyproject package-data): {missing}"


def test_wheel_ships_every_module_and_nothing_else(wheel_names: set[str]) -> None:
    modules = [f for f in package_files() if f.endswith(".py")]
    assert not [m for m in modules if m not in wheel_names]
    stray = [n for n in wheel_names if n.split("/")[0] not in {"gateway", "vin"}]
    stray = [n for n in stray if ".dist-info/" not in n]
    assert not stray, f"the wheel carries files outside the packages: {stray}"
    assert not [n for n in wheel_names if "/var/" in n or n.endswith((".key", ".pem", ".sqlite3"))]


def test_fresh_venv_serves_a_lookup_from_an_empty_dir(installed: Path, tmp_path: Path) -> None:
    """Start `vin-gateway serve` (embedded defaults) in an empty directory, wait for /readyz,
    register, sign one attestation and look up one VIN; then stop it cleanly."""
    where = subprocess.run(
        [str(installed / "bin/python"), "-c", "import gateway, vin; print(gateway.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, env=CLEAN_ENV, check=True,
    ).stdout  # fmt: skip
    assert str(installed) in where and str(ROOT) not in where
    empty = tmp_path / "run"
    empty.mkdir()
    command = [str(installed / "bin/vin-gateway"), "serve"]
    env = {**procs.FAST_ENV, "PATH": str(installed / "bin")}
    server = procs.running(command, env, health="/readyz", raw=True, cwd=empty, timeout_s=60)
    with server as (base, _), httpx.Client(base_url=base, timeout=10) as client:
        shop = procs.workshop(client)
        token = signing.attestation(shop["key"], shop["kid"], shop["id"], PUBLIC_VIN)
        r = client.post(
            "/v1/lookups",
            json={"vin": PUBLIC_VIN},
            headers={**shop["auth"], "VIN-Attestation": token},
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["vehicle"]["make"] == "Honda"
        assert answer["vehicle_type"] is not None and answer["parts"]
    # the embedded defaults made their files in the data dir under the working directory
    assert (empty / "var" / "accounts.sqlite3").exists()
    assert (empty / "var" / "secrets").is_dir()
