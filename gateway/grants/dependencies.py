"""FastAPI dependencies of the grants endpoints (aliases: ``gateway.deps``)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from gateway.grants.service import GrantService
from gateway.state import app_state


async def grant_service(connection: HTTPConnection) -> GrantService:
    return app_state(connection).grant_service
