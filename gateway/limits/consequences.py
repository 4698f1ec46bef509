"""What a refusal or a limiter decision leads to besides the answer.

- ``signal_of``: which refusals are suspicious-usage signals (they reach the limiter's guessing
  score). Every refused attestation is one, whatever the reason (a query with no valid basis is a
  signal by the catalogue's terms), and so is an invalid VIN; a refusal for policy, consent,
  quota or a malformed body is not. One refused attestation is not a signal:
  ``attestation_replay_window_lost`` (issued before Redis lost its replay records). Every honest
  client in flight meets it after such a restart, through no doing of its own, and scoring it
  would block busy workshops for the operator's restart; a replay it stops is refused all the
  same, and the refusal still spends its flood tokens (admit.lua), so it is not free to send.
  The grant refusals (``grant_unknown`` ... ``grant_exhausted``) are refused attestations like
  the others: a signal. ``owner_grant_required`` is not: the operator's grant policy refused a
  basis the attestation states correctly, which says nothing about the caller's conduct.
- ``Consequences``: a block that just started, or a shadow policy that fired, becomes a flag for
  admins. Writing the flag is a database insert, so it runs off the hot path in a task this
  object owns; ``drain`` waits for them at shutdown. A shadow flag is for admins only: it does
  not make the account "flagged" for the grant policy and invalidates no cached credentials
  (``gateway.accounts.repository._flagged``, ``AccountService.add_flag``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.limits.limiter import Decision, Limiter

log = logging.getLogger("vin_gateway.limits")

#: Plain-language reasons, by policy, written into each flag (never a VIN or an email).
FLAG_REASONS = {
    "guessing": "too many invalid VINs, refused attestations or catalogue misses",
    "distinct_vins": "too many distinct VINs in 24 hours",
    "sequential": "consecutive queries walk the serial numbers of one vehicle series",
    "flood": "more requests than the flood limit allows",
    "grant_policy": "VIN queries without an owner's grant where the grant policy requires one",
}

_ATTESTATION_REFUSALS = ("attestation_", "owner_authorization_")
#: The grant step's refusals (exactly these: other ``grant_`` codes are the grants API's own)
_GRANT_REFUSALS = frozenset(
    {
        "grant_unknown",
        "grant_revoked",
        "grant_expired",
        "grant_vehicle_mismatch",
        "grant_purpose_out_of_scope",
        "grant_exhausted",
    }
)
_NOT_SIGNALS = frozenset({"attestation_replay_window_lost", "owner_grant_required"})


def signal_of(code: str) -> str | None:
    """The suspicious-usage signal a refusal with this problem code is, or None."""
    if code == "invalid_vin":
        return "invalid_vin"
    if code in _NOT_SIGNALS:
        return None
    if (
        code.startswith(_ATTESTATION_REFUSALS)
        or code in _GRANT_REFUSALS
        or code == "purpose_out_of_scope"
    ):
        return "attestation_refused"
    return None


@dataclass(frozen=True, slots=True)
class FlagFinding:
    """A flag for admins: which policy, enforced or shadow, why, and the evidence counts."""

    account_id: str
    policy: str
    shadow: bool
    reason: str
    evidence: dict[str, int]
    block_s: int


FlagSink = Callable[[FlagFinding], Awaitable[None]]


class Consequences:
    def __init__(self, limiter: Limiter, sink: FlagSink) -> None:
        self._limiter = limiter
        self._sink = sink
        self._tasks: set[asyncio.Task[None]] = set()

    def apply(self, account_id: str, decision: Decision) -> None:
        """Remember a block in this worker and flag what is new (no I/O on the caller's path)."""
        self._limiter.remember(account_id, decision)
        findings: list[tuple[str, bool]] = []
        if decision.verdict == "blocked_now":
            findings.append((decision.policy, False))
        findings.extend((policy, True) for policy in decision.shadow_hits)
        for policy, shadow in findings:
            if shadow and not self._limiter.first_shadow_hit(account_id, policy):
                continue
            finding = FlagFinding(
                account_id=account_id,
                policy=policy,
                shadow=shadow,
                reason=FLAG_REASONS.get(policy, policy)
                + (" (shadow mode: not enforced)" if shadow else ""),
                evidence=decision.evidence(),
                block_s=0 if shadow else decision.retry_after,
            )
            self._spawn(finding)

    def shadow_hit(self, account_id: str, policy: str) -> bool:
        """A shadow policy decided outside the admission script (the grant policy) fired:
        flagged once per account and window like the limiter's own (``first_shadow_hit``).
        True when this call wrote the flag."""
        if not self._limiter.first_shadow_hit(account_id, policy):
            return False
        self._spawn(
            FlagFinding(
                account_id=account_id,
                policy=policy,
                shadow=True,
                reason=FLAG_REASONS.get(policy, policy) + " (shadow mode: not enforced)",
                evidence={},
                block_s=0,
            )
        )
        return True

    def _spawn(self, finding: FlagFinding) -> None:
        task = asyncio.create_task(self._flag(finding), name="vingw-flag")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flag(self, finding: FlagFinding) -> None:
        try:
            await self._sink(finding)
        except Exception as exc:  # the block itself is in Redis; only the admin's flag is lost
            log.error("flag for policy %s not written: %s", finding.policy, type(exc).__name__)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for the flags still being written (shutdown), at most ``timeout_s``."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
