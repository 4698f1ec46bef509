"""Per-account login throttling: guessing one account's password from many networks slows down,
while the account holder keeps a way in from the networks it logged in from before.

The per-network flood bucket (``Limiter.admit_ip``) slows one network guessing many accounts;
this slows many networks guessing one account (credential stuffing from a botnet). Per account
(a keyed HMAC pseudonym of the normalized email: never the email) two budgets live in Redis:

- **unfamiliar networks**: ``login_free_failures`` failed logins, then each further one makes
  the next attempt wait ``login_base_delay_s``, doubling, capped at ``login_max_delay_s``;
- **known networks** (those this account logged in from successfully in the last
  ``login_known_network_ttl_s``, at most ``login_known_networks_max``, IPv4 /24 or IPv6 /48 as
  the search log truncates addresses, kept as pseudonyms): the same with
  ``login_known_free_failures``, a much larger allowance. Failures from elsewhere never count
  against it, so the holder at their usual network is not locked out by an attack.

An attempt is counted when it is admitted, before the password is checked (concurrent guesses
cannot slip past the count), and a success clears the budget it was counted against. A refused
attempt costs one Redis round trip and no Argon2: the password is not checked, so a correct
password is refused during a wait too (``login_throttled`` says so, confirming nothing). Unknown
emails are counted exactly like known ones (same keys, same script, same answers): the
throttle cannot tell them apart, so it cannot reveal which exist. Failures are forgotten after
``login_window_s`` without an attempt.

Redis unavailable: login follows the per-IP limit's switch ``VINGW_LIMIT_IP_FAIL_OPEN`` (open
by default: logins go on unthrottled; closed: 503 ``limiter_unavailable``). Either way it is
logged (at most once a minute per process, no email, no address) and counted in
``vingw_login_throttle_unavailable_total``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.accounts.exceptions import LoginThrottled
from gateway.config import Settings
from gateway.limits.exceptions import LimiterUnavailable
from gateway.netaddr import network_of

log = logging.getLogger("vin_gateway.accounts")

THROTTLED = Counter(
    "vingw_login_throttled_total",
    "Logins refused by the per-account throttle, by budget: unfamiliar or known network",
    ["budget"],
)
UNAVAILABLE = Counter(
    "vingw_login_throttle_unavailable_total",
    "Logins the per-account throttle could not decide (Redis unreachable), by what was done: "
    "open (let through unthrottled) or closed (refused with 503)",
    ["decision"],
)
LOG_EVERY_S = 60.0

#: One round trip decides an attempt ("check") or records a success ("ok"). Time is the
#: caller's clock (ms) so tests can move it; key TTLs only clean up.
#: KEYS 1 unfamiliar-network budget, 2 known-network budget: hashes {n, t, until} (ms);
#:      3 known networks: zset network pseudonym -> last successful login (ms)
#: ARGV 1 mode, 2 now, 3 network pseudonym ("" = no address: never known), 4 known ttl,
#:      5 free failures (unfamiliar), 6 free failures (known), 7 base delay, 8 max delay,
#:      9 window, 10 max known networks
#: -> {known 0/1, ms to wait (0: admitted), attempts counted}
SCRIPT = """
local now, member = tonumber(ARGV[2]), ARGV[3]
local ttl = tonumber(ARGV[4])
local known = false
if member ~= '' then
  local seen = redis.call('ZSCORE', KEYS[3], member)
  known = seen and (now - tonumber(seen)) <= ttl
end
local budget = KEYS[1]
local free = tonumber(ARGV[5])
if known then budget, free = KEYS[2], tonumber(ARGV[6]) end
local flag = known and 1 or 0
if ARGV[1] == 'ok' then
  redis.call('DEL', budget)
  if member ~= '' then
    redis.call('ZADD', KEYS[3], now, member)
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[10]) + 1))
    redis.call('PEXPIRE', KEYS[3], math.ceil(ttl))
  end
  return {flag, 0, 0}
end
local base, cap, window = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local v = redis.call('HMGET', budget, 'n', 't', 'until')
local n, t, wait_until = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
if wait_until > now then
  return {flag, math.ceil(wait_until - now), n}
end
if now - t > window then n = 0 end
n = n + 1
local delay = 0
if n >= free then delay = math.min(cap, base * 2 ^ (n - free)) end
redis.call('HSET', budget, 'n', n, 't', now, 'until', now + delay)
redis.call('PEXPIRE', budget, math.ceil(window + cap))
return {flag, 0, n}
"""


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """An admitted attempt: where its success is recorded (pseudonyms only)."""

    keys: tuple[str, str, str]
    network: str
    known: bool


class LoginThrottle:
    def __init__(
        self,
        redis: Any,
        settings: Settings,
        *,
        key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.key = key
        self.clock = clock  # seconds; injectable so tests move time instead of sleeping
        self._script = redis.register_script(SCRIPT)
        self._logged_at = -math.inf

    def _pseudonym(self, label: bytes, value: str) -> str:
        return hmac.new(self.key, label + value.encode(), hashlib.sha256).hexdigest()[:24]

    def keys_of(self, normalized_email: str) -> tuple[str, str, str]:
        """The account's keys (hash-tagged per account: one Redis Cluster slot)."""
        tag = "vl:{login:" + self._pseudonym(b"login-account:", normalized_email) + "}"
        return tag + ":u", tag + ":k", tag + ":nets"

    def _network_pseudonym(self, keys: tuple[str, str, str], ip: str | None) -> str:
        network = network_of(ip)
        if network is None:
            return ""
        return self._pseudonym(b"login-network:" + keys[2].encode() + b":", network)

    async def _call(self, mode: str, keys: tuple[str, str, str], network: str) -> list[int]:
        s = self.settings
        args = [
            mode,
            round(self.clock() * 1000),
            network,
            round(s.login_known_network_ttl_s * 1000),
            s.login_free_failures,
            s.login_known_free_failures,
            round(s.login_base_delay_s * 1000),
            round(s.login_max_delay_s * 1000),
            round(s.login_window_s * 1000),
            s.login_known_networks_max,
        ]
        raw = await self._script(keys=list(keys), args=args)
        return [int(x) for x in raw]

    def _unavailable(self, exc: RedisError, *, deciding: bool) -> None:
        open_ = self.settings.limit_ip_fail_open or not deciding
        UNAVAILABLE.labels(decision="open" if open_ else "closed").inc()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "login throttle: Redis unavailable (%s); logins fail %s",
                type(exc).__name__,
                "open" if self.settings.limit_ip_fail_open else "closed",
            )
        if not open_:
            raise LimiterUnavailable(
                "Login throttling is unavailable; try again shortly",
                headers={"Retry-After": "1"},
            ) from exc

    async def admit(self, normalized_email: str, client_ip: str | None) -> LoginAttempt | None:
        """Count this attempt, or raise ``LoginThrottled`` while the account's budget for this
        network makes attempts wait. None when Redis is down and login fails open."""
        keys = self.keys_of(normalized_email)
        network = self._network_pseudonym(keys, client_ip)
        try:
            known, wait_ms, _count = await self._call("check", keys, network)
        except RedisError as exc:
            self._unavailable(exc, deciding=True)
            return None
        if wait_ms > 0:
            THROTTLED.labels(budget="known_network" if known else "unfamiliar_network").inc()
            retry_after = max(1, math.ceil(wait_ms / 1000))
            s = self.settings
            raise LoginThrottled(
                "Too many failed logins for this email: the password was not checked. Try "
                "again after Retry-After seconds, or from a network this account has logged "
                "in from before.",
                headers={
                    "Retry-After": str(retry_after),
                    "RateLimit-Policy": (
                        f'"login";q={s.login_free_failures};w={round(s.login_window_s)}'
                    ),
                    "RateLimit": f'"login";r=0;t={retry_after}',
                },
                policy="login",
            )
        return LoginAttempt(keys, network, bool(known))

    async def forget(self, normalized_email: str) -> int:
        """Erasure: delete the email's budgets and known networks (one slot); raises
        RedisError. The number of keys deleted."""
        return int(await self.redis.delete(*self.keys_of(normalized_email)))

    async def succeeded(self, attempt: LoginAttempt | None) -> None:
        """The password was right: clear the budget the attempt used and remember (refresh)
        the network as known. A Redis failure here never fails the login."""
        if attempt is None:
            return
        try:
            await self._call("ok", attempt.keys, attempt.network)
        except RedisError as exc:
            self._unavailable(exc, deciding=False)
