"""The embedded stand-in's replay records across a restart of the gateway process.

On embedded defaults the "Redis" (fakeredis) lives in the gateway's process, so a restart of
the gateway is a restart of Redis without persistence: every replay record is gone. So that an
attestation accepted before the restart is still refused after it:

- a clean stop (``save``) writes the live replay records (key and time to live; a key is the
  account's hash tag and a digest of the jti, never the token) to ``<data dir>/replay-records.json``
  (mode 0600), and the next start (``restore``) puts them back: nothing is lost, no window;
- a start writes ``{"running_since": ...}`` there first, so a start that finds that instead of a
  clean stop's records knows the previous process died with its records: the admission script
  then refuses attestations issued before this start plus the iat leeway
  (``attestation_replay_window_lost``), as after a Redis restart without persistence;
- no file at all: the first start in this data dir, nothing was ever accepted here.

The grants' use counters (``max_uses``) are saved and restored with them. After an unclean stop
they are lost, and a grant limited to N queries may be used up to N more times: on embedded
defaults (one process, development) that is accepted; production runs a durable Redis.

One embedded gateway per data dir (embedded mode refuses more than one worker anyway).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from gateway.limits.limiter import Limiter

log = logging.getLogger("vin_gateway.limits")

FILE = "replay-records.json"


def _write(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(content, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def restore(data_dir: Path, limiter: Limiter) -> None:
    """At start: the records of a clean stop back in the stand-in, or, after an unclean one,
    the admission script told that the records are only as old as this start."""
    path = data_dir / FILE
    now_ms = int(time.time() * 1000)
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        found = {}
    except (OSError, ValueError):
        found = {"running_since": now_ms}  # unreadable: assume the worst
    if "stopped_at_ms" in found:
        elapsed = now_ms - int(found["stopped_at_ms"])
        records = [(str(k), int(ttl) - elapsed) for k, ttl in found.get("records", [])]
        await limiter.restore_replay_records([(k, ttl) for k, ttl in records if ttl > 0])
        counters = [(str(k), int(n), int(ttl) - elapsed) for k, n, ttl in found.get("grants", [])]
        await limiter.restore_grant_counters([c for c in counters if c[2] > 0])
    elif "running_since" in found:
        log.warning(
            "the previous embedded gateway stopped without saving its replay records: "
            "attestations issued before now are refused for the iat leeway"
        )
        limiter.records_since(now_ms // 1000)
    _write(path, {"running_since": now_ms})


async def save(data_dir: Path, limiter: Limiter) -> None:
    """At a clean stop: the live replay records and grant use counters, for the next start."""
    records = await limiter.replay_records()
    grants = await limiter.grant_counters()
    stopped = int(time.time() * 1000)
    _write(data_dir / FILE, {"stopped_at_ms": stopped, "records": records, "grants": grants})
