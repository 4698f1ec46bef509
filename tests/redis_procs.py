"""Throw-away ``redis-server`` processes of a test's own (faults, clusters, clean counters).

One helper, because the details bit: a port taken between choosing and binding it, a cluster
node whose bus port (port + 10000) is past 65535, and a slow machine where a server needs more
than a few seconds. Each of these used to surface later as an unrelated "connection refused".
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BUS_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000
START_TIMEOUT_S = 30.0
ATTEMPTS = 5


def free_ports(n: int, *, cluster: bool = False) -> list[int]:
    """n distinct free loopback ports; with ``cluster``, each one's bus port is free as well."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port in found:
            continue
        if cluster:
            if port + BUS_OFFSET > 65535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + BUS_OFFSET))
                except OSError:
                    continue
        found.append(port)
    return found


def _ping(port: int, password: str | None) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, password=password, socket_connect_timeout=0.2).ping())
    except redis.RedisError:
        return False


def start(
    workdir: Path, *extra: str, port: int | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start a redis-server answering PING; fails the test, with the server's log, if none
    starts. Without ``port`` a free one is chosen, and another if that one is taken meanwhile."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed")
    password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
    cluster = "--cluster-enabled" in extra
    log = ""
    for _ in range(1 if port is not None else ATTEMPTS):
        chosen = port if port is not None else free_ports(1, cluster=cluster)[0]
        logfile = workdir / f"redis-{chosen}.log"
        proc = subprocess.Popen(
            [binary, "--port", str(chosen), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir),
             "--logfile", str(logfile), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _ping(chosen, password):
                return chosen, proc
            time.sleep(0.05)
        stop(proc)
        log = logfile.read_text(errors="replace") if logfile.exists() else "(no log written)"
    pytest.fail(f"redis-server {' '.join(extra)} did not start; its log ends:\n{log[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGCONT)  # a test may have frozen it
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server(workdir: Path, *extra: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own (no persistence unless ``extra`` asks) for the block."""
    port, proc = start(workdir, *extra)
    try:
        yield port, proc
    finally:
        stop(proc)
