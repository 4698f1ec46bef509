"""The per-query owner-authorization attestation verifier (format and order: docs/attestation.md).

One verifier serves client-signed tokens (keys registered by accounts, ES256/RS256) and
gateway-issued tokens (the gateway's own HS256 key, bound to its own kid). The algorithm is
always the registered key's; the header's ``alg`` is only compared against it.

``check`` does every stateless check. Replay (``jti`` accepted once, ever) needs shared state and
is decided by the limiter's single Redis round trip (``gateway.limits``), so the request path pays
one round trip for replay and quota together. ``AttestationVerifier.replay_key`` names the key.

Order of checks (each refusal's code in brackets):
 1. header present                                 [attestation_missing]
 2. compact JWS, JSON header, typ, no crit         [attestation_malformed]
 3. kid registered to this account                 [attestation_unknown_key]
 4. header alg equals the key's algorithm          [attestation_algorithm_not_allowed]
 5. signature                                      [attestation_bad_signature]
 6. claims present and well-typed                  [attestation_malformed]
 7. iss, sub, aud                                  [attestation_issuer_mismatch,
                                                    attestation_subject_mismatch,
                                                    attestation_audience_mismatch]
 8. lifetime, iat in the future, exp               [attestation_lifetime_too_long,
                                                    attestation_not_yet_valid, attestation_expired]
 9. vin_sha256 against the body's VIN              [attestation_vin_mismatch]
10. basis, purpose; owner_authorized: the owner    [attestation_basis_invalid,
    authorization; owner_granted: the grant_id      attestation_purpose_invalid,
    claim's form                                    owner_authorization_missing,
                                                    owner_authorization_expired,
                                                    purpose_out_of_scope,
                                                    attestation_malformed]

A ``grant_id`` is only checked for its form here. Whether the grant exists, is the caller's,
and covers this vehicle and purpose needs the accounts database: that is the request path's
grant step, right after ``check`` (``gateway.lookups.service.VinQuery._grant``), and the use
count is decided in the admission round trip.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.security import jws
from gateway.security.exceptions import (
    AttestationAlgorithmNotAllowed,
    AttestationAudienceMismatch,
    AttestationBadSignature,
    AttestationBasisInvalid,
    AttestationExpired,
    AttestationIssuerMismatch,
    AttestationLifetimeTooLong,
    AttestationMalformed,
    AttestationMissing,
    AttestationNotYetValid,
    AttestationPurposeInvalid,
    AttestationSubjectMismatch,
    AttestationUnknownKey,
    AttestationVinMismatch,
    OwnerAuthorizationExpired,
    OwnerAuthorizationMissing,
    PurposeOutOfScope,
)

TYP = "vin-attestation+jwt"
BASES = frozenset({"owner", "owner_authorized", "owner_granted"})
PURPOSES = frozenset({"parts_inquiry", "maintenance"})
_JTI = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: A grant id's form (``grt_`` and 20 hex digits today; up to 32 characters accepted). Not
#: anchored: match it whole (``fullmatch``); a schema ``pattern`` is a search and needs ``^...$``.
GRANT_ID = re.compile(r"grt_[A-Za-z0-9_-]{1,28}")
_UNDERSTOOD_CRIT: frozenset[str] = frozenset()
#: How far apart the gateways' clocks (NTP-synchronized servers) and Redis's may be: the
#: ``iat`` of a gateway-issued attestation is a gateway's clock, never a client's.
GATEWAY_CLOCK_SKEW_S = 2


@dataclass(frozen=True, slots=True)
class Attestation:
    """The facts of an accepted attestation (what the search log keeps, pseudonymized)."""

    kid: str
    gateway_issued: bool
    jti: str
    iat: int
    exp: int
    basis: str
    purpose: str
    owner_ref: str | None
    owner_valid_until: int | None
    token_sha256: str
    grant_id: str | None = None  # basis owner_granted: the grant named (checked after this)


def vin_digest(normalized_vin: str) -> str:
    return jws.b64url_encode(hashlib.sha256(normalized_vin.encode("ascii", "replace")).digest())


KeyResolver = Callable[[str], Awaitable[jws.BoundKey | None]]


class AttestationVerifier:
    def __init__(
        self,
        *,
        resolve_key: KeyResolver,
        issuer: str,
        audience: str,
        max_lifetime_s: int,
        future_iat_leeway_s: int,
        exp_leeway_s: int,
        restart_leeway_s: int = 0,
    ) -> None:
        self._resolve = resolve_key
        self.restart_leeway_s = restart_leeway_s
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime_s = max_lifetime_s
        self.future_iat_leeway_s = future_iat_leeway_s
        self.exp_leeway_s = exp_leeway_s

    def replay_ttl(self, attestation: Attestation, now: int) -> int:
        """Seconds the jti must stay in the replay cache: until exp + leeway, at least 1."""
        return max(1, attestation.exp + self.exp_leeway_s - now + 1)

    def iat_leeway(self, attestation: Attestation) -> int:
        """How far after its use an accepted attestation's ``iat`` is assumed to lie at most
        (``VINGW_ATTESTATION_RESTART_LEEWAY_S``; for the gateway's own, whose ``iat`` is a
        gateway's clock, never more than ``GATEWAY_CLOCK_SKEW_S``). The limiter refuses
        attestations issued before Redis lost its replay records plus this."""
        if attestation.gateway_issued:
            return min(GATEWAY_CLOCK_SKEW_S, self.restart_leeway_s)
        return self.restart_leeway_s

    async def check(
        self,
        token: str | None,
        *,
        account_id: str,
        normalized_vin: str,
        now: int,
        resolved: tuple[str, jws.BoundKey | None] | None = None,
    ) -> Attestation:
        """Every stateless check, in the order of the module docstring. ``resolved`` is a
        (kid, key) the caller already looked up for this account (None: not this account's);
        another kid is resolved here."""
        if not token:
            raise AttestationMissing()
        try:
            header, payload_bytes = jws.split_compact(token)
        except jws.JWSFormatError as exc:
            raise AttestationMalformed("The attestation is not a compact JWS") from exc
        if header.get("typ") != TYP:
            raise AttestationMalformed(f"The attestation header typ must be {TYP!r}")
        crit = header.get("crit")
        if crit is not None and (
            not isinstance(crit, list)
            or not crit
            or not all(isinstance(name, str) for name in crit)
            or not set(crit) <= _UNDERSTOOD_CRIT
        ):
            raise AttestationMalformed(
                "The attestation names critical headers this gateway does not understand"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AttestationMalformed("The attestation header has no kid")
        if resolved is not None and resolved[0] == kid:
            key = resolved[1]
        else:
            key = await self._resolve(kid)
        gateway_issued = key is not None and key.owner == self.issuer
        if key is None or (not gateway_issued and key.owner != account_id):
            raise AttestationUnknownKey()
        if header.get("alg") != key.alg:
            raise AttestationAlgorithmNotAllowed(f"The key {kid!r} is registered for {key.alg}")
        try:
            jws.verify(token, key)
        except jws.BadSignature as exc:
            raise AttestationBadSignature() from exc
        try:
            claims = orjson.loads(payload_bytes)
        except orjson.JSONDecodeError as exc:
            raise AttestationMalformed("The attestation payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise AttestationMalformed("The attestation payload is not a JSON object")
        self._check_types(claims)
        expected_iss = self.issuer if gateway_issued else key.owner
        if claims["iss"] != expected_iss:
            raise AttestationIssuerMismatch()
        if claims["sub"] != account_id:
            raise AttestationSubjectMismatch()
        aud = claims["aud"]
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise AttestationAudienceMismatch()
        iat, exp = claims["iat"], claims["exp"]
        if exp <= iat:
            raise AttestationMalformed("exp must be after iat")
        if exp - iat > self.max_lifetime_s:
            raise AttestationLifetimeTooLong(
                f"exp - iat is {exp - iat} s; at most {self.max_lifetime_s} s is allowed"
            )
        if iat > now + self.future_iat_leeway_s:
            raise AttestationNotYetValid()
        if now >= exp + self.exp_leeway_s:
            raise AttestationExpired()
        if not jws.constant_time_equal(claims["vin_sha256"], vin_digest(normalized_vin)):
            raise AttestationVinMismatch()
        owner_ref, valid_until, grant_id = self._check_basis(claims, now)
        return Attestation(
            kid=kid,
            gateway_issued=gateway_issued,
            jti=claims["jti"],
            iat=iat,
            exp=exp,
            basis=claims["basis"],
            purpose=claims["purpose"],
            owner_ref=owner_ref,
            owner_valid_until=valid_until,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            grant_id=grant_id,
        )

    @staticmethod
    def _check_types(claims: dict[str, Any]) -> None:
        for name in ("iss", "sub", "jti", "vin_sha256", "basis", "purpose"):
            if not isinstance(claims.get(name), str):
                raise AttestationMalformed(f"claim {name!r} is missing or not a string")
        for name in ("iat", "exp"):
            value = claims.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise AttestationMalformed(f"claim {name!r} is missing or not an integer")
        if not isinstance(claims.get("aud"), str | list):
            raise AttestationMalformed("claim 'aud' is missing")
        if not _JTI.fullmatch(claims["jti"]):
            raise AttestationMalformed("claim 'jti' must be 16 to 128 URL-safe characters")

    @staticmethod
    def _check_basis(claims: dict[str, Any], now: int) -> tuple[str | None, int | None, str | None]:
        """(owner_authorization ref, its valid_until, grant_id) as the basis needs them."""
        basis, purpose = claims["basis"], claims["purpose"]
        if basis not in BASES:
            raise AttestationBasisInvalid()
        if purpose not in PURPOSES:
            raise AttestationPurposeInvalid()
        if basis == "owner":
            return None, None, None
        if basis == "owner_granted":
            grant_id = claims.get("grant_id")
            if not isinstance(grant_id, str) or not GRANT_ID.fullmatch(grant_id):
                raise AttestationMalformed(
                    "claim 'grant_id' is missing or not a grant id (grt_..., at most 32 characters)"
                )
            return None, None, grant_id
        auth = claims.get("owner_authorization")
        if auth is None:
            raise OwnerAuthorizationMissing()
        if not isinstance(auth, dict):
            raise AttestationMalformed("owner_authorization must be an object")
        ref, valid_until, scope = auth.get("ref"), auth.get("valid_until"), auth.get("scope")
        if not isinstance(ref, str) or not 1 <= len(ref) <= 64:
            raise AttestationMalformed("owner_authorization.ref must be 1 to 64 characters")
        if not isinstance(valid_until, int) or isinstance(valid_until, bool):
            raise AttestationMalformed("owner_authorization.valid_until must be epoch seconds")
        if valid_until < now:
            raise OwnerAuthorizationExpired()
        if scope is not None:
            if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
                raise AttestationMalformed("owner_authorization.scope must be a list of purposes")
            if purpose not in scope:
                raise PurposeOutOfScope()
        return ref, valid_until, None
