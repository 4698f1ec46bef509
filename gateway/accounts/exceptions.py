"""Refusals of the accounts domain: credentials, roles, account state, consent, keys."""

from __future__ import annotations

from gateway.exceptions import Conflict, Forbidden, GatewayError, NotAuthenticated
from gateway.limits.exceptions import RateLimited


class InvalidToken(NotAuthenticated):
    code, title = "invalid_token", "The bearer token is invalid or expired"


class InvalidCredentials(NotAuthenticated):
    code, title = "invalid_credentials", "Incorrect email or password"


class LoginThrottled(RateLimited):
    code, title = (
        "login_throttled",
        "Too many failed logins for this email: wait before trying again",
    )


class AdminRequired(Forbidden):
    code, title = "admin_required", "This endpoint needs the admin role"


class AccountSuspended(Forbidden):
    code, title = "account_suspended", "The account is suspended"


class PolicyAcceptanceRequired(Forbidden):
    code, title = (
        "privacy_policy_acceptance_required",
        "Accept the privacy policy in force before querying VINs",
    )


class ConsentWithdrawn(PolicyAcceptanceRequired):
    code, title = "consent_withdrawn", "Consent was withdrawn: VIN queries are stopped"


class EmailTaken(Conflict):
    code, title = "email_taken", "An account with this email already exists"


class WeakPassword(GatewayError):
    code, status, title = "weak_password", 422, "The password is too weak"


class PolicyVersionMismatch(GatewayError):
    code, status, title = (
        "privacy_policy_version_mismatch",
        422,
        "Accept the privacy policy version in force",
    )


class UnsupportedAttestationKey(GatewayError):
    code, status, title = (
        "attestation_key_unsupported",
        422,
        "Only public EC P-256 (ES256) or RSA >= 2048 bit (RS256) JWKs are accepted",
    )


class AttestationKeyExists(GatewayError):
    code, status, title = "attestation_key_exists", 409, "This key is already registered"
