"""``Annotated`` aliases of the account-holder dependencies (the functions: ``dependencies``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.accounts import dependencies
from gateway.accounts.service import AccountService, AccountState
from gateway.security.tokens import AccessTokens

CurrentAccount = Annotated[AccountState, Depends(dependencies.current_account)]
CurrentAdmin = Annotated[AccountState, Depends(dependencies.current_admin)]
IpLimited = Annotated[None, Depends(dependencies.ip_limited)]
AccountServiceDep = Annotated[AccountService, Depends(dependencies.account_service)]
AccessTokensDep = Annotated[AccessTokens, Depends(dependencies.access_tokens)]
ClientIP = Annotated[str | None, Depends(dependencies.client_address)]
