"""Throttling one-time code redemptions: a fixed-window counter per account and per network.

A one-time code has 50 bits, lives ``grant_code_ttl_s`` and is tried by a logged-in account,
so guessing is hopeless already; this makes it slow too. Each redemption attempt is counted
when it is admitted, before the code is looked at (concurrent guesses cannot slip past the
count), against two budgets of ``grant_code_max_failures`` per ``grant_code_window_s``: the
calling account's and its client network's (IPv4 /24, IPv6 /48, ``gateway.netaddr``). A
successful redemption takes its attempt back, so only failures use the budget. While either is
spent, attempts are refused ``429 grant_code_throttled`` with ``Retry-After`` (the window's
rest) and the code is not looked at.

Redis holds keyed pseudonyms only (HMAC with the limiter key, as the login throttle does):
keys ``vl:{grc:a:<pseudonym>}`` (account) and ``vl:{grc:n:<pseudonym>}`` (network), each its
own hash tag (one slot per key, so one script call per key also on a Redis Cluster), expiring
with their window. Redis unreachable: like the login throttle, ``VINGW_LIMIT_IP_FAIL_OPEN``
decides (open: redemptions go on unthrottled; closed: ``503 limiter_unavailable``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.grants.exceptions import GrantCodeThrottled, VehicleDeclarationsThrottled
from gateway.limits.exceptions import LimiterUnavailable
from gateway.netaddr import network_of

log = logging.getLogger("vin_gateway.grants")

THROTTLED = Counter(
    "vingw_grant_code_throttled_total",
    "One-time code redemptions refused by the throttle, by budget: account or network",
    ["budget"],
)
LOG_EVERY_S = 60.0

#: KEYS 1 the counter; ARGV 1 mode ("try" | "undo"), 2 max attempts, 3 window (ms)
#: -> {1 admitted / 0 refused, ms until the window ends (refused only)}
SCRIPT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] == 'undo' then
  if n > 0 then redis.call('DECR', KEYS[1]) end
  return {1, 0}
end
if n >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    ttl = tonumber(ARGV[3])
  end
  return {0, ttl}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt: the counters it was counted against (empty: not counted)."""

    keys: tuple[str, ...]


class _FixedWindowThrottle:
    """What both throttles share: the fixed-window script, and what a Redis failure does
    (``VINGW_LIMIT_IP_FAIL_OPEN``: through, or 503; logged at most once a minute)."""

    #: how the log line and the 503 name the throttle
    WHAT = ""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.settings = settings
        self._script = redis.register_script(SCRIPT)
        self._logged_at = -math.inf

    def _log(self, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "%s throttle: Redis unavailable (%s); it fails %s",
                self.WHAT,
                type(exc).__name__,
                "open" if self.settings.limit_ip_fail_open else "closed",
            )

    def _unavailable(self, exc: RedisError) -> None:
        self._log(exc)
        if not self.settings.limit_ip_fail_open:
            raise LimiterUnavailable(
                f"{self.WHAT.capitalize()} throttling is unavailable; try again shortly",
                headers={"Retry-After": "1"},
            ) from exc


def throttled_headers(policy: str, quota: int, window_s: int, wait_ms: int) -> dict[str, str]:
    """Retry-After and the RateLimit fields of a spent fixed-window budget."""
    retry_after = max(1, math.ceil(wait_ms / 1000))
    return {
        "Retry-After": str(retry_after),
        "RateLimit-Policy": f'"{policy}";q={quota};w={window_s}',
        "RateLimit": f'"{policy}";r=0;t={retry_after}',
    }


class RedeemThrottle(_FixedWindowThrottle):
    WHAT = "code redemption"

    def __init__(self, redis: Any, settings: Settings, *, key: bytes) -> None:
        super().__init__(redis, settings)
        self.redis = redis
        self.key = key

    def _pseudonym(self, label: bytes, value: str) -> str:
        return hmac.new(self.key, label + value.encode(), hashlib.sha256).hexdigest()[:24]

    def keys_of(self, account_id: str, client_ip: str | None) -> list[tuple[str, str]]:
        """(budget, key) of an attempt: the account's, and its network's when it has one."""
        account = self._pseudonym(b"grant-code-account:", account_id)
        keys = [("account", "vl:{grc:a:" + account + "}")]
        network = network_of(client_ip)
        if network is not None:
            pseudonym = self._pseudonym(b"grant-code-network:", network)
            keys.append(("network", "vl:{grc:n:" + pseudonym + "}"))
        return keys

    async def _call(self, mode: str, key: str) -> tuple[bool, int]:
        s = self.settings
        raw = await self._script(
            keys=[key],
            args=[mode, s.grant_code_max_failures, round(s.grant_code_window_s * 1000)],
        )
        return bool(int(raw[0])), int(raw[1])

    async def admit(self, account_id: str, client_ip: str | None) -> Attempt:
        """Count this attempt against both budgets, or raise ``GrantCodeThrottled`` (nothing
        counted) while either is spent."""
        keys = self.keys_of(account_id, client_ip)
        counted: list[str] = []
        try:
            for budget, key in keys:
                admitted, wait_ms = await self._call("try", key)
                if not admitted:
                    await self._undo(counted)
                    THROTTLED.labels(budget=budget).inc()
                    raise self._throttled(wait_ms)
                counted.append(key)
        except RedisError as exc:
            self._unavailable(exc)
            return Attempt(())
        return Attempt(tuple(counted))

    async def succeeded(self, attempt: Attempt) -> None:
        """The code was right: the attempt does not count. A Redis failure is only logged."""
        try:
            await self._undo(list(attempt.keys))
        except RedisError as exc:
            self._log(exc)

    async def _undo(self, keys: list[str]) -> None:
        if keys:
            await asyncio.gather(*(self._call("undo", key) for key in keys))

    def _throttled(self, wait_ms: int) -> GrantCodeThrottled:
        s = self.settings
        return GrantCodeThrottled(
            "Too many wrong one-time codes from this account or network: the code was not "
            "checked. Try again after Retry-After seconds.",
            headers=throttled_headers(
                "grant_code", s.grant_code_max_failures, round(s.grant_code_window_s), wait_ms
            ),
            policy="grant_code",
        )


class DeclarationThrottle(_FixedWindowThrottle):
    """Vehicle declarations per account: at most ``grant_max_declarations_per_day`` in a day's
    window (fixed, from the first declaration), so that deleting and declaring again cannot
    mint vehicles without end (docs/grants.md "A false owner"). One counter in the account's
    slot, ``vl:{<account id>}:decl`` (deleted with the account's other limiter keys on
    erasure), counted by the same script as the redemption throttle: a declaration is counted
    before it is stored and takes its count back when it is refused (a duplicate, the vehicle
    limit). Redis unreachable: ``VINGW_LIMIT_IP_FAIL_OPEN`` decides, as for redemptions."""

    WHAT = "vehicle declaration"
    WINDOW_S = 86_400

    @staticmethod
    def key_of(account_id: str) -> str:
        return "vl:{" + account_id + "}:decl"

    async def _call(self, mode: str, key: str) -> tuple[bool, int]:
        max_n = self.settings.grant_max_declarations_per_day
        raw = await self._script(keys=[key], args=[mode, max_n, self.WINDOW_S * 1000])
        return bool(int(raw[0])), int(raw[1])

    async def admit(self, account_id: str) -> str | None:
        """Count a declaration (the key counted, None when Redis could not count it), or raise
        ``VehicleDeclarationsThrottled`` with the window's rest as ``Retry-After``."""
        key = self.key_of(account_id)
        try:
            admitted, wait_ms = await self._call("try", key)
        except RedisError as exc:
            self._unavailable(exc)
            return None
        if not admitted:
            n = self.settings.grant_max_declarations_per_day
            raise VehicleDeclarationsThrottled(
                f"At most {n} vehicle declarations per account and day; try again after "
                "Retry-After seconds.",
                headers=throttled_headers("vehicle_declarations", n, self.WINDOW_S, wait_ms),
                policy="vehicle_declarations",
                max_declarations=n,
            )
        return key

    async def undo(self, key: str | None) -> None:
        """The declaration was refused: it does not count. A Redis failure is only logged."""
        if key is None:
            return
        try:
            await self._call("undo", key)
        except RedisError as exc:
            self._log(exc)
