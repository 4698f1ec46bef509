"""Resolving credentials on the request path, with brief in-process caches.

Bearer credentials (access tokens or ``vgk_`` API keys) resolve to an account id, cached under a
SHA-256 digest of the credential; account state and attestation keys are cached by id. Each
cache entry lives ``auth_cache_ttl_s`` (default 5 s): a revocation or suspension made through
another worker takes effect within that time; in the worker that made it, at once.
"""

from __future__ import annotations

import time

from cachetools import TTLCache

from gateway.accounts.service import AccountService, AccountState
from gateway.errors import InvalidToken
from gateway.security import jws
from gateway.security.tokens import AccessTokens, credential_digest, parse_api_key

_MISSING = object()


class Authenticator:
    def __init__(
        self,
        service: AccountService,
        tokens: AccessTokens,
        *,
        ttl_s: float,
        gateway_keys: dict[str, jws.BoundKey],
        max_entries: int = 50_000,
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.gateway_keys = gateway_keys
        self._credentials: TTLCache[str, tuple[str, str | None, float]] = TTLCache(
            max_entries, ttl_s
        )
        self._states: TTLCache[str, AccountState] = TTLCache(max_entries, ttl_s)
        self._keys: TTLCache[str, jws.BoundKey | None] = TTLCache(max_entries, ttl_s)
        # account -> digests of its cached credentials, living as long as they do
        self._digests: TTLCache[str, set[str]] = TTLCache(max_entries, ttl_s)

    def forget(self, account_id: str) -> None:
        """Drop what is cached about one account (its credentials and keys too: one may have
        been revoked). Other accounts' entries stay."""
        self._states.pop(account_id, None)
        for digest in self._digests.pop(account_id, set()):
            self._credentials.pop(digest, None)
        for kid in [kid for kid, key in self._keys.items() if key and key.owner == account_id]:
            self._keys.pop(kid, None)

    async def resolve(self, bearer: str) -> tuple[AccountState, str | None]:
        """The account behind a bearer credential and the API key id used (None for tokens)."""
        digest = credential_digest(bearer)
        cached = self._credentials.get(digest)
        if cached is None or cached[2] <= time.time():
            cached = await self._resolve_credential(bearer)
            if cached is None:
                raise InvalidToken()
            self._credentials[digest] = cached
            live = {d for d in self._digests.get(cached[0], ()) if d in self._credentials}
            self._digests[cached[0]] = live | {digest}
        account_id, key_id, _expires = cached
        state = self._states.get(account_id)
        if state is None:
            state = await self.service.state(account_id)
            if state is None:
                raise InvalidToken("The account no longer exists")
            self._states[account_id] = state
        return state, key_id

    async def _resolve_credential(self, bearer: str) -> tuple[str, str | None, float] | None:
        parsed = parse_api_key(bearer)
        if parsed is not None:
            key_id, digest = parsed
            owner = await self.service.api_key_owner(key_id, digest)
            return (owner, key_id, float("inf")) if owner else None
        claims = self.tokens.verify(bearer)
        return (claims.sub, None, float(claims.exp)) if claims else None

    async def attestation_key(self, kid: str) -> jws.BoundKey | None:
        if kid in self.gateway_keys:
            return self.gateway_keys[kid]
        cached = self._keys.get(kid, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        row = await self.service.attestation_key(kid)
        key = jws.public_key_from_jwk(kid, row.jwk, owner=row.account_id) if row else None
        self._keys[kid] = key
        return key
