"""Account use cases: registration, login, consent, API keys, attestation keys, suspension."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import Counter
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from gateway.accounts.codes import new_workshop_code
from gateway.accounts.exceptions import (
    AttestationKeyExists,
    EmailTaken,
    InvalidCredentials,
    PolicyVersionMismatch,
    UnsupportedAttestationKey,
    WeakPassword,
)
from gateway.accounts.models import (
    Account,
    AccountCreate,
    AccountUpdate,
    ApiKey,
    AttestationKey,
    Consent,
    Flag,
)
from gateway.accounts.repository import AccountRepository, CredentialRow
from gateway.accounts.throttle import LoginThrottle
from gateway.config import Settings
from gateway.db import Database
from gateway.exceptions import InvalidRequest, NotFound
from gateway.security import jws
from gateway.security.passwords import Passwords, password_problems
from gateway.security.tokens import new_api_key

log = logging.getLogger("vin_gateway.accounts")
ERASURE_REDIS_FAILURES = Counter(
    "vingw_erasure_redis_failures_total",
    "Erasures whose Redis keys (limiter, replay records, login throttle) were left to expire",
)

_ID_ALPHABET = string.ascii_letters + string.digits
K = TypeVar("K", ApiKey, AttestationKey)


def new_account_id() -> str:
    return "acct_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the request path needs to know about an account (cached briefly)."""

    id: str
    role: str
    status: str
    consent_version: str | None
    flagged: bool = False  # an admin flag is open (unresolved): the grant policy "flagged"


#: Told after a change the request path caches: (account id, reason, key id or None). Ids only.
Notify = Callable[[str, str, str | None], Awaitable[None]]


#: Deletes an account's limiter keys: (account id, ids of every API key it had) -> keys deleted.
ForgetLimits = Callable[[str, list[str]], Awaitable[int]]


async def _no_notify(_account_id: str, _reason: str, _key_id: str | None) -> None:
    return None


class AccountService:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        settings: Settings,
        on_change: Callable[[str], None] = lambda _id: None,
        notify: Notify = _no_notify,
        login_throttle: LoginThrottle | None = None,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.settings = settings
        self.login_throttle = login_throttle  # per-account login throttling (None: off)
        # erasure deletes the account's limiter keys (Limiter.forget_account, set by the app)
        self.forget_limits: ForgetLimits | None = None
        self.on_change = on_change  # drops cached state of this account (set by the app)
        # tells the other workers and instances (Redis pub/sub, set by the app)
        self.notify = notify

    async def _changed(self, account_id: str, reason: str, key_id: str | None = None) -> None:
        """This worker's caches at once, then everyone else's (a failed publish never fails the
        change already committed: the publisher retries, see ``gateway.accounts.invalidation``)."""
        self.on_change(account_id)
        await self.notify(account_id, reason, key_id)

    # --- registration and login -----------------------------------------------------------

    async def register(self, data: AccountCreate, client_ip: str | None) -> Account:
        if data.privacy_policy_version != self.settings.privacy_policy_version:
            raise PolicyVersionMismatch(
                f"The privacy policy in force is version {self.settings.privacy_policy_version}",
                privacy_policy_version=self.settings.privacy_policy_version,
            )
        self._check_password(data.password, data.email)
        password_hash = await self.passwords.hash(data.password)
        now = datetime.now(UTC)
        account = Account(
            id=new_account_id(),
            email=data.email,
            company=data.company,
            phone=data.phone,
            address=data.address,
            password_hash=password_hash,
            created_at=now,
            registration_ip=client_ip,
            consent_version=data.privacy_policy_version,
            consent_at=now,
        )
        async with self.db.session() as session:
            repo = AccountRepository(session)
            if await repo.get_by_email(data.email) is not None:
                raise EmailTaken()
            # its public workshop code (gateway/grants): drawn again in the rare collision
            while await repo.get_by_workshop_code(account.workshop_code) is not None:
                account.workshop_code = new_workshop_code()
            try:
                await repo.add(account)
                await repo.add(
                    Consent(
                        account_id=account.id,
                        policy_version=data.privacy_policy_version,
                        action="accept",
                        at=now,
                    )
                )
                await repo.commit()
            except IntegrityError as exc:
                raise EmailTaken() from exc
        return account

    async def authenticate(
        self, email: str, password: str, client_ip: str | None = None
    ) -> Account:
        """Same work and the same answer for an unknown email and a wrong password. The
        per-account throttle decides first: a throttled attempt costs no database read and no
        Argon2 (raises LoginThrottled)."""
        normalized = email.strip().lower()
        throttle = self.login_throttle
        attempt = await throttle.admit(normalized, client_ip) if throttle is not None else None
        async with self.db.session() as session:
            account = await AccountRepository(session).get_by_email(normalized)
        stored = account.password_hash if account is not None else None
        if not await self.passwords.verify(stored, password) or account is None:
            raise InvalidCredentials()
        if throttle is not None:
            await throttle.succeeded(attempt)
        return account

    def _check_password(self, password: str, email: str) -> None:
        problems = password_problems(password, email)
        if problems:
            raise WeakPassword("The password needs: " + "; ".join(problems), requirements=problems)

    # --- the account itself ---------------------------------------------------------------

    async def get(self, account_id: str) -> Account:
        async with self.db.session() as session:
            account = await AccountRepository(session).get(account_id)
        if account is None:
            raise NotFound("No such account")
        return account

    async def state(self, account_id: str) -> AccountState | None:
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            flagged = account is not None and await repo.flagged(account_id)
        if account is None:
            return None
        return AccountState(
            account.id, account.role, account.status, account.consent_version, flagged
        )

    async def update(self, account_id: str, data: AccountUpdate) -> Account:
        changes = data.model_dump(exclude_unset=True)
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            if account is None:
                raise NotFound("No such account")
            if "password" in changes or "email" in changes:
                current = changes.pop("current_password", None)
                if current is None or not await self.passwords.verify(
                    account.password_hash, current
                ):
                    raise InvalidRequest(
                        "Changing the email or password needs current_password",
                        errors=[
                            {
                                "field": "current_password",
                                "code": "required_or_wrong",
                                "message": "give the current password",
                            }
                        ],
                    )
            changes.pop("current_password", None)
            if "password" in changes:
                new_password = changes.pop("password")
                self._check_password(new_password, changes.get("email") or account.email)
                account.password_hash = await self.passwords.hash(new_password)
            new_email = changes.get("email")
            if new_email and new_email != account.email and await repo.get_by_email(new_email):
                raise EmailTaken()
            for field, value in changes.items():
                setattr(account, field, value)
            try:
                await repo.add(account)
                await repo.commit()
            except IntegrityError as exc:
                raise EmailTaken() from exc
        await self._changed(account_id, "account_updated")
        return account

    async def delete(self, account_id: str) -> None:
        """Erase the account: its rows first (its credentials stop working everywhere at
        once: the deletion is published to every worker's cache), then its Redis keys
        (limiter, replay records, login throttle).

        In that order a blocked account cannot come out unblocked: were the keys deleted
        first and the rows' deletion then failed, the account would live on with its block,
        strikes and replay records gone. A Redis failure after the rows are gone is logged and
        counted; the keys hold no VIN and expire on their own TTLs."""
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            key_ids = [key.id for key in await repo.api_keys(account_id)]  # revoked ones too
            await repo.delete_account(account_id)
            await repo.commit()
        await self._changed(account_id, "account_deleted")
        if account is None:
            return
        try:
            if self.forget_limits is not None:
                await self.forget_limits(account_id, key_ids)
            if self.login_throttle is not None:
                await self.login_throttle.forget(account.email.strip().lower())
        except RedisError as exc:
            ERASURE_REDIS_FAILURES.inc()
            log.warning(
                "erasure: the account's Redis keys were not deleted (%s); they expire on "
                "their TTLs",
                type(exc).__name__,
            )

    async def export(self, account_id: str) -> dict[str, Any]:
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            if account is None:
                raise NotFound("No such account")
            consents = await repo.consents(account_id)
            api_keys = await repo.api_keys(account_id)
            att_keys = await repo.attestation_keys(account_id)
        account_dict = account.model_dump(exclude={"password_hash"})
        return {
            "account": account_dict,
            "consents": [c.model_dump(exclude={"id", "account_id"}) for c in consents],
            "api_keys": [k.model_dump(exclude={"secret_sha256", "account_id"}) for k in api_keys],
            "attestation_keys": [k.model_dump(exclude={"account_id"}) for k in att_keys],
        }

    # --- consent --------------------------------------------------------------------------

    async def accept_policy(self, account_id: str, version: str) -> Account:
        if version != self.settings.privacy_policy_version:
            raise PolicyVersionMismatch(
                f"The privacy policy in force is version {self.settings.privacy_policy_version}",
                privacy_policy_version=self.settings.privacy_policy_version,
            )
        return await self._set_consent(account_id, version, "accept")

    async def withdraw_consent(self, account_id: str) -> Account:
        return await self._set_consent(account_id, None, "withdraw")

    async def _set_consent(self, account_id: str, version: str | None, action: str) -> Account:
        now = datetime.now(UTC)
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            if account is None:
                raise NotFound("No such account")
            recorded = version or account.consent_version or self.settings.privacy_policy_version
            account.consent_version = version
            account.consent_at = now
            await repo.add(account)
            await repo.add(
                Consent(account_id=account_id, policy_version=recorded, action=action, at=now)
            )
            await repo.commit()
        await self._changed(account_id, "consent_" + action)
        return account

    # --- API keys -------------------------------------------------------------------------

    async def create_api_key(self, account_id: str, name: str) -> tuple[ApiKey, str]:
        key_id, full, digest = new_api_key()
        key = ApiKey(id=key_id, account_id=account_id, name=name, secret_sha256=digest)
        async with self.db.session() as session:
            repo = AccountRepository(session)
            await repo.add(key)
            await repo.commit()
        return key, full

    async def list_api_keys(self, account_id: str) -> list[ApiKey]:
        async with self.db.session() as session:
            return list(await AccountRepository(session).api_keys(account_id))

    async def revoke_api_key(self, account_id: str, key_id: str) -> ApiKey:
        key = await self._revoke(ApiKey, key_id, account_id, "No such API key")
        await self._changed(account_id, "api_key_revoked", key_id)
        return key

    async def _revoke(self, model: type[K], ident: str, account_id: str, missing: str) -> K:
        """Mark the account's key revoked (idempotent); someone else's key is "not found"."""
        async with self.db.session() as session:
            repo = AccountRepository(session)
            key = await repo.key(model, ident)
            if key is None or key.account_id != account_id:
                raise NotFound(missing)
            if key.revoked_at is None:
                key.revoked_at = datetime.now(UTC)
                await repo.add(key)
                await repo.commit()
        return key

    async def api_key_owner(self, key_id: str, secret_sha256: str) -> str | None:
        async with self.db.session() as session:
            key = await AccountRepository(session).api_key(key_id)
        if key is None or key.revoked_at is not None:
            return None
        if not jws.constant_time_equal(key.secret_sha256, secret_sha256):
            return None
        return key.account_id

    # --- attestation keys -----------------------------------------------------------------

    async def register_attestation_key(
        self, account_id: str, jwk_data: dict[str, Any], name: str | None
    ) -> AttestationKey:
        kid = "ak_" + secrets.token_hex(8)
        try:
            bound = jws.public_key_from_jwk(kid, jwk_data, owner=account_id)
            public: dict[str, Any] = {
                k: jwk_data[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in jwk_data
            }
            thumbprint = jws.jwk_thumbprint(public)
        except (jws.UnsupportedKey, KeyError) as exc:
            raise UnsupportedAttestationKey(str(exc) if str(exc) else None) from exc
        async with self.db.session() as session:
            repo = AccountRepository(session)
            for existing in await repo.attestation_keys(account_id):
                if existing.thumbprint == thumbprint and existing.revoked_at is None:
                    raise AttestationKeyExists(kid=existing.kid)
            key = AttestationKey(
                kid=kid,
                account_id=account_id,
                name=name,
                alg=bound.alg,
                jwk=public,
                thumbprint=thumbprint,
            )
            await repo.add(key)
            await repo.commit()
        return key

    async def list_attestation_keys(self, account_id: str) -> list[AttestationKey]:
        async with self.db.session() as session:
            return list(await AccountRepository(session).attestation_keys(account_id))

    async def revoke_attestation_key(self, account_id: str, kid: str) -> AttestationKey:
        key = await self._revoke(AttestationKey, kid, account_id, "No such attestation key")
        await self._changed(account_id, "attestation_key_revoked", kid)
        return key

    async def attestation_key(self, kid: str) -> AttestationKey | None:
        async with self.db.session() as session:
            key = await AccountRepository(session).attestation_key(kid)
        return None if key is None or key.revoked_at is not None else key

    async def credential(
        self, *, account_id: str | None = None, api_key_id: str | None = None, kid: str | None
    ) -> CredentialRow | None:
        """One round trip for the request path (see ``AccountRepository.credential``)."""
        async with self.db.session() as session:
            return await AccountRepository(session).credential(
                account_id=account_id, api_key_id=api_key_id, kid=kid
            )

    # --- administration -------------------------------------------------------------------

    async def set_status(self, admin_id: str, account_id: str, status: str, reason: str) -> Account:
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get(account_id)
            if account is None:
                raise NotFound("No such account")
            account.status = status
            account.suspended_reason = reason if status == "suspended" else None
            await repo.add(account)
            await repo.audit(admin_id, status, account_id, reason)
            await repo.commit()
        await self._changed(account_id, "status_changed")
        return account

    async def add_flag(self, flag: Flag) -> None:
        """Store a limiter or grant-policy finding. An enforced one makes the account flagged
        (``AccountState.flagged``), so every worker drops its cached state; a shadow one does
        not change that state (``repository._flagged`` ignores shadow flags) and publishes
        nothing: a shadow policy firing once per account, policy and hour in each worker
        would otherwise flush every worker's cached credentials of that account each time."""
        async with self.db.session() as session:
            repo = AccountRepository(session)
            await repo.add(flag)
            await repo.commit()
        if not flag.shadow:
            await self._changed(flag.account_id, "status_changed")  # AccountState.flagged

    async def flags(self, *, unresolved_only: bool = True, limit: int = 200) -> list[Flag]:
        async with self.db.session() as session:
            return list(
                await AccountRepository(session).flags(unresolved_only=unresolved_only, limit=limit)
            )

    async def resolve_flags(self, admin_id: str, account_id: str, reason: str) -> int:
        now = datetime.now(UTC)
        async with self.db.session() as session:
            repo = AccountRepository(session)
            flags = await repo.open_flags_of(account_id)
            for flag in flags:
                flag.resolved_at, flag.resolved_by = now, admin_id
                await repo.add(flag)
            await repo.audit(admin_id, "unblock", account_id, reason)
            await repo.commit()
        await self._changed(account_id, "status_changed")  # AccountState.flagged
        return len(flags)

    async def audit(self, admin_id: str, action: str, target: str | None, reason: str) -> None:
        async with self.db.session() as session:
            repo = AccountRepository(session)
            await repo.audit(admin_id, action, target, reason)
            await repo.commit()

    async def create_admin(self, email: str, password: str | None) -> tuple[Account, str | None]:
        """Create or promote an admin. Returns the account and a generated one-time password."""
        email = email.strip().lower()
        generated = None
        async with self.db.session() as session:
            repo = AccountRepository(session)
            account = await repo.get_by_email(email)
            if account is None:
                if password is None:
                    generated = password = secrets.token_urlsafe(18)
                self._check_password(password, email)
                now = datetime.now(UTC)
                account = Account(
                    id=new_account_id(),
                    email=email,
                    password_hash=await self.passwords.hash(password),
                    role="admin",
                    created_at=now,
                    consent_version=self.settings.privacy_policy_version,
                    consent_at=now,
                )
                await repo.add(account)
                await repo.add(
                    Consent(
                        account_id=account.id,
                        policy_version=self.settings.privacy_policy_version,
                        action="accept",
                        at=now,
                    )
                )
            else:
                account.role = "admin"
                if password is not None:
                    self._check_password(password, email)
                    account.password_hash = await self.passwords.hash(password)
                await repo.add(account)
            await repo.commit()
        await self._changed(account.id, "account_updated")
        return account, generated
