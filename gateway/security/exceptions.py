"""Refusals of the attestation: one class per reason, each with its stable ``code`` (403).

The order in which the verifier checks them is in ``gateway.security.attestation``."""

from __future__ import annotations

from gateway.exceptions import Forbidden


class AttestationError(Forbidden):
    """Base of every refused attestation (each one is a suspicious-usage signal, except
    ``AttestationReplayWindowLost``: gateway/limits/consequences.py says why)."""

    code, title = "attestation_invalid", "The attestation was refused"


class AttestationMissing(AttestationError):
    code, title = "attestation_missing", "A VIN-Attestation header is required"


class AttestationMalformed(AttestationError):
    code, title = "attestation_malformed", "The attestation is malformed"


class AttestationBadSignature(AttestationError):
    code, title = "attestation_bad_signature", "The attestation signature does not verify"


class AttestationUnknownKey(AttestationError):
    code, title = "attestation_unknown_key", "The attestation key is not registered to this account"


class AttestationAlgorithmNotAllowed(AttestationError):
    code = "attestation_algorithm_not_allowed"
    title = "The attestation algorithm is not the key's algorithm"


class AttestationExpired(AttestationError):
    code, title = "attestation_expired", "The attestation has expired"


class AttestationNotYetValid(AttestationError):
    code, title = "attestation_not_yet_valid", "The attestation is not yet valid"


class AttestationLifetimeTooLong(AttestationError):
    code, title = "attestation_lifetime_too_long", "The attestation lives longer than allowed"


class AttestationReplayed(AttestationError):
    code, title = "attestation_replayed", "The attestation was already used"


class AttestationReplayWindowLost(AttestationError):
    """Issued before Redis lost the replay records (a restart without persistence): it may
    have been used already, so it is refused; ``Retry-After`` says when a freshly issued one is
    accepted (docs/attestation.md "Replay protection across Redis restarts")."""

    code = "attestation_replay_window_lost"
    title = "The attestation was issued before the gateway lost its replay records; sign a new one"


class AttestationSubjectMismatch(AttestationError):
    code, title = "attestation_subject_mismatch", "The attestation is for another account"


class AttestationIssuerMismatch(AttestationError):
    code = "attestation_issuer_mismatch"
    title = "The attestation issuer does not own the signing key"


class AttestationAudienceMismatch(AttestationError):
    code, title = "attestation_audience_mismatch", "The attestation is for another audience"


class AttestationVinMismatch(AttestationError):
    code, title = "attestation_vin_mismatch", "The attestation is for another VIN"


class AttestationBasisInvalid(AttestationError):
    code = "attestation_basis_invalid"
    title = "The attestation states no valid basis (owner, owner_authorized or owner_granted)"


class AttestationPurposeInvalid(AttestationError):
    code = "attestation_purpose_invalid"
    title = "The attestation purpose is not parts_inquiry or maintenance"


class OwnerAuthorizationMissing(AttestationError):
    code = "owner_authorization_missing"
    title = "basis owner_authorized needs an owner_authorization"


class OwnerAuthorizationExpired(AttestationError):
    code, title = "owner_authorization_expired", "The owner's authorization has expired"


class PurposeOutOfScope(AttestationError):
    code, title = "purpose_out_of_scope", "The purpose is outside the owner's authorization scope"


# --- basis owner_granted: the grant step (gateway/lookups/service.py, after the verifier) ---


class GrantUnknown(AttestationError):
    """No such grant, a grant of another workshop, or one still pending: all look the same."""

    code, title = "grant_unknown", "No active grant with this id is held by this account"


class GrantRevoked(AttestationError):
    code, title = "grant_revoked", "The owner revoked this grant"


class GrantExpired(AttestationError):
    code, title = "grant_expired", "The grant has run out (valid_until has passed)"


class GrantVehicleMismatch(AttestationError):
    code, title = "grant_vehicle_mismatch", "The grant is for another vehicle"


class GrantPurposeOutOfScope(AttestationError):
    code, title = "grant_purpose_out_of_scope", "The purpose is outside the grant's purposes"


class GrantExhausted(AttestationError):
    """Decided in the admission round trip: the grant's ``max_uses`` queries were admitted."""

    code, title = "grant_exhausted", "The grant's number of queries is used up"


class OwnerGrantRequired(Forbidden):
    """The operator's grant policy (``VINGW_GRANT_POLICY``) requires basis ``owner_granted``
    for this account. Not an attestation refusal and not a suspicious-usage signal."""

    code, title = "owner_grant_required", "This account may only query under an owner's grant"
