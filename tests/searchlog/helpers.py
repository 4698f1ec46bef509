from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0
) -> None:
    """Poll until ``check`` holds (a wait for a condition, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def grant_pseudonyms_in_a_process(path: str, epochs: list[str], value: str) -> dict[str, str]:
    """A worker process's key ring (loaded before the others add keys): ``value``'s grant
    pseudonym in each epoch, in the order given (``test_grant_uses``; a light module to spawn)."""
    from pathlib import Path

    from gateway.searchlog.pseudonym import KeyRing

    ring = KeyRing(Path(path), "day")
    return {e: ring.pseudonym("grant", value, e) for e in epochs}
