"""Alembic environment for the accounts database (its own metadata, its own version table)."""

from gateway.accounts.models import AccountsModel
from gateway.db import run_migrations_online

run_migrations_online(AccountsModel.metadata, "alembic_version_accounts")
