"""FastAPI dependencies of the account-holder endpoints (aliases for them: ``accounts.deps``).

They reach the app's services through ``AccountsRuntime``, the part of the lifespan's state they
use, so this package never imports the composition root (``gateway.state``), which also holds
the search log: accounts and search log stay apart (an import-linter contract).
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.accounts.auth import Authenticator
from gateway.accounts.exceptions import AccountSuspended, AdminRequired, InvalidToken
from gateway.accounts.service import AccountService, AccountState
from gateway.config import Settings
from gateway.exceptions import NotAuthenticated
from gateway.limits.exceptions import LimiterUnavailable, RateLimited
from gateway.limits.limiter import Limiter, LimitPolicy, note_fail_open
from gateway.openapi import declares
from gateway.security.tokens import AccessTokens


class AccountsRuntime(Protocol):
    """What the account-holder endpoints use of the app state (``AppState`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def accounts(self) -> AccountService: ...
    @property
    def auth(self) -> Authenticator: ...
    @property
    def tokens(self) -> AccessTokens: ...
    @property
    def limiter(self) -> Limiter: ...
    @property
    def ip_policy(self) -> LimitPolicy: ...


def runtime(request: Request) -> AccountsRuntime:
    return request.app.state.gw  # type: ignore[no-any-return]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


bearer = HTTPBearer(auto_error=False, description="An access token or a vgk_ API key")


@declares(NotAuthenticated, InvalidToken, AccountSuspended)
async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AccountState:
    """Bearer token or API key -> account (cached); suspended accounts stop here."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated()
    account, key_id = await runtime(request).auth.resolve(credentials.credentials)
    request.state.api_key_id = key_id
    if account.status == "suspended":
        raise AccountSuspended()
    return account


@declares(rate_limit=True)
async def current_account(
    account: Annotated[AccountState, Depends(authenticated)], request: Request, response: Response
) -> AccountState:
    """An authenticated account on a non-VIN endpoint: answers carry the RateLimit fields.

    Without Redis they go without the fields rather than fail: an account holder's rights
    (access, export, erasure) do not depend on the limiter."""
    try:
        decision = await runtime(request).limiter.peek(account.id, key_id=request.state.api_key_id)
    except LimiterUnavailable:
        return account
    response.headers.update(decision.headers())
    return account


@declares(AdminRequired)
async def current_admin(
    account: Annotated[AccountState, Depends(current_account)],
) -> AccountState:
    if account.role != "admin":
        raise AdminRequired()
    return account


@declares(RateLimited, LimiterUnavailable)
async def ip_limited(request: Request) -> None:
    """Per-client-network flood limit of unauthenticated endpoints (registration, login)."""
    state = runtime(request)
    try:
        decision = await state.limiter.admit_ip(client_ip(request), state.ip_policy)
    except LimiterUnavailable as exc:
        if state.settings.limit_ip_fail_open:
            note_fail_open("ip", exc)  # a log line and vingw_limiter_fail_open_total
            return
        raise
    decision.raise_for_verdict()


async def account_service(request: Request) -> AccountService:
    return runtime(request).accounts


async def access_tokens(request: Request) -> AccessTokens:
    return runtime(request).tokens


async def client_address(request: Request) -> str | None:
    return client_ip(request)
