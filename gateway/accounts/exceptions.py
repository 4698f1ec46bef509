"""Refusals of the accounts domain: credentials, roles, account state, consent, keys."""

from __future__ import annotations

from gateway.exceptions import Conflict, Forbidden, NotAuthenticated


class InvalidToken(NotAuthenticated):
    code, title = "invalid_token", "The bearer token is invalid or expired"


class InvalidCredentials(NotAuthenticated):
    code, title = "invalid_credentials", "Incorrect email or password"


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
