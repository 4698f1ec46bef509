"""Resolving credentials on the request path, with in-process caches invalidated over Redis.

A cold VIN request resolves its bearer credential (an access token or a ``vgk_`` API key), the
account's state and its attestation key in ONE indexed statement
(``AccountRepository.credential``). What it finds is cached in this worker:

* credentials under a SHA-256 digest of the credential (never the credential itself), an access
  token's entry no longer than the token lives;
* account states by account id, attestation keys by kid;
* and, for the warm path's single lookup, the whole answer by (credential digest, kid), stored
  by the same load as the entries it sums up and dropped with them.

Positive entries live ``auth_cache_ttl_s`` (default 300 s) while this worker's invalidation
subscription (``gateway.accounts.invalidation``) is up: a revocation, suspension, consent change
or erasure made through any worker or instance is published on Redis and drops the entries at
once, everywhere. While the subscription is down, entries live only ``auth_cache_short_ttl_s``
(default 5 s, the age is checked at each read, so older entries stop being served at once), and
when it comes back the whole cache is cleared (messages may have been missed meanwhile).

Negative results (an unknown or revoked API key, a wrong secret, a token of an erased account,
an unknown attestation key) are cached for the short TTL in a bounded cache (``max_negative``
entries), so a flood of one bad credential costs the database one statement per short TTL. An
unknown API key id is remembered by its id, so random secrets under it are refused too; a wrong
secret for a real key is remembered by the credential's digest only (never locking out the key).

A read that races an invalidation is answered but not cached (an epoch counter), so a result
read before a revocation committed is never kept after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import LRUCache, TTLCache

from gateway.accounts.exceptions import InvalidToken
from gateway.accounts.repository import CredentialRow
from gateway.accounts.service import AccountService, AccountState
from gateway.security import jws
from gateway.security.tokens import AccessTokens, credential_digest, parse_api_key

V = TypeVar("V")
_MISSING: Any = object()


class _IndexedLRU(LRUCache[Hashable, tuple[V, float]]):
    """An LRU that tells its owner which entry it evicts (to keep the account index exact)."""

    def __init__(self, maxsize: int, evicted: Callable[[Hashable, V], None]) -> None:
        super().__init__(maxsize)
        self._evicted = evicted

    def popitem(self) -> tuple[Hashable, tuple[V, float]]:
        key, entry = super().popitem()
        self._evicted(key, entry[0])
        return key, entry


class _AgedCache(Generic[V]):
    """A bounded LRU whose entries are judged by their age at read time (the TTL in force may
    shrink while the invalidation subscription is down), indexed by the account each entry
    belongs to, so dropping one account's entries costs its own entries only (an invalidation
    message never scans the whole cache)."""

    def __init__(self, maxsize: int, account_of: Callable[[Hashable, V], str]) -> None:
        self._account_of = account_of
        self._by_account: dict[str, set[Hashable]] = {}
        self._data: _IndexedLRU[V] = _IndexedLRU(maxsize, self._unindex)

    def _unindex(self, key: Hashable, value: V) -> None:
        account = self._account_of(key, value)
        keys = self._by_account.get(account)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_account[account]

    def get(self, key: Hashable, max_age: float) -> V:
        entry = self._data.get(key)
        if entry is None:
            return _MISSING  # type: ignore[no-any-return]
        value, stored = entry
        if time.monotonic() - stored >= max_age:
            self.pop(key)
            return _MISSING  # type: ignore[no-any-return]
        return value

    def put(self, key: Hashable, value: V) -> None:
        self.pop(key)
        self._data[key] = (value, time.monotonic())
        self._by_account.setdefault(self._account_of(key, value), set()).add(key)

    def pop(self, key: Hashable) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._unindex(key, entry[0])

    def drop_account(self, account_id: str) -> None:
        for key in self._by_account.pop(account_id, set()):
            self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
        self._by_account.clear()

    def __len__(self) -> int:
        return len(self._data)


class Authenticator:
    def __init__(
        self,
        service: AccountService,
        tokens: AccessTokens,
        *,
        ttl_s: float,
        gateway_keys: dict[str, jws.BoundKey],
        short_ttl_s: float,
        max_entries: int = 50_000,
        max_negative: int = 10_000,
    ) -> None:
        self.service = service
        self.tokens = tokens
        self.gateway_keys = gateway_keys
        self.ttl_s = ttl_s
        self.short_ttl_s = min(short_ttl_s, ttl_s)
        #: True while the invalidation subscription is up (set by ``InvalidationBus``)
        self.live = False
        # digest -> (account id, API key id or None, wall-clock expiry)
        self._credentials: _AgedCache[tuple[str, str | None, float]] = _AgedCache(
            max_entries, lambda _digest, entry: entry[0]
        )
        self._states: _AgedCache[AccountState] = _AgedCache(max_entries, lambda _id, s: s.id)
        self._keys: _AgedCache[jws.BoundKey] = _AgedCache(max_entries, lambda _kid, k: k.owner)
        # (digest, kid) -> (state, API key id, key, credential expiry): the warm path's one
        # lookup, stored with the three entries above by the same load, dropped with them
        self._answers: _AgedCache[tuple[AccountState, str | None, jws.BoundKey | None, float]] = (
            _AgedCache(max_entries, lambda _query, answer: answer[0].id)
        )
        # ("cred", digest) | ("key_id", API key id) | ("kid", account id or None, kid)
        self._negative: TTLCache[tuple[str | None, ...], bool] = TTLCache(
            max_negative, self.short_ttl_s
        )
        self._epoch = 0  # bumped by every invalidation: a racing read is not cached
        # other per-worker caches kept in step (the grants' cache): told each account id
        # forgotten, and None when everything is cleared
        self._listeners: list[Callable[[str | None], None]] = []

    # --- invalidation ---------------------------------------------------------------------

    @property
    def max_age(self) -> float:
        """The TTL in force: minutes while invalidations arrive, seconds while they may not."""
        return self.ttl_s if self.live else self.short_ttl_s

    def add_listener(self, listener: Callable[[str | None], None]) -> None:
        """Have ``listener`` called with the account id on every ``forget`` and with None on
        every ``clear``: another cache then follows the same invalidations (the same messages,
        the same reconnect rule) without a subscription of its own."""
        self._listeners.append(listener)

    def forget(self, account_id: str) -> None:
        """Drop what is cached about one account (its credentials and keys too: one may have
        been revoked). Other accounts' entries stay."""
        self._epoch += 1
        self._states.drop_account(account_id)
        self._credentials.drop_account(account_id)
        self._keys.drop_account(account_id)
        self._answers.drop_account(account_id)
        for listener in self._listeners:
            listener(account_id)

    def clear(self) -> None:
        """Drop everything (the invalidation subscription (re)connected: messages may be lost)."""
        self._epoch += 1
        self._credentials.clear()
        self._states.clear()
        self._keys.clear()
        self._answers.clear()
        self._negative.clear()
        for listener in self._listeners:
            listener(None)

    def cache_sizes(self) -> dict[str, int]:
        """Entry counts (for tests and diagnostics; never the keys themselves)."""
        return {
            "credentials": len(self._credentials),
            "states": len(self._states),
            "keys": len(self._keys),
            "answers": len(self._answers),
            "negative": len(self._negative),
        }

    # --- the request path -----------------------------------------------------------------

    async def resolve(self, bearer: str) -> tuple[AccountState, str | None]:
        """The account behind a bearer credential and the API key id used (None for tokens)."""
        state, key_id, _key = await self.resolve_query(bearer, None)
        return state, key_id

    async def resolve_query(
        self, bearer: str, kid: str | None
    ) -> tuple[AccountState, str | None, jws.BoundKey | None]:
        """Account state, API key id (None for an access token) and the attestation key ``kid``
        of that account (None when kid is None, unknown, revoked or another account's; the
        gateway's own attestation kid gives the gateway's key, which the verifier treats as
        gateway-issued). Cold: one SQL statement; warm: none. Raises InvalidToken."""
        max_age = self.max_age
        digest = credential_digest(bearer)
        # the warm path: one lookup for the whole answer of this credential and kid
        known = self._answers.get((digest, kid), max_age)
        if known is not _MISSING and known[3] > time.time():
            return known[0], known[1], known[2]
        cred = self._credentials.get(digest, max_age)
        if cred is not _MISSING and cred[2] > time.time():
            account_id, key_id, _expires = cred
            state = self._states.get(account_id, max_age)
            if state is not _MISSING:
                found, key = self._cached_key(account_id, kid, max_age)
                if found:
                    return state, key_id, key
        return await self._load(bearer, digest, kid)

    def _cached_key(
        self, account_id: str, kid: str | None, max_age: float
    ) -> tuple[bool, jws.BoundKey | None]:
        """(known without the database, the key)."""
        if kid is None:
            return True, None
        if kid in self.gateway_keys:
            return True, self.gateway_keys[kid]
        key = self._keys.get(kid, max_age)
        if key is not _MISSING:
            return True, key if key.owner == account_id else None
        if ("kid", account_id, kid) in self._negative or ("kid", None, kid) in self._negative:
            return True, None
        return False, None

    async def _load(
        self, bearer: str, digest: str, kid: str | None
    ) -> tuple[AccountState, str | None, jws.BoundKey | None]:
        if ("cred", digest) in self._negative:
            raise InvalidToken()
        epoch = self._epoch
        db_kid = None if kid is None or kid in self.gateway_keys else kid
        parsed = parse_api_key(bearer)
        row: CredentialRow | None
        if parsed is not None:
            key_id: str | None
            key_id, secret_sha256 = parsed
            if ("key_id", key_id) in self._negative:
                raise InvalidToken()
            row = await self.service.credential(api_key_id=key_id, kid=db_kid)
            if row is None:  # unknown or revoked key (or its account erased)
                self._negative[("key_id", key_id)] = True
                raise InvalidToken()
            if row.secret_sha256 is None or not jws.constant_time_equal(
                row.secret_sha256, secret_sha256
            ):
                self._negative[("cred", digest)] = True
                raise InvalidToken()
            expires = float("inf")
        else:
            claims = self.tokens.verify(bearer)
            if claims is None:
                raise InvalidToken()
            key_id, expires = None, float(claims.exp)
            row = await self.service.credential(account_id=claims.sub, kid=db_kid)
            if row is None:
                self._negative[("cred", digest)] = True
                raise InvalidToken("The account no longer exists")
        state = AccountState(row.account_id, row.role, row.status, row.consent_version, row.flagged)
        key = self._bound(row) if db_kid is not None else None
        if epoch == self._epoch:  # no invalidation arrived while the statement ran
            self._credentials.put(digest, (row.account_id, key_id, expires))
            self._states.put(row.account_id, state)
            if key is not None:
                self._keys.put(key.kid, key)
            elif db_kid is not None:
                self._negative[("kid", row.account_id, db_kid)] = True
        if kid is not None and db_kid is None:
            key = self.gateway_keys[kid]
        if epoch == self._epoch and (kid is None or key is not None):
            # as old as the entries it sums up (their TTL holds for it); a missing key is not
            # kept here (it lives the short negative TTL)
            self._answers.put((digest, kid), (state, key_id, key, expires))
        return state, key_id, key

    @staticmethod
    def _bound(row: CredentialRow) -> jws.BoundKey | None:
        if row.kid is None or row.jwk is None:
            return None
        try:
            return jws.public_key_from_jwk(row.kid, row.jwk, owner=row.account_id)
        except (jws.UnsupportedKey, KeyError):
            return None

    async def attestation_key(self, kid: str) -> jws.BoundKey | None:
        """Any account's live attestation key by kid (the verifier checks the owner)."""
        if kid in self.gateway_keys:
            return self.gateway_keys[kid]
        cached = self._keys.get(kid, self.max_age)
        if cached is not _MISSING:
            return cached
        if ("kid", None, kid) in self._negative:
            return None
        epoch = self._epoch
        row = await self.service.attestation_key(kid)
        key = jws.public_key_from_jwk(kid, row.jwk, owner=row.account_id) if row else None
        if epoch == self._epoch:
            if key is None:
                self._negative[("kid", None, kid)] = True
            else:
                self._keys.put(kid, key)
        return key
