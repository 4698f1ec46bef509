"""The VIN request path: one service, plain awaited steps in one visible order.

Every VIN endpoint (``decode``, ``lookup``, ``issue_attestation``) is a method here that runs
inside ``_recorded``, the one place that sees every outcome. The order, and why:

1. **account**: the bearer credential resolves to an account, and the attestation key its kid
   names with it (one indexed query when neither is cached, none when both are). Suspended,
   blocked in this worker, or without consent to the policy in force stops here: nothing about
   the VIN is looked at for a caller who may not query at all.
2. **body**: parsed and validated here, not by the framework, so a malformed body is recorded
   against the account like any refusal (it is not a suspicious-usage signal and costs no
   attestation).
3. **attestation**: the signed declaration that the caller owns the vehicle or holds the owner's
   authorization. Checked before the VIN is decoded because it binds the body's VIN
   (``vin_sha256``) and is the legal basis of the query. The VIN is normalized just before
   it, so a VIN outside printable ASCII is ``invalid_vin`` already here (nothing to bind).
   Right after the verifier's stateless checks, two steps of the same stage:

   a. **grant** (basis ``owner_granted``): the grant its ``grant_id`` names, from the worker's
      cache (``GrantResolver``), must be the caller's and active, cover this VIN (its vehicle
      pseudonym, compared in constant time) and the purpose; whether its uses are exhausted
      is decided in the admission round trip (step 5), which also counts the use;
   b. **grant policy** (``VINGW_GRANT_POLICY``): where it applies, any other basis is counted
      and flagged (shadow) or refused ``owner_grant_required`` (enforced; not a signal).

   (``issue_attestation`` has no attestation: it checks the declaration it is about to sign
   instead, grant and policy included, after the VIN and before admission, so a refused
   declaration is a signal too; its admission checks the grant's uses without counting one.)
4. **VIN**: normalized, validated and decoded with ``vin``; every problem is reported at once.
5. **admission**: ONE Redis round trip (``admit.lua``) claims the attestation's ``jti`` (replay),
   checks and counts the grant's uses, and decides block, flood, guessing score, distinct VINs
   and serial walks together; its consequences (a block that just started, a shadow hit)
   become admin flags off the hot path.
6. **catalogue**: only the decoded features of the vehicle leave the gateway, never the VIN.

A refusal in steps 1-4 raises before admission, so ``_recorded`` reports it: a refused
attestation or an invalid VIN is a suspicious-usage signal (one round trip, refusals only), any
other refusal only reads the bucket for the RateLimit fields. Every outcome, refusals included,
is written to the search log on the way out (``record`` does no I/O). A catalogue miss is noted
in process and rides on the account's next admission.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar

import orjson
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

import vin as vinlib
from gateway.accounts.auth import Authenticator
from gateway.accounts.exceptions import (
    AccountSuspended,
    ConsentWithdrawn,
    PolicyAcceptanceRequired,
)
from gateway.accounts.service import AccountState
from gateway.catalogue.backends import Catalogue, VehicleFeatures
from gateway.config import Settings
from gateway.exceptions import GatewayError, NotAuthenticated, validation_problem
from gateway.grants.models import GrantResolver, GrantState, grant_expired, vehicle_pseudonym
from gateway.limits.consequences import Consequences, signal_of
from gateway.limits.exceptions import LimiterUnavailable
from gateway.limits.limiter import GRANT_COUNTER_GRACE_S, Decision, Limiter
from gateway.lookups.schemas import AttestationRequest, DecodeRequest, LookupRequest
from gateway.searchlog.service import QueryEvent, SearchLog
from gateway.security import jws
from gateway.security.attestation import TYP, Attestation, AttestationVerifier, vin_digest
from gateway.security.exceptions import (
    AttestationReplayed,
    AttestationReplayWindowLost,
    GrantExhausted,
    GrantExpired,
    GrantPurposeOutOfScope,
    GrantRevoked,
    GrantUnknown,
    GrantVehicleMismatch,
    OwnerAuthorizationExpired,
    OwnerAuthorizationMissing,
    OwnerGrantRequired,
    PurposeOutOfScope,
)
from gateway.vins import normalized_vin, require_valid

Body = TypeVar("Body", bound=BaseModel)

GRANT_POLICY_SHADOW = Counter(
    "vingw_grant_policy_shadow_total",
    "VIN queries without an owner's grant that the grant policy in shadow mode let through, "
    "by policy (flagged, all)",
    ["policy"],
)

#: Flood tokens each endpoint spends (docs/limits.md).
COST: Final = MappingProxyType({"decode": 1, "lookup": 2, "issue_attestation": 1})
#: What a query made with a gateway-issued attestation spends: issuing it already took
#: ``COST["issue_attestation"]``, so the pair costs what the query alone costs with a
#: client-signed attestation (one lookup from the web frontend is one lookup, not 1 + 2).
PREPAID_COST: Final = MappingProxyType(
    {name: max(0, cost - COST["issue_attestation"]) for name, cost in COST.items()}
)


@dataclass(frozen=True, slots=True)
class Caller:
    """What the HTTP request says about who asks, read once by the endpoint. No VIN here."""

    credentials: str | None  # the bearer credential (access token or vgk_ API key)
    attestation: str | None  # the VIN-Attestation header
    client_ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    """A VIN endpoint's answer, serialized once (the endpoint sends these bytes as they are)."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class QueryRecord:
    """One VIN query as it goes down the path; becomes a search-log event on the way out."""

    endpoint: str
    caller: Caller
    started: float = field(default_factory=time.perf_counter)
    account: AccountState | None = None
    key_id: str | None = None
    vin: str | None = None
    decoded: vinlib.DecodedVIN | None = None
    attestation: Attestation | None = None
    decision: Decision | None = None
    attestation_key: tuple[str, jws.BoundKey | None] | None = None
    # the grant named, once it resolved to the caller (its grantee): the search log then
    # keeps this query, refused or not, under the grant's pseudonym for the owner to see
    grant: GrantState | None = None
    outcome: str = "ok"
    code: str | None = None

    def event(self) -> QueryEvent:
        d, a = self.decoded, self.attestation
        return QueryEvent(
            account_id=self.account.id if self.account else "",
            endpoint=self.endpoint,
            outcome=self.outcome,
            code=self.code,
            vin=self.vin,
            wmi=d.wmi if d else None,
            make=d.make if d else None,
            model_year=d.model_year if d else None,
            country_code=d.country_code if d else None,
            basis=a.basis if a else None,
            purpose=a.purpose if a else None,
            owner_ref=a.owner_ref if a else None,
            jti=a.jti if a else None,
            token_sha256=a.token_sha256 if a else None,
            gateway_issued=a.gateway_issued if a else None,
            client_ip=self.caller.client_ip,
            user_agent=self.caller.user_agent,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            grant_id=self.grant.id if self.grant else None,
        )


def features_of(vehicle: vinlib.DecodedVIN) -> VehicleFeatures:
    """What the catalogue may know: the decoded facts without the serial number."""
    return VehicleFeatures(
        wmi=vehicle.wmi,
        vds=vehicle.vin[3:8] if len(vehicle.vin) == 17 else None,
        make=vehicle.make,
        make_candidates=tuple(vehicle.make_candidates),
        model_year=vehicle.model_year,
        model_year_candidates=tuple(vehicle.model_year_candidates),
        country_code=vehicle.country_code,
        plant_code=vehicle.plant_code,
    )


class VinQuery:
    """The VIN endpoints' one service (built once by the lifespan, shared by all requests)."""

    def __init__(
        self,
        *,
        settings: Settings,
        auth: Authenticator,
        verifier: AttestationVerifier,
        limiter: Limiter,
        consequences: Consequences,
        catalogue: Catalogue,
        searchlog: SearchLog,
        gateway_attestation_key: jws.BoundKey,
        grants: GrantResolver,
        vehicle_key: bytes,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.verifier = verifier
        self.limiter = limiter
        self.consequences = consequences
        self.catalogue = catalogue
        self.searchlog = searchlog
        self.gateway_key = gateway_attestation_key
        self.grants = grants
        self.vehicle_key = vehicle_key  # the vehicle pseudonym's key (gateway.grants.models)

    # --- the endpoints -----------------------------------------------------------------------

    async def decode(self, caller: Caller, raw_body: bytes) -> Answer:
        async with self._recorded(caller, "decode") as q:
            await self._account(q)
            body = self._body(q, DecodeRequest, raw_body)
            await self._attestation(q, body.vin)
            vehicle = self._valid_vin(q, body.vin)
            decision = await self._admit(q)
            return self._json(200, {"vehicle": vehicle.to_dict()}, decision)

    async def lookup(self, caller: Caller, raw_body: bytes) -> Answer:
        async with self._recorded(caller, "lookup") as q:
            await self._account(q)
            body = self._body(q, LookupRequest, raw_body)
            await self._attestation(q, body.vin)
            vehicle = self._valid_vin(q, body.vin)
            decision = await self._admit(q)
            found = await self.catalogue.lookup(
                features_of(vehicle),
                vehicle_type_id=body.vehicle_type_id,
                categories=body.categories,
            )
            if found.vehicle_type is None:
                q.outcome = "miss"
            answer = {
                "query_id": "q_" + secrets.token_hex(8),
                "vehicle": vehicle.to_dict(),
                "vehicle_type": found.vehicle_type,
                "alternatives": found.alternatives,
                "reason": found.reason,
            }
            # the parts list (most of the answer) was serialized once, with the catalogue's cache
            out = orjson.dumps(answer)[:-1] + b',"parts":' + found.parts_json + b"}"
            return Answer(200, out, decision.headers())

    async def issue_attestation(self, caller: Caller, raw_body: bytes) -> Answer:
        """A gateway-signed attestation for an interactive user's declaration (one per query).

        The same path without step 3: the declaration in the body is what gets signed, so it is
        checked instead of a token (after the VIN: nothing is signed for an invalid one)."""
        async with self._recorded(caller, "issue_attestation") as q:
            account = await self._account(q)
            body = self._body(q, AttestationRequest, raw_body)
            q.vin = normalized_vin(body.vin)
            self._valid_vin(q, body.vin)
            # the declaration before admission: a refused one is a suspicious-usage signal,
            # reported like a refused attestation
            now = int(time.time())
            authorization = body.owner_authorization
            if body.basis == "owner_authorized":
                if authorization is None:
                    raise OwnerAuthorizationMissing()
                if authorization.valid_until < now:
                    raise OwnerAuthorizationExpired()
                if authorization.scope is not None and body.purpose not in authorization.scope:
                    raise PurposeOutOfScope()
            elif body.basis == "owner_granted":
                assert body.grant_id is not None  # the schema requires it with this basis
                await self._grant(q, body.grant_id, body.purpose, now)
            self._grant_policy(q, body.basis)
            decision = await self._admit(q)
            ttl = min(self.settings.gateway_attestation_ttl_s, self.verifier.max_lifetime_s)
            jti = secrets.token_urlsafe(18)
            claims: dict[str, Any] = {
                "iss": self.settings.issuer,
                "sub": account.id,
                "aud": self.settings.audience,
                "iat": now,
                "exp": now + ttl,
                "jti": jti,
                "vin_sha256": vin_digest(q.vin),
                "basis": body.basis,
                "purpose": body.purpose,
            }
            if authorization is not None:
                claims["owner_authorization"] = authorization.model_dump(exclude_none=True)
            if q.grant is not None:
                claims["grant_id"] = q.grant.id
            token = jws.sign(claims, self.gateway_key, TYP)
            q.outcome = "issued"
            expires = datetime.fromtimestamp(now + ttl, UTC).isoformat().replace("+00:00", "Z")
            issued = {"attestation": token, "expires_at": expires, "jti": jti}
            return self._json(201, issued, decision)

    # --- the steps, in the order above -------------------------------------------------------

    async def _account(self, q: QueryRecord) -> AccountState:
        credentials = q.caller.credentials
        if not credentials:
            raise NotAuthenticated()
        # the attestation's key comes with the account: one query when neither is cached
        kid = jws.peek_kid(q.caller.attestation)
        account, q.key_id, key = await self.auth.resolve_query(credentials, kid)
        q.account = account
        if kid is not None:
            q.attestation_key = (kid, key)
        if account.status == "suspended":
            raise AccountSuspended()
        blocked = self.limiter.blocked_locally(account.id)
        if blocked is not None:
            q.decision = blocked
            blocked.raise_for_verdict()
        if account.consent_version is None:
            raise ConsentWithdrawn()
        version = self.settings.privacy_policy_version
        if account.consent_version != version:
            raise PolicyAcceptanceRequired(privacy_policy_version=version)
        return account

    @staticmethod
    def _body(q: QueryRecord, model: type[Body], raw: bytes) -> Body:
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_problem(exc.errors(include_url=False, include_input=False)) from None

    async def _attestation(self, q: QueryRecord, raw_vin: str) -> Attestation:
        assert q.account is not None
        q.vin = normalized_vin(raw_vin)  # before the attestation: it binds the normalized VIN
        now = int(time.time())
        q.attestation = attestation = await self.verifier.check(
            q.caller.attestation,
            account_id=q.account.id,
            normalized_vin=q.vin,
            now=now,
            resolved=q.attestation_key,
        )
        if attestation.grant_id is not None:  # basis owner_granted (the verifier checked its form)
            await self._grant(q, attestation.grant_id, attestation.purpose, now)
        self._grant_policy(q, attestation.basis)
        return attestation

    async def _grant(self, q: QueryRecord, grant_id: str, purpose: str, now: int) -> GrantState:
        """Step 3a: the grant, checked in this order (each a refused attestation, a signal)."""
        assert q.account is not None and q.vin is not None
        grant = await self.grants.grant(grant_id)
        # unknown, pending (no grantee yet) and another workshop's grant all look the same
        if (
            grant is None
            or grant.grantee_id is None
            or not jws.constant_time_equal(grant.grantee_id, q.account.id)
        ):
            raise GrantUnknown()
        q.grant = grant
        if grant.revoked:
            raise GrantRevoked()
        if grant_expired(grant.valid_until, now):
            raise GrantExpired()
        vehicle = vehicle_pseudonym(self.vehicle_key, q.vin)
        if not jws.constant_time_equal(vehicle, grant.vin_pseudonym):
            raise GrantVehicleMismatch()
        if purpose not in grant.purposes:
            raise GrantPurposeOutOfScope()
        return grant

    def _grant_policy(self, q: QueryRecord, basis: str) -> None:
        """Step 3b: where the grant policy applies, a basis other than owner_granted is counted
        and flagged once per account and window (shadow) or refused (enforced)."""
        assert q.account is not None
        policy = self.settings.grant_policy
        if basis == "owner_granted" or policy == "off":
            return
        if policy == "flagged" and not q.account.flagged:
            return
        if not self.settings.grant_policy_shadow:
            raise OwnerGrantRequired()
        GRANT_POLICY_SHADOW.labels(policy).inc()
        self.consequences.shadow_hit(q.account.id, "grant_policy")

    @staticmethod
    def _valid_vin(q: QueryRecord, raw_vin: str) -> vinlib.DecodedVIN:
        q.decoded = require_valid(vinlib.decode(raw_vin))
        return q.decoded

    async def _admit(self, q: QueryRecord) -> Decision:
        assert q.account is not None and q.decoded is not None
        attestation, grant, now = q.attestation, q.grant, int(time.time())
        q.decision = decision = await self.limiter.admit(
            q.account.id,
            jti=attestation.jti if attestation else None,
            jti_ttl=self.verifier.replay_ttl(attestation, now) if attestation else 0,
            cost=(PREPAID_COST if attestation and attestation.gateway_issued else COST)[q.endpoint],
            key_id=q.key_id,
            vin=self.limiter.signals_of(q.decoded.vin),
            iat=attestation.iat if attestation else 0,
            iat_leeway=self.verifier.iat_leeway(attestation) if attestation else 0,
            grant_id=grant.id if grant else None,
            grant_max_uses=grant.max_uses if grant else None,
            grant_ttl_s=grant.valid_until + GRANT_COUNTER_GRACE_S - now if grant else 0,
            count_grant_use=q.endpoint != "issue_attestation",  # the query made with it counts
        )
        self.consequences.apply(q.account.id, decision)
        if decision.verdict == "replayed":
            raise AttestationReplayed(headers=decision.headers())
        if decision.verdict == "window_lost":  # issued before Redis lost the replay records
            retry = str(max(1, decision.retry_after))
            raise AttestationReplayWindowLost(headers={**decision.headers(), "Retry-After": retry})
        if decision.verdict == "grant_exhausted":
            raise GrantExhausted(headers=decision.headers())
        decision.raise_for_verdict()
        return decision

    # --- recording ---------------------------------------------------------------------------

    def _recorded(self, caller: Caller, endpoint: str) -> _Recording:
        return _Recording(self, QueryRecord(endpoint=endpoint, caller=caller))

    async def _report(self, q: QueryRecord, exc: GatewayError) -> None:
        """A refusal before admission: a signal for the limiter, or the bucket state to show.

        At most one Redis round trip, and none after a failed admission (the limiter already
        said it is unavailable: a second timeout in a row would double the wait)."""
        if q.account is None or q.code is None:
            return
        if q.decision is None and not isinstance(exc, LimiterUnavailable):
            signal = signal_of(q.code)
            with contextlib.suppress(LimiterUnavailable):
                if signal:
                    q.decision = await self.limiter.record_signal(
                        q.account.id, signal, key_id=q.key_id
                    )
                    self.consequences.apply(q.account.id, q.decision)
                elif q.code != "suspicious_usage_blocked":
                    q.decision = await self.limiter.peek(q.account.id, key_id=q.key_id)
        if q.decision is not None:
            exc.headers.update(q.decision.headers())

    @staticmethod
    def _json(status: int, answer: dict[str, Any], decision: Decision) -> Answer:
        return Answer(status, orjson.dumps(answer), decision.headers())


class _Recording:
    """``async with`` around one query: every refusal is reported, every outcome recorded."""

    __slots__ = ("query", "service")

    def __init__(self, service: VinQuery, query: QueryRecord) -> None:
        self.service, self.query = service, query

    async def __aenter__(self) -> QueryRecord:
        return self.query

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        q, service = self.query, self.service
        try:
            if isinstance(exc, GatewayError):
                q.outcome, q.code = "refused", exc.code
                await service._report(q, exc)
            elif isinstance(exc, Exception):
                q.outcome, q.code = "error", "internal_error"
        finally:
            if q.account is not None:
                if q.outcome == "miss":
                    service.limiter.note(q.account.id, "catalogue_miss")
                service.searchlog.record(q.event())
