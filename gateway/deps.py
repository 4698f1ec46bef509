"""The dependencies endpoints declare: ``Annotated`` aliases only.

The functions live with their domain (``gateway.accounts.dependencies``,
``gateway.lookups.dependencies``); the lifespan's typed state is ``gateway.state.AppState``. The
VIN endpoints take ``VinQueryDep`` and nothing else: ``gateway.lookups.service.VinQuery`` runs
the whole request path, in one visible order, as plain awaited calls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.accounts.deps import (
    AccessTokensDep,
    AccountServiceDep,
    ClientIP,
    CurrentAccount,
    CurrentAdmin,
    IpLimited,
)
from gateway.catalogue.backends import Catalogue
from gateway.grants import dependencies as grants
from gateway.grants.service import GrantService
from gateway.lookups import dependencies as lookups
from gateway.lookups.service import VinQuery
from gateway.state import AppState, app_state

StateDep = Annotated[AppState, Depends(app_state)]
VinQueryDep = Annotated[VinQuery, Depends(lookups.vin_query)]
CatalogueDep = Annotated[Catalogue, Depends(lookups.catalogue)]
GrantServiceDep = Annotated[GrantService, Depends(grants.grant_service)]

__all__ = [
    "AccessTokensDep",
    "AccountServiceDep",
    "CatalogueDep",
    "ClientIP",
    "CurrentAccount",
    "CurrentAdmin",
    "GrantServiceDep",
    "IpLimited",
    "StateDep",
    "VinQueryDep",
]
