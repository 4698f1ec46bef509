"""Refusals of the limiter: floods, suspicious-usage blocks, and a limiter that cannot decide."""

from __future__ import annotations

from gateway.exceptions import GatewayError, ServiceUnavailable


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
