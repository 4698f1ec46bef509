"""The request path as ``Annotated`` dependency aliases.

A VIN endpoint's signature reads the path top to bottom::

    log: QueryLogDep              opened first; records every outcome on the way out
    account: VINAccount           bearer -> account (cached); suspended, consent, running block
    attestation: LookupAttestation  the per-query attestation: every stateless check
    vin: LookupVIN                normalized, validated and decoded VIN (422 lists every problem)
    quota: LookupQuota            ONE Redis round trip (gateway/limits/admit.lua): block, jti
                                  replay, flood buckets, guessing score, distinct VINs, walks
    catalogue: CatalogueDep       the parts catalogue (vehicle features only, never the VIN)

Each step depends only on the ``QueryLog`` (and the body): the order of the signature is the
order of execution, and a step that finds its predecessor missing raises at once.

Why this order: the attestation is checked before the VIN is decoded because it binds the body's
VIN (``vin_sha256``) and is the legal basis of the query; the quota step comes after both so one
round trip can claim the jti and count the VIN's pseudonyms. A refused attestation or an invalid
VIN raises before the quota step, so the ``QueryLog`` dependency, entered first, catches every
refusal on the way out: it reports it to the limiter as a suspicious-usage signal (one round trip,
refusals only) and writes the search-log event. Catalogue misses ride on the account's next
admission. The search log never blocks the request.

(No ``from __future__ import annotations`` here: the step factories below build dependencies
whose body annotation is a runtime class, which FastAPI must see.)
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import vin as vinlib
from gateway.accounts.models import Flag
from gateway.accounts.service import AccountState
from gateway.catalogue.backends import Catalogue
from gateway.errors import (
    AccountSuspended,
    AdminRequired,
    ConsentWithdrawn,
    GatewayError,
    InvalidToken,
    NotAuthenticated,
    PolicyAcceptanceRequired,
)
from gateway.limits.limiter import (
    Decision,
    LimiterUnavailable,
    RateLimited,
    SuspiciousUsageBlocked,
)
from gateway.lookups.schemas import DecodeRequest, LookupRequest, VinBody
from gateway.openapi import VIN_ATTESTATION_PARAMETER, declares
from gateway.searchlog.service import QueryEvent
from gateway.security.attestation import Attestation, AttestationError, AttestationReplayed
from gateway.state import AppState


def state_of(request: Request) -> AppState:
    return request.app.state.gw  # type: ignore[no-any-return]


async def get_state(request: Request) -> AppState:
    return state_of(request)


# FastAPI walks a dependency's whole sub-tree again at every place it is referenced (its cache
# only saves the call), at roughly 25 us a node. So the steps of the VIN path are near-leaves:
# they reach the app state through ``state_of(request)`` rather than ``StateDep``, and each
# takes its predecessors' results from the ``QueryLog`` (``log.after(...)``) instead of
# re-declaring them. FastAPI solves parameters in declaration order, so the signature's order
# is the execution order; a step placed before its predecessor fails loudly.
StateDep = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An access token or a vgk_ API key")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@declares(NotAuthenticated, InvalidToken, AccountSuspended)
async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccountState:
    """Bearer token or API key -> account (cached briefly); suspended accounts stop here."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated()
    account, key_id = await state_of(request).auth.resolve(credentials.credentials)
    request.state.api_key_id = key_id
    if account.status == "suspended":
        raise AccountSuspended()
    return account


Authenticated = Annotated[AccountState, Depends(authenticated)]


@declares(rate_limit=True)
async def current_account(
    account: Authenticated, request: Request, response: Response
) -> AccountState:
    """An authenticated account on a non-VIN endpoint: answers carry the RateLimit fields.

    Without Redis they go without the fields rather than fail: an account holder's rights
    (access, export, erasure) do not depend on the limiter."""
    try:
        decision = await state_of(request).limiter.peek(account.id, key_id=request.state.api_key_id)
    except LimiterUnavailable:
        return account
    response.headers.update(decision.headers())
    return account


CurrentAccount = Annotated[AccountState, Depends(current_account)]


@declares(RateLimited, LimiterUnavailable)
async def ip_limited(request: Request) -> None:
    """Per-client-network flood limit of unauthenticated endpoints (registration, login)."""
    state = state_of(request)
    try:
        decision = await state.limiter.admit_ip(client_ip(request), state.ip_policy)
    except LimiterUnavailable:
        if state.settings.limit_ip_fail_open:
            return
        raise
    decision.raise_for_verdict()


IpLimited = Annotated[None, Depends(ip_limited)]


@declares(AdminRequired)
async def current_admin(account: CurrentAccount) -> AccountState:
    if account.role != "admin":
        raise AdminRequired()
    return account


CurrentAdmin = Annotated[AccountState, Depends(current_admin)]


# --- the VIN request path -------------------------------------------------------------------


def signal_of(code: str) -> str | None:
    """The suspicious-usage signal a refusal is (None for refusals that are not one).

    Every refused attestation counts, whatever the reason (a query with no valid basis is a
    signal by the terms), and so does an invalid VIN; a refusal for policy, consent, quota or a
    malformed body does not."""
    if code == "invalid_vin":
        return "invalid_vin"
    if code.startswith(("attestation_", "owner_authorization_")) or code == "purpose_out_of_scope":
        return "attestation_refused"
    return None


@dataclass
class QueryLog:
    """One VIN query as it goes down the path; written to the search log on the way out."""

    endpoint: str
    client_ip: str | None
    user_agent: str | None
    started: float = field(default_factory=time.perf_counter)
    account_id: str | None = None
    account: AccountState | None = None
    vin: str | None = None
    decoded: vinlib.DecodedVIN | None = None
    attestation: Attestation | None = None
    decision: Decision | None = None
    outcome: str = "ok"
    code: str | None = None

    def after(self, step: str, value: Any) -> Any:
        """A predecessor's result: the steps run in the signature's order, and say so if not."""
        if value is None:
            raise RuntimeError(f"the {step} step must come earlier in the endpoint signature")
        return value

    def event(self) -> QueryEvent:
        d, a = self.decoded, self.attestation
        return QueryEvent(
            account_id=self.account_id or "",
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
            client_ip=self.client_ip,
            user_agent=self.user_agent,
            latency_ms=(time.perf_counter() - self.started) * 1000,
        )


@declares(rate_limit=True)  # a refusal after the account is known carries the RateLimit fields
async def query_log(request: Request) -> AsyncIterator[QueryLog]:
    state = state_of(request)
    route = request.scope.get("route")
    record = QueryLog(
        endpoint=getattr(route, "name", "vin"),
        client_ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    limiter = state.limiter
    try:
        yield record
    except Exception as exc:
        if not isinstance(exc, GatewayError | RequestValidationError):
            record.outcome, record.code = "error", "internal_error"
            raise
        record.outcome = "refused"
        record.code = exc.code if isinstance(exc, GatewayError) else "invalid_request"
        account_id = record.account_id
        if account_id and record.decision is None:
            key_id = getattr(request.state, "api_key_id", None)
            signal = signal_of(record.code)
            with contextlib.suppress(LimiterUnavailable):
                if signal:
                    record.decision = await limiter.record_signal(account_id, signal, key_id=key_id)
                    consequences(state, account_id, record.decision)
                elif record.code != "suspicious_usage_blocked":
                    record.decision = await limiter.peek(account_id, key_id=key_id)
        if isinstance(exc, GatewayError) and record.decision is not None:
            exc.headers.update(record.decision.headers())
        raise
    finally:
        if record.account_id:
            if record.outcome == "miss":
                limiter.note(record.account_id, "catalogue_miss")
            state.searchlog.record(record.event())


QueryLogDep = Annotated[QueryLog, Depends(query_log)]


@declares(SuspiciousUsageBlocked, ConsentWithdrawn, PolicyAcceptanceRequired)
async def vin_account(account: Authenticated, log: QueryLogDep, request: Request) -> AccountState:
    state = state_of(request)
    log.account_id, log.account = account.id, account
    blocked = state.limiter.blocked_locally(account.id)
    if blocked is not None:
        log.decision = blocked
        blocked.raise_for_verdict()
    if account.consent_version is None:
        raise ConsentWithdrawn()
    if account.consent_version != state.settings.privacy_policy_version:
        raise PolicyAcceptanceRequired(privacy_policy_version=state.settings.privacy_policy_version)
    return account


VINAccount = Annotated[AccountState, Depends(vin_account)]


class InvalidVIN(GatewayError):
    code, status, title = "invalid_vin", 422, "The VIN is not valid"


def require_valid(decoded: vinlib.DecodedVIN) -> vinlib.DecodedVIN:
    """The decoded VIN, or a 422 listing every problem (code, position, message)."""
    if not decoded.valid:
        raise InvalidVIN(
            "The VIN has problems: " + ", ".join(sorted({e.code for e in decoded.errors})),
            errors=[e.to_dict() for e in decoded.errors],
        )
    return decoded


Step = Callable[..., Coroutine[Any, Any, Any]]


#: Every refusal of the attestation verifier (each a subclass; the base is never sent).
ATTESTATION_REFUSALS: tuple[type[GatewayError], ...] = tuple(AttestationError.__subclasses__())


def attestation_step(model: type[VinBody]) -> Step:
    # The header is optional to FastAPI, so that a missing one is the verifier's
    # attestation_missing problem rather than a 422; the document declares it required.
    @declares(*ATTESTATION_REFUSALS, parameters=[VIN_ATTESTATION_PARAMETER])
    async def verified_attestation(
        body: model,  # type: ignore[valid-type]
        log: QueryLogDep,
        request: Request,
        vin_attestation: Annotated[
            str | None,
            Header(description="The per-query attestation (compact JWS)", include_in_schema=False),
        ] = None,
    ) -> Attestation:
        account = log.after("account", log.account)
        log.vin = vinlib.normalize(body.vin)  # type: ignore[attr-defined]
        attestation = await state_of(request).verifier.check(
            vin_attestation, account_id=account.id, normalized_vin=log.vin, now=int(time.time())
        )
        log.attestation = attestation
        return attestation

    return verified_attestation


def vin_step(model: type[VinBody]) -> Step:
    @declares(InvalidVIN)
    async def valid_vin(body: model, log: QueryLogDep) -> vinlib.DecodedVIN:  # type: ignore[valid-type]
        log.after("attestation", log.attestation)
        log.decoded = require_valid(vinlib.decode(body.vin))  # type: ignore[attr-defined]
        return log.decoded

    return valid_vin


def quota_step(model: type[VinBody], cost: int) -> Step:
    # ``body`` is declared (not used) so FastAPI skips this step, like the others, when the
    # body does not validate: a bad request never spends a quota or claims a jti.
    @declares(LimiterUnavailable, RateLimited, SuspiciousUsageBlocked, AttestationReplayed)
    async def quota(
        body: model,  # type: ignore[valid-type]
        request: Request,
        log: QueryLogDep,
        response: Response,
    ) -> Decision:
        attestation: Attestation = log.after("attestation", log.attestation)
        vin: vinlib.DecodedVIN = log.after("valid VIN", log.decoded)
        state = state_of(request)
        account_id = log.account_id or ""
        now = int(time.time())
        decision = await state.limiter.admit(
            account_id,
            jti=attestation.jti,
            jti_ttl=state.verifier.replay_ttl(attestation, now),
            cost=cost,
            key_id=request.state.api_key_id,
            vin=state.limiter.signals_of(vin.vin),
        )
        log.decision = decision
        consequences(state, account_id, decision)
        response.headers.update(decision.headers())
        if decision.verdict == "replayed":
            raise AttestationReplayed()
        decision.raise_for_verdict()
        return decision

    return quota


@dataclass(frozen=True)
class VinPath:
    """The steps of the VIN request path bound to one request body model (built once)."""

    attestation: Step
    vin: Step
    quota: Step


def vin_path(model: type[VinBody], *, cost: int) -> VinPath:
    return VinPath(attestation_step(model), vin_step(model), quota_step(model, cost))


_decode = vin_path(DecodeRequest, cost=1)
_lookup = vin_path(LookupRequest, cost=2)

DecodeAttestation = Annotated[Attestation, Depends(_decode.attestation)]
DecodeVIN = Annotated[vinlib.DecodedVIN, Depends(_decode.vin)]
DecodeQuota = Annotated[Decision, Depends(_decode.quota)]
LookupAttestation = Annotated[Attestation, Depends(_lookup.attestation)]
LookupVIN = Annotated[vinlib.DecodedVIN, Depends(_lookup.vin)]
LookupQuota = Annotated[Decision, Depends(_lookup.quota)]


def consequences(state: AppState, account_id: str, decision: Decision) -> None:
    """A block just started or a shadow policy fired: flag it for admins, off the hot path."""
    state.limiter.remember(account_id, decision)
    findings = []
    if decision.verdict == "blocked_now":
        findings.append((decision.policy, False))
    findings.extend((policy, True) for policy in decision.shadow_hits)
    for policy, shadow in findings:
        if shadow and not state.limiter.first_shadow_hit(account_id, policy):
            continue
        flag = Flag(
            account_id=account_id,
            policy=policy,
            shadow=shadow,
            reason=FLAG_REASONS.get(policy, policy)
            + (" (shadow mode: not enforced)" if shadow else ""),
            evidence=decision.evidence(),
            block_s=0 if shadow else decision.retry_after,
        )
        task = asyncio.create_task(state.accounts.add_flag(flag))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()

FLAG_REASONS = {
    "guessing": "too many invalid VINs, refused attestations or catalogue misses",
    "distinct_vins": "too many distinct VINs in 24 hours",
    "sequential": "consecutive queries walk the serial numbers of one vehicle series",
    "flood": "more requests than the flood limit allows",
}


async def get_catalogue(request: Request) -> Catalogue:
    return state_of(request).catalogue


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
