"""Keyed pseudonyms: HMAC-SHA256 with one key per domain and per epoch.

Domains (``account``, ``vin``, ``owner_ref``, ``jti``, ``grant``) have separate keys so
pseudonyms of different kinds cannot be linked. Keys rotate each epoch (a calendar month by
default; ISO week or UTC day with ``VINGW_PSEUDONYM_EPOCH``) and live in a key file outside both
databases (``<secrets dir>/pseudonym_keys.json`` by default, ``VINGW_PSEUDONYM_KEYS_FILE`` for a
mounted secret). Destroying an epoch's keys makes that epoch's rows anonymous: nobody can
recompute a pseudonym to find them any more. An epoch created before a domain existed gets that
domain's key added (its other keys unchanged) the first time one is needed.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gateway.netaddr import network_of

DOMAINS = ("account", "vin", "owner_ref", "jti", "grant")
EPOCH_KINDS = ("month", "week", "day")


def epoch_of(at: float, kind: str) -> str:
    """The label of the key epoch ``at`` falls in: ``2026-11``, ``2026-W47`` or ``2026-11-22``."""
    moment = datetime.fromtimestamp(at, UTC)
    if kind == "month":
        return moment.strftime("%Y-%m")
    if kind == "week":
        year, week, _ = moment.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if kind == "day":
        return moment.strftime("%Y-%m-%d")
    raise ValueError(f"unknown epoch kind {kind!r}")


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def month_start(at: float) -> int:
    moment = datetime.fromtimestamp(at, UTC)
    return _ts(date(moment.year, moment.month, 1))


def next_month(start: int) -> int:
    moment = datetime.fromtimestamp(start, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return _ts(date(year, month, 1))


def epoch_bounds(label: str) -> tuple[int, int]:
    """[start, end) in epoch seconds of an epoch label of any kind."""
    if "-W" in label:
        year, week = label.split("-W")
        start = date.fromisocalendar(int(year), int(week), 1)
        return _ts(start), _ts(start + timedelta(days=7))
    parts = [int(p) for p in label.split("-")]
    if len(parts) == 2:
        start_ts = _ts(date(parts[0], parts[1], 1))
        return start_ts, next_month(start_ts)
    day = date(parts[0], parts[1], parts[2])
    return _ts(day), _ts(day + timedelta(days=1))


class KeyRing:
    def __init__(self, path: Path, epoch: str) -> None:
        """``epoch``: the rotation period, ``Settings.pseudonym_epoch``."""
        if epoch not in EPOCH_KINDS:
            raise ValueError(f"unknown epoch kind {epoch!r}")
        self.path = path
        self.epoch = epoch
        self._keys: dict[str, dict[str, bytes]] = {}
        # keyed HMAC states per (epoch, domain): each pseudonym copies one instead of keying a
        # new HMAC (two extra SHA-256 blocks); and the epoch label per UTC day
        self._macs: dict[tuple[str, str], hmac.HMAC] = {}
        self._day_epochs: dict[int, str] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the key file (another process may have added or destroyed an epoch), under
        a shared lock: writers truncate and rewrite it in place under an exclusive one, so an
        unlocked read could see it empty or half written."""
        try:
            with open(self.path) as fh:
                fcntl.flock(fh, fcntl.LOCK_SH)
                raw = json.loads(fh.read() or "{}")
        except FileNotFoundError:
            raw = {}
        self._load(raw)

    def _load(self, raw: dict[str, dict[str, str]]) -> None:
        self._keys = {
            epoch: {d: base64.urlsafe_b64decode(k) for d, k in keys.items()}
            for epoch, keys in raw.items()
        }
        self._macs.clear()

    def epochs(self) -> list[str]:
        return sorted(self._keys)

    def epoch_of(self, at: float) -> str:
        day = int(at // 86_400)  # every epoch kind is a whole number of UTC days
        label = self._day_epochs.get(day)
        if label is None:
            if len(self._day_epochs) > 64:
                self._day_epochs.clear()
            label = self._day_epochs[day] = epoch_of(day * 86_400, self.epoch)
        return label

    def _ensure(self, epoch: str, domain: str) -> bytes:
        """The epoch's key of ``domain``, created under the file lock when missing: the whole
        epoch (every domain) when the file has no such epoch, else only the missing domain
        (an epoch created before the domain existed: its other keys are kept as they are).
        Whatever another process wrote meanwhile is re-read under the lock and wins."""
        key = self._keys.get(epoch, {}).get(domain)
        if key is not None:
            return key
        if domain not in DOMAINS:
            raise ValueError(f"unknown pseudonym domain {domain!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            raw = json.loads(fh.read() or "{}")
            keys = raw.setdefault(epoch, {})
            missing = [d for d in DOMAINS if d not in keys]
            if missing:
                for d in missing:
                    keys[d] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(raw, sort_keys=True))
                fh.flush()
                os.fsync(fh.fileno())
            self._load(raw)  # the file as it is under the lock
        return self._keys[epoch][domain]

    def pseudonym(self, domain: str, value: str, epoch: str) -> str:
        mac = self._macs.get((epoch, domain))
        if mac is None:
            key = self._ensure(epoch, domain)
            mac = self._macs[(epoch, domain)] = hmac.new(key, None, "sha256")
        keyed = mac.copy()
        keyed.update(value.encode())
        return keyed.hexdigest()[:32]

    def all_pseudonyms(self, domain: str, value: str) -> dict[str, str]:
        """The value's pseudonym under every live epoch key (to find a subject's rows). An
        epoch without a key of ``domain`` (created before the domain existed) has no rows
        under it and is left out."""
        return {
            epoch: hmac.new(keys[domain], value.encode(), hashlib.sha256).hexdigest()[:32]
            for epoch, keys in self._keys.items()
            if domain in keys
        }

    def destroy(self, epoch: str) -> bool:
        """Forget an epoch's keys for good. Returns whether they existed."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            raw = json.loads(fh.read() or "{}")
            existed = raw.pop(epoch, None) is not None
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(raw, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        self._keys.pop(epoch, None)
        self._macs.clear()
        return existed


#: IPv4 to its /24, IPv6 to its /48; anything unparsable is dropped (``gateway.netaddr``).
truncate_ip = network_of


_UA_FAMILIES = (
    ("python-httpx", "httpx"),
    ("python-requests", "requests"),
    ("locust", "locust"),
    ("curl", "curl"),
    ("okhttp", "okhttp"),
    ("edg/", "edge"),
    ("chrome", "chrome"),
    ("firefox", "firefox"),
    ("safari", "safari"),
)


def ua_family(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    lowered = user_agent.lower()
    for needle, family in _UA_FAMILIES:
        if needle in lowered:
            return family
    return "other"
