"""The per-worker cache of grants the VIN path resolves (``GrantResolver``).

It follows the credential cache (``gateway.accounts.auth``) and its invalidations:

* a found grant lives ``auth_cache_ttl_s`` while the invalidation subscription is up and
  ``auth_cache_short_ttl_s`` while it is down (the ``Authenticator``'s ``max_age``, checked at
  each read);
* an unknown id (or one that cannot be a grant id) is remembered for the short TTL in a bounded
  cache, so a flood of made-up ids costs one statement each per short TTL at most;
* entries are indexed by their grantee AND their owner: ``Authenticator.forget(account)`` (a
  local change, or a message from another worker) drops every grant either account is party to,
  ``Authenticator.clear()`` (the subscription reconnected) drops all. Revocation, redemption,
  deletion and erasure publish the accounts concerned over the existing ``InvalidationBus``;
* a read that races an invalidation is answered but not cached (an epoch counter).

Keys are grant ids (never a VIN, a code or a digest of either).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cachetools import LRUCache, TTLCache

from gateway.accounts.auth import Authenticator
from gateway.grants.models import GrantState
from gateway.security.attestation import GRANT_ID

#: Loads one grant from the database (None: no such grant).
Load = Callable[[str], Awaitable[GrantState | None]]


class _Entries(LRUCache[str, tuple[GrantState, float]]):
    """An LRU that tells its owner which entry it evicts (to keep the account index exact)."""

    def __init__(self, maxsize: int, evicted: Callable[[str, GrantState], None]) -> None:
        super().__init__(maxsize)
        self._evicted = evicted

    def popitem(self) -> tuple[str, tuple[GrantState, float]]:
        key, entry = super().popitem()
        self._evicted(key, entry[0])
        return key, entry


class GrantCache:
    def __init__(
        self,
        load: Load,
        auth: Authenticator,
        *,
        max_entries: int = 50_000,
        max_negative: int = 10_000,
    ) -> None:
        self._load = load
        self._auth = auth
        self._entries = _Entries(max_entries, self._unindex)
        self._by_account: dict[str, set[str]] = {}
        self._negative: TTLCache[str, bool] = TTLCache(max_negative, auth.short_ttl_s)
        self._epoch = 0
        auth.add_listener(self._invalidated)

    # --- GrantResolver --------------------------------------------------------------------

    async def grant(self, grant_id: str) -> GrantState | None:
        if not GRANT_ID.fullmatch(grant_id):
            return None  # not even of the claim's form: no statement, nothing cached
        entry = self._entries.get(grant_id)
        if entry is not None:
            if time.monotonic() - entry[1] < self._auth.max_age:
                return entry[0]
            self._pop(grant_id)
        if grant_id in self._negative:
            return None
        epoch = self._epoch
        state = await self._load(grant_id)
        if epoch == self._epoch:  # no invalidation arrived while the statement ran
            if state is None:
                self._negative[grant_id] = True
            else:
                self._put(state)
        return state

    # --- invalidation ---------------------------------------------------------------------

    def forget(self, account_id: str) -> None:
        """Drop every grant ``account_id`` owns or holds."""
        self._epoch += 1
        for grant_id in self._by_account.pop(account_id, set()):
            self._pop(grant_id)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._by_account.clear()
        self._negative.clear()

    def _invalidated(self, account_id: str | None) -> None:
        if account_id is None:
            self.clear()
        else:
            self.forget(account_id)

    def sizes(self) -> dict[str, int]:
        """Entry counts (for tests and diagnostics)."""
        return {"grants": len(self._entries), "negative": len(self._negative)}

    # --- the index ------------------------------------------------------------------------

    @staticmethod
    def _parties(state: GrantState) -> tuple[str, ...]:
        return (state.owner_id,) if state.grantee_id is None else (state.owner_id, state.grantee_id)

    def _put(self, state: GrantState) -> None:
        self._pop(state.id)
        self._negative.pop(state.id, None)
        self._entries[state.id] = (state, time.monotonic())
        for account in self._parties(state):
            self._by_account.setdefault(account, set()).add(state.id)

    def _pop(self, grant_id: str) -> None:
        entry = self._entries.pop(grant_id, None)
        if entry is not None:
            self._unindex(grant_id, entry[0])

    def _unindex(self, grant_id: str, state: GrantState) -> None:
        for account in self._parties(state):
            ids = self._by_account.get(account)
            if ids is not None:
                ids.discard(grant_id)
                if not ids:
                    del self._by_account[account]
