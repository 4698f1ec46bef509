"""Suspicious-usage limiter: one Redis round trip per VIN request.

The admission script (``admit.lua``) checks a running block, claims the attestation's jti
(replay protection across processes) and takes tokens from a per-account flood bucket, all
atomically on the Redis server's clock. Refusals that happen before admission (a refused
attestation, an invalid VIN) are reported with ``record_signal`` from the request's outcome
recorder, so they still count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import RedisError

from gateway.errors import GatewayError, ServiceUnavailable


class RateLimited(GatewayError):
    code, status, title = "rate_limited", 429, "Too many requests"


class SuspiciousUsageBlocked(GatewayError):
    code, status, title = (
        "suspicious_usage_blocked",
        429,
        "This account is temporarily blocked for suspicious usage",
    )


class LimiterUnavailable(ServiceUnavailable):
    code, title = "limiter_unavailable", "Rate limiting is unavailable; VIN queries fail closed"


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    name: str = "vin"
    capacity: int = 30
    refill_per_s: float = 2.0
    shadow: bool = False

    @property
    def window_s(self) -> int:
        return max(1, round(self.capacity / self.refill_per_s))


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    """Refusals (invalid VINs, refused attestations) feed a per-account guessing score."""

    weights: tuple[tuple[str, int], ...] = (("invalid_vin", 1), ("attestation_refused", 1))
    window_s: int = 3600
    threshold: int = 20
    first_block_s: int = 900
    max_block_s: int = 86_400
    strikes_memory_s: int = 7 * 86_400
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str
    retry_after: int
    remaining: int
    reset: int
    policy: FloodPolicy

    def headers(self) -> dict[str, str]:
        p = self.policy
        return {
            "RateLimit-Policy": f'"{p.name}";q={p.capacity};w={p.window_s}',
            "RateLimit": f'"{p.name}";r={self.remaining};t={self.reset}',
        }


def _tag(account_id: str) -> str:
    return "vl:{" + account_id + "}"


class Limiter:
    def __init__(
        self, redis: Any, flood: FloodPolicy | None = None, signals: SignalPolicy | None = None
    ) -> None:
        self.redis = redis
        self.flood = flood or FloodPolicy()
        self.signals = signals or SignalPolicy()
        self._weights = dict(self.signals.weights)
        scripts = resources.files("gateway.limits")
        self._admit = redis.register_script(scripts.joinpath("admit.lua").read_text())
        self._signal = redis.register_script(scripts.joinpath("signal.lua").read_text())

    async def admit(
        self, account_id: str, *, jti: str | None, jti_ttl: int, cost: int = 1
    ) -> Decision:
        tag = _tag(account_id)
        jti_key = tag + ":jti:" + hashlib.sha256(jti.encode()).hexdigest()[:32] if jti else tag
        p = self.flood
        try:
            raw = await self._admit(
                keys=[tag + ":ban", jti_key, tag + ":bucket"],
                args=[jti_ttl if jti else 0, cost, p.capacity, p.refill_per_s, int(p.shadow)],
            )
        except RedisError as exc:
            raise LimiterUnavailable(headers={"Retry-After": "1"}) from exc
        verdict = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        return Decision(verdict, int(raw[1]), int(raw[2]), int(raw[3]), p)

    async def record_signal(self, account_id: str, signal: str) -> str:
        """Count a refusal against the account; returns the verdict ("ok", "blocked", ...)."""
        weight = self._weights.get(signal, 0)
        if weight <= 0:
            return "ok"
        tag = _tag(account_id)
        p = self.signals
        try:
            raw = await self._signal(
                keys=[tag + ":ban", tag + ":score", tag + ":strikes"],
                args=[
                    weight,
                    p.window_s,
                    p.threshold,
                    p.first_block_s,
                    p.max_block_s,
                    p.strikes_memory_s,
                    int(p.shadow),
                ],
            )
        except RedisError as exc:
            raise LimiterUnavailable(headers={"Retry-After": "1"}) from exc
        return raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
