"""Alembic environment for the search-log database (its own metadata, its own version table)."""

from gateway.db import run_migrations_online
from gateway.searchlog.models import SearchLogModel

run_migrations_online(SearchLogModel.metadata, "alembic_version_searchlog")
