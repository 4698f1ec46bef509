"""The README is true: its first command and its flow run as written, in a clean copy of the tree.

The first command is run in two parts (everything before `vin-gateway serve`, then the server
itself on a free port); the flow's shell blocks run as one bash script with `set -euo pipefail`
against that server, with HOME in a temporary directory (the flow writes the private key
there)."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from tests.gateway import procs

from .conftest import CLEAN_ENV, ROOT

FENCE = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)


def readme() -> str:
    return (ROOT / "README.md").read_text()


def first_command() -> str:
    return FENCE.findall(readme())[0].strip()


def flow_blocks() -> list[str]:
    text = readme()
    start = text.index("## The whole flow, by hand")
    end = text.index("\n## ", start + 1)
    return FENCE.findall(text[start:end])


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_readme_starts_with_the_two_commands() -> None:
    blocks = FENCE.findall(readme())
    assert readme().startswith("# vin-gateway\n\n```sh\n")
    assert blocks[1].strip() == "scripts/test"
    assert first_command().endswith(".venv/bin/vin-gateway serve")
    assert len(flow_blocks()) == 4  # set-up + steps 1-2, key, attestation, lookup


def test_first_command_and_flow_as_written(clone: Path, tmp_path: Path) -> None:
    *install, serve = first_command().split(" && ")
    done = bash(" && ".join(install), clone, CLEAN_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    server = ["bash", "-c", f'exec {serve} "$@"', "bash"]
    env = {**CLEAN_ENV, **procs.FAST_ENV, "HOME": str(tmp_path)}
    with procs.running(server, env, health="/readyz", raw=True, cwd=clone, timeout_s=60) as (
        base,
        _,
    ):
        flow_env = {**env, "GW": base}
        script = "set -euo pipefail\n" + "\n".join(flow_blocks())
        done = bash(script, clone, flow_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"make": "Honda"' in done.stdout and '"parts": [' in done.stdout
        key = tmp_path / ".vin-gateway-client" / "attestation-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700

        # a refused step fails loudly with the problem body (no Python traceback)
        refused = bash(
            flow_blocks()[0].split("POLICY=")[0]
            + "api POST /v1/lookups -H 'Content-Type: application/json' -d '{}'",
            clone,
            flow_env,
        )
        assert refused.returncode != 0
        assert "HTTP 401 from /v1/lookups" in refused.stderr and '"code":' in refused.stderr
        assert "Traceback" not in refused.stderr
    assert (clone / "var" / "accounts.sqlite3").exists()
