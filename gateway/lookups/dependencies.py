"""FastAPI dependencies of the VIN endpoints (one node each: FastAPI re-walks every dependency
node on every request, so the request path itself is not made of dependencies)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from gateway.catalogue.backends import Catalogue
from gateway.lookups.service import VinQuery
from gateway.state import app_state


async def vin_query(connection: HTTPConnection) -> VinQuery:
    return app_state(connection).vin_query


async def catalogue(connection: HTTPConnection) -> Catalogue:
    return app_state(connection).catalogue
