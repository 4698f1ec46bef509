"""Suspicious-usage limiter: one Redis round trip (``admit.lua``) decides each VIN request.

What plain request-rate limiters do not do, this one does, per account:

- **flood**: a token bucket per account and per API key, weighted by endpoint cost;
- **guessing**: invalid VINs, refused attestations (replays included) and catalogue misses add
  weighted points to a score; too many points in the window block the account;
- **distinct VINs**: distinct VIN pseudonyms in a rolling window (exact, a sorted set);
- **sequential**: queries sharing WMI+VDS+year+plant whose serial numbers walk in small steps;
- **grant uses**: queries admitted under an owner's grant (basis ``owner_granted``), counted in
  the same round trip and refused (``grant_exhausted``) once the grant's ``max_uses`` are used.

A block lasts ``first_block_s`` and doubles for each repeat offence (``strikes``), capped at
``max_block_s``. Each policy can run in shadow mode (evaluated and flagged, never enforced); an
allow-list exempts accounts from the suspicious-usage policies (never from replay or flood).

Refusals that happen before admission (a refused attestation, an invalid VIN) are reported with
``record_signal`` (one round trip, refusals only). Catalogue misses, known only after the answer,
are noted in process and piggybacked on the account's next admission: no extra round trip.

Redis unavailable: VIN endpoints fail closed with 503 ``limiter_unavailable`` and Retry-After,
within the client's socket timeout (``VINGW_REDIS_TIMEOUT_S``, 1 s by default), one timeout at
most per request (the admission call is the only Redis call of a request that reaches it, and
its NOSCRIPT reload shares its deadline). Replay protection cannot be done without Redis, so
this is not configurable for VIN endpoints; the per-IP limit of unauthenticated endpoints fails
open or closed as configured.

Redis lost its data (restarted without persistence, or from an older snapshot): the replay
records of attestations accepted before are gone, so the script refuses attestations issued
before the running Redis process started, plus the iat leeway (``window_lost``;
docs/attestation.md "Replay protection across Redis restarts"). It learns which process runs
from INFO only when this worker's belief (``_origin``) and the account's origin record disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from cachetools import TTLCache
from prometheus_client import Counter as MetricCounter
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.limits.exceptions import LimiterUnavailable, RateLimited, SuspiciousUsageBlocked
from gateway.pipelined import Admission, Arg

LOCAL_BLOCK_S = 5
#: How long an account's origin record (the Redis process its records were checked against)
#: is kept; recomputed identically when it expires, so this only bounds INFO calls.
ORIGIN_TTL_S = 86_400
#: How long a worker trusts the Redis process it last saw answer on its connection before it
#: lets the script check again (a proxy may keep the connection across a Redis restart).
ORIGIN_RECHECK_S = 10.0

SIGNAL_WEIGHTS = {"invalid_vin": 12, "attestation_refused": 12, "catalogue_miss": 1}

FAIL_OPEN = MetricCounter(
    "vingw_limiter_fail_open_total",
    "Requests let through unlimited because Redis did not answer, by limit (ip: the per-IP "
    "limit of registration and login, with VINGW_LIMIT_IP_FAIL_OPEN=true)",
    ["limit"],
)
FAIL_OPEN_LOG_EVERY_S = 60.0
_fail_open_logged: dict[str, float] = {}
log = logging.getLogger("vin_gateway.limits")


def note_fail_open(limit: str, exc: BaseException) -> None:
    """A limit that could not be decided let a request through: counted, and logged at most
    once a minute per limit (the cause's type only, never a value)."""
    FAIL_OPEN.labels(limit).inc()
    now = time.monotonic()
    if now - _fail_open_logged.get(limit, -math.inf) >= FAIL_OPEN_LOG_EVERY_S:
        _fail_open_logged[limit] = now
        cause = exc.__cause__ or exc
        log.warning(
            "%s limit: Redis unavailable (%s); requests pass unlimited (fail open)",
            limit,
            type(cause).__name__,
        )


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """The limits one bucket family enforces. Built from Settings (``from_settings``), the one
    source of every configurable default; docs/limits.md gives the reasons and the proofs."""

    name: str
    capacity: int  # flood burst in cost units (a lookup costs 2)
    refill_per_s: float
    score_window_s: int
    score_threshold: int
    distinct_max: int  # distinct VINs per rolling DISTINCT_WINDOW_S
    seq_max_step: int  # serials within this of the last one count as a step
    seq_threshold: int  # steps in a walk before its next query is refused
    first_block_s: int
    max_block_s: int
    shadow: frozenset[str]  # {"flood", "guessing", "distinct_vins", "sequential"}
    allow_list: frozenset[str]
    weights: dict[str, int] = field(default_factory=lambda: dict(SIGNAL_WEIGHTS))
    distinct_window_s: int = 86_400
    seq_window_s: int = 3600
    strikes_memory_s: int = 30 * 86_400

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitPolicy:
        """The VIN endpoints' policy."""
        return cls(
            name="vin",
            capacity=settings.limit_vin_burst,
            refill_per_s=settings.limit_vin_per_s,
            score_threshold=settings.limit_score_threshold,
            score_window_s=settings.limit_score_window_s,
            distinct_max=settings.limit_distinct_max,
            seq_threshold=settings.limit_seq_threshold,
            seq_max_step=settings.limit_seq_max_step,
            first_block_s=settings.limit_first_block_s,
            max_block_s=settings.limit_max_block_s,
            shadow=_names(settings.limit_shadow),
            allow_list=_names(settings.limit_allow_list),
        )

    @classmethod
    def per_network(cls, settings: Settings) -> LimitPolicy:
        """The flood bucket per client network of registration and login (nothing else)."""
        return replace(
            cls.from_settings(settings),
            name="ip",
            capacity=settings.limit_ip_burst,
            refill_per_s=settings.limit_ip_per_s,
            shadow=frozenset(),
            allow_list=frozenset(),
        )

    @property
    def window_s(self) -> int:
        return max(1, round(self.capacity / self.refill_per_s))

    @property
    def shadow_codes(self) -> str:
        return "".join(
            code
            for code, name in (
                ("f", "flood"),
                ("g", "guessing"),
                ("d", "distinct_vins"),
                ("s", "sequential"),
            )
            if name in self.shadow
        )


SHADOW_NAMES = {"f": "flood", "g": "guessing", "d": "distinct_vins", "s": "sequential"}


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str  # ok | blocked | blocked_now | replayed | window_lost | grant_exhausted | limited
    policy: str
    retry_after: int
    remaining: int
    reset: int
    score: int
    distinct: int
    run: int
    shadow_hits: tuple[str, ...]
    limits: LimitPolicy

    def headers(self) -> dict[str, str]:
        p = self.limits
        return {
            "RateLimit-Policy": f'"{p.name}";q={p.capacity};w={p.window_s}',
            "RateLimit": f'"{p.name}";r={self.remaining};t={self.reset}',
        }

    @property
    def blocked(self) -> bool:
        return self.verdict in {"blocked", "blocked_now"}

    def evidence(self) -> dict[str, int]:
        return {"score": self.score, "distinct_vins": self.distinct, "sequential_run": self.run}

    def raise_for_verdict(self) -> None:
        headers = {**self.headers(), "Retry-After": str(max(1, self.retry_after))}
        if self.blocked:
            raise SuspiciousUsageBlocked(
                f"Blocked by the {self.policy} policy for {self.retry_after} s",
                headers=headers,
                policy=self.policy,
            )
        if self.verdict == "limited":
            policy = self.policy if self.limits.name == "vin" else self.limits.name
            raise RateLimited(headers=headers, policy=policy)


@dataclass(frozen=True, slots=True)
class VinSignals:
    """What the limiter may know of a VIN: keyed pseudonyms and the serial's numeric tail."""

    vin: str
    prefix: str
    serial: int

    @classmethod
    def of(cls, key: bytes, normalized_vin: str) -> VinSignals:
        if len(normalized_vin) != 17:
            return cls("", "", -1)
        vin_p = hmac.new(key, b"vin:" + normalized_vin.encode(), hashlib.sha256).hexdigest()[:20]
        # WMI + VDS + model year + plant: the serial-less prefix a scraper walks under
        prefix = normalized_vin[:8] + normalized_vin[9:11]
        prefix_p = hmac.new(key, b"prefix:" + prefix.encode(), hashlib.sha256).hexdigest()[:16]
        numeric = _numeric_tail(normalized_vin[11:])
        return cls(vin_p, prefix_p, int(numeric) if numeric else -1)


def _numeric_tail(text: str) -> str:
    i = len(text)
    while i > 0 and text[i - 1].isdigit():
        i -= 1
    return text[i:]


def _network_of(ip: str | None) -> str:
    """The unit of the per-IP limit: the address for IPv4, its /64 for IPv6."""
    if not ip:
        return "unknown"
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


#: The suffixes of an account's fixed keys (admit.lua's KEYS, and ``:decl``, the vehicle
#: declaration counter of gateway/grants/throttle.py; ``:kb:<key id>``, ``:jti:<digest>`` and
#: ``:grant:<pseudonym>`` are per API key, attestation and grant).
_ACCOUNT_KEYS = (":ban", ":strikes", ":bucket", ":score", ":vins", ":seq", ":origin", ":decl")
#: The account's keys that are found by listing, not computed: replay records and grant counters
_LISTED = (":jti:", ":grant:")
#: A grant's use counter outlives the grant's valid_until by this (then it expires).
GRANT_COUNTER_GRACE_S = 86_400


def _names(csv: str) -> frozenset[str]:
    return frozenset(n.strip() for n in csv.split(",") if n.strip())


def _tag(account_id: str) -> str:
    return "vl:{" + account_id + "}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Limiter:
    def __init__(
        self,
        redis: Any,
        policy: LimitPolicy,
        *,
        key: bytes,
        admission: Admission | None = None,
    ) -> None:
        """``admission``: the lean connection for the script call (a real Redis); without it
        the call goes through redis-py (the embedded stand-in)."""
        self.redis = redis
        self.policy = policy
        self._admission = admission
        self.key = key
        self._pending: Counter[str] = Counter()
        # blocks seen by this worker, so a blocked account is refused before the attestation's
        # signature is even checked (at most LOCAL_BLOCK_S stale after a manual unblock)
        self._blocks: TTLCache[str, Decision] = TTLCache(100_000, LOCAL_BLOCK_S)
        self._shadow_seen: TTLCache[tuple[str, str], bool] = TTLCache(100_000, 3600)
        self._source = resources.files("gateway.limits").joinpath("admit.lua").read_text()
        self._script = redis.register_script(self._source)
        # (connection number, run_id, when learned): the Redis process this worker last saw
        # answer, so the script asks INFO only when it changes (see the module docstring)
        self._origin: tuple[int, str, float] | None = None
        # what the script uses when INFO is not available (the embedded stand-in; an ACL that
        # denies INFO): an id of the store and since when its records are complete ("": now;
        # the embedded stand-in's are complete unless ``records_since`` says otherwise)
        self._fallback_origin: tuple[str, int | str] = ("", "")
        if admission is None:
            self._fallback_origin = ("embedded-" + secrets.token_hex(8), 0)

    def signals_of(self, normalized_vin: str) -> VinSignals:
        return VinSignals.of(self.key, normalized_vin)

    def remember(self, account_id: str, decision: Decision) -> None:
        if decision.blocked and decision.retry_after > LOCAL_BLOCK_S:
            self._blocks[account_id] = decision

    def blocked_locally(self, account_id: str) -> Decision | None:
        if not self._blocks:  # the common case: no block known here (len without expiring)
            return None
        return self._blocks.get(account_id)

    def first_shadow_hit(self, account_id: str, policy: str) -> bool:
        """True once an hour per account and policy (shadow findings are flagged, not spammed)."""
        if (account_id, policy) in self._shadow_seen:
            return False
        self._shadow_seen[(account_id, policy)] = True
        return True

    def note(self, account_id: str, signal: str) -> None:
        """Note an outcome known after the answer; it rides on the account's next admission."""
        self._pending[account_id] += self.policy.weights.get(signal, 0)

    async def _run(
        self,
        mode: str,
        account_id: str,
        *,
        key_id: str | None = None,
        jti: str | None = None,
        jti_ttl: int = 0,
        cost: int = 0,
        weight: int = 0,
        vin: VinSignals | None = None,
        policy: LimitPolicy | None = None,
        allowed: bool | None = None,
        iat: int = 0,
        iat_leeway: int = 0,
        grant: tuple[str, str, int, int] | None = None,
    ) -> Decision:
        """``grant``: (mode "count" | "check", grant id, max uses or 0, counter TTL s)."""
        tag = _tag(account_id)
        p = policy or self.policy
        if allowed is None:
            allowed = account_id in p.allow_list
        jti_key = tag + ":jti:" + hashlib.sha256(jti.encode()).hexdigest()[:32] if jti else tag
        keys = [
            tag + ":ban",
            tag + ":strikes",
            jti_key,
            tag + ":bucket",
            tag + ":kb:" + key_id if key_id else tag + ":bucket",
            tag + ":score",
            tag + ":vins",
            tag + ":seq",
            tag + ":origin",
            self._grant_key(tag, grant[1]) if grant else tag + ":ban",
        ]
        connection = self._admission.live_generation if self._admission is not None else 0
        believed = self._believed_origin(connection) if iat > 0 else ""
        vin = vin or VinSignals("", "", -1)
        args: list[Arg] = [
            mode, jti_ttl if jti else 0, cost, p.capacity, p.refill_per_s, weight,
            p.score_window_s, p.score_threshold, vin.vin, p.distinct_window_s, p.distinct_max,
            vin.prefix, vin.serial, p.seq_max_step, p.seq_threshold, p.seq_window_s,
            p.first_block_s, p.max_block_s, p.strikes_memory_s, p.shadow_codes,
            "1" if allowed else "0", p.weights.get("attestation_refused", 0),
            iat, iat_leeway, believed, *self._fallback_origin, ORIGIN_TTL_S,
            grant[0] if grant else "", grant[2] if grant else 0, grant[3] if grant else 0,
        ]  # fmt: skip
        try:
            if self._admission is not None:
                raw = await self._admission.evalsha(self._script.sha, self._source, keys, args)
            else:
                raw = await self._script(keys=keys, args=args)
        except RedisError as exc:
            raise LimiterUnavailable(headers={"Retry-After": "1"}) from exc
        if len(raw) > 9 and connection is not None:
            self._learn_origin(connection, believed, _s(raw[9]))
        hits = tuple(SHADOW_NAMES[c] for c in _s(raw[8]))
        return Decision(
            _s(raw[0]), _s(raw[1]), int(raw[2]), int(raw[3]), int(raw[4]), int(raw[5]),
            int(raw[6]), int(raw[7]), hits, p,
        )  # fmt: skip

    def _grant_key(self, tag: str, grant_id: str) -> str:
        """A grant's use counter in the grantee's slot, named by a keyed pseudonym (the limiter
        key) of the grant id: Redis never holds the id, which the search log pseudonymizes."""
        digest = hmac.new(self.key, b"grant:" + grant_id.encode(), hashlib.sha256).hexdigest()
        return tag + ":grant:" + digest[:32]

    def _believed_origin(self, connection: int | None) -> str:
        """The run_id this worker last saw answer on this connection, "" when unknown or due
        for a check (a new connection, or ``ORIGIN_RECHECK_S`` passed)."""
        origin = self._origin
        if connection is None or origin is None or origin[0] != connection:
            return ""
        return origin[1] if time.monotonic() - origin[2] < ORIGIN_RECHECK_S else ""

    def _learn_origin(self, connection: int, believed: str, running: str) -> None:
        if running and (not believed or running != believed):
            self._origin = (connection, running, time.monotonic())

    async def admit(
        self,
        account_id: str,
        *,
        jti: str | None,
        jti_ttl: int,
        cost: int = 1,
        key_id: str | None = None,
        vin: VinSignals | None = None,
        iat: int = 0,
        iat_leeway: int = 0,
        grant_id: str | None = None,
        grant_max_uses: int | None = None,
        grant_ttl_s: int = 0,
        count_grant_use: bool = True,
    ) -> Decision:
        """The whole decision for a VIN request: block, replay (``iat``: the attestation's,
        checked against lost replay records with ``iat_leeway``), the grant's uses, flood,
        signals, distinct VINs, walk.

        ``grant_id`` (basis owner_granted, the caller being its grantee): ``grant_exhausted``
        when ``grant_max_uses`` (None: no limit) queries were admitted under it already; else an
        admitted query is counted (not with ``count_grant_use=False``: issuing an attestation
        checks, the query made with it counts), the counter living ``grant_ttl_s``."""
        weight = self._pending.pop(account_id, 0)
        grant = None
        if grant_id is not None:
            mode = "count" if count_grant_use else "check"
            grant = (mode, grant_id, grant_max_uses or 0, max(1, grant_ttl_s))
        try:
            decision = await self._run(
                "admit", account_id, key_id=key_id, jti=jti, jti_ttl=jti_ttl, cost=cost,
                weight=weight, vin=vin, iat=iat if jti else 0, iat_leeway=iat_leeway,
                grant=grant,
            )  # fmt: skip
        except LimiterUnavailable:
            self._pending[account_id] += weight
            raise
        if decision.verdict in {"blocked", "replayed", "window_lost", "grant_exhausted", "limited"}:
            # the script returned before it applied the piggybacked weight: keep it
            self._pending[account_id] += weight
        return decision

    async def record_signal(
        self, account_id: str, signal: str, *, key_id: str | None = None, cost: int = 1
    ) -> Decision:
        """Count a refusal that happened before admission (one round trip, refusals only):
        its weight goes to the guessing score and its cost to the flood buckets."""
        weight = self.policy.weights.get(signal, 0)
        return await self._run("signal", account_id, key_id=key_id, weight=weight, cost=cost)

    async def peek(self, account_id: str, *, key_id: str | None = None) -> Decision:
        """The account's current bucket state (for the RateLimit fields), without spending."""
        return await self._run("peek", account_id, key_id=key_id)

    async def admit_ip(self, client_ip: str | None, policy: LimitPolicy) -> Decision:
        """Flood bucket per client network for unauthenticated endpoints (pseudonymized IP)."""
        network = _network_of(client_ip)
        pseudonym = hmac.new(self.key, b"ip:" + network.encode(), hashlib.sha256).hexdigest()[:20]
        return await self._run("admit", "ip:" + pseudonym, cost=1, policy=policy, allowed=True)

    async def grant_uses(self, account_id: str, grant_ids: list[str]) -> dict[str, int]:
        """How many queries were admitted under each grant of ``account_id`` (the grantee: the
        counters live in its slot), 0 for none; one round trip (MGET in one slot). Raises
        LimiterUnavailable."""
        ids = list(dict.fromkeys(grant_ids))
        if not ids:
            return {}
        tag = _tag(account_id)
        try:
            values = await self.redis.mget([self._grant_key(tag, g) for g in ids])
        except RedisError as exc:
            raise LimiterUnavailable(headers={"Retry-After": "1"}) from exc
        return {g: int(v) if v is not None else 0 for g, v in zip(ids, values, strict=True)}

    async def forget_grant_uses(self, grants: list[tuple[str, str]]) -> int:
        """Delete the use counters of deleted grants ((grantee account id, grant id)): one
        DEL per grantee (its counters share its slot); the number deleted. Raises RedisError."""
        by_grantee: dict[str, list[str]] = {}
        for grantee, grant_id in grants:
            by_grantee.setdefault(grantee, []).append(grant_id)
        removed = 0
        for grantee, ids in by_grantee.items():
            tag = _tag(grantee)
            removed += int(await self.redis.delete(*(self._grant_key(tag, g) for g in ids)))
        return removed

    async def forget_account(self, account_id: str, key_ids: list[str]) -> int:
        """Erasure: delete every key of the account (blocks, strikes, buckets, scores, VIN
        pseudonyms, walks, origin and replay records, grant use counters); the number deleted.
        A block need not survive: it is per account id, never reused, and its evidence is the
        flags in the accounts database (docs/deploy.md "Erasure"). The names are computed (the
        per-key buckets from ``key_ids``, every API key the account ever had); only the replay
        records (a digest of each attestation's jti) and the grant counters (a pseudonym of each
        grant id: the grants are gone by now) are found by listing the account's slot (Redis
        Cluster) or by SCAN with the account's own pattern. Raises RedisError."""
        tag = _tag(account_id)
        fixed = [tag + s for s in _ACCOUNT_KEYS] + [tag + ":kb:" + k for k in key_ids]
        removed = int(await self.redis.delete(*fixed))
        listed = [key async for key in self._listed_keys_of(tag)]
        for start in range(0, len(listed), 500):
            removed += int(await self.redis.delete(*listed[start : start + 500]))
        self._blocks.pop(account_id, None)
        self._pending.pop(account_id, None)
        return removed

    async def _listed_keys_of(self, tag: str) -> AsyncIterator[Any]:
        """The account's replay records and grant counters."""
        prefixes = tuple((tag + suffix).encode() for suffix in _LISTED)
        redis = self.redis
        if hasattr(redis, "keyslot") and hasattr(redis, "cluster_get_keys_in_slot"):
            # Redis Cluster: the tag is one slot; list that slot's keys on the node holding it
            slot = redis.keyslot(tag)
            count = int(await redis.cluster_countkeysinslot(slot))
            if count:
                for key in await redis.cluster_get_keys_in_slot(slot, count):
                    if (key if isinstance(key, bytes) else str(key).encode()).startswith(prefixes):
                        yield key
            return
        # one Redis: SCAN, O(keys in Redis) (account ids hold no glob characters)
        for suffix in _LISTED:
            async for key in redis.scan_iter(match=tag + suffix + "*", count=1000):
                yield key

    def records_since(self, epoch_s: int) -> None:
        """The embedded stand-in's replay records are complete only from ``epoch_s`` on (the
        previous process died with its records: gateway/limits/embedded.py)."""
        self._fallback_origin = (self._fallback_origin[0], epoch_s)

    async def replay_records(self) -> list[tuple[str, int]]:
        """Every live replay record: (key, milliseconds to live)."""
        found = []
        async for key in self.redis.scan_iter(match="vl:*:jti:*", count=1000):
            ttl = int(await self.redis.pttl(key))
            if ttl > 0:
                found.append((_s(key), ttl))
        return found

    async def restore_replay_records(self, records: list[tuple[str, int]]) -> None:
        for key, ttl_ms in records:
            await self.redis.set(key, "1", px=ttl_ms, nx=True)

    async def grant_counters(self) -> list[tuple[str, int, int]]:
        """Every live grant use counter: (key, uses, milliseconds to live)."""
        found = []
        async for key in self.redis.scan_iter(match="vl:*:grant:*", count=1000):
            ttl, value = int(await self.redis.pttl(key)), await self.redis.get(key)
            if ttl > 0 and value is not None:
                found.append((_s(key), int(value), ttl))
        return found

    async def restore_grant_counters(self, counters: list[tuple[str, int, int]]) -> None:
        for key, uses, ttl_ms in counters:
            await self.redis.set(key, str(uses), px=ttl_ms, nx=True)

    async def aclose(self) -> None:
        if self._admission is not None:
            await self._admission.aclose()

    async def unblock(self, account_id: str) -> bool:
        self._blocks.pop(account_id, None)
        tag = _tag(account_id)
        try:
            removed = await self.redis.delete(tag + ":ban", tag + ":score", tag + ":seq")
        except RedisError as exc:
            raise LimiterUnavailable(headers={"Retry-After": "1"}) from exc
        return bool(removed)
