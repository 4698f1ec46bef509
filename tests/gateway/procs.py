"""Start real ``vin-gateway`` processes for tests that must cross a process boundary."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "vin-gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    args: list[str],
    env: dict[str, str],
    *,
    health: str = "/healthz",
    timeout_s: float = 30.0,
    raw: bool = False,
) -> Iterator[tuple[str, list[str]]]:
    """Run ``vin-gateway ARGS`` (or the command ARGS itself when ``raw``) until the block ends;
    yields (base URL, captured output lines)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full_env.update(env)
    proc = subprocess.Popen(
        [*(args if raw else [str(BIN), *args]), "--port", str(port)],
        env=full_env,
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
