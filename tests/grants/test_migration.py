"""Accounts migration 0003 on SQLite and PostgreSQL: existing accounts get unique workshop codes
and keep their rows, the schema is exactly the models' (no drift), and it goes down and up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import gateway.grants.models  # noqa: F401 - the grants' tables are in the accounts metadata
from gateway.accounts.codes import ALPHABET
from gateway.accounts.models import AccountsModel
from gateway.config import sync_database_url
from gateway.db import alembic_config, migrate
from tests.searchlog.conftest import fresh_databases

VERSION_TABLE = "alembic_version_accounts"


@pytest.fixture(params=["sqlite", "postgresql"])
def accounts_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
        return
    with fresh_databases(request.getfixturevalue("postgres_urls")) as make:
        yield make()


def test_upgrade_backfills_and_matches_the_models(accounts_url: str) -> None:
    migrate("accounts", accounts_url, "0002")
    engine = create_engine(sync_database_url(accounts_url))
    try:
        with engine.begin() as conn:
            for i in range(5):
                conn.execute(
                    text(
                        "INSERT INTO account (id, email, password_hash, role, status, created_at)"
                        " VALUES (:id, :email, 'h', 'user', 'active', '2026-11-01T00:00:00+00:00')"
                    ),
                    {"id": f"acct_{i:010d}", "email": f"{i}@example.com"},
                )
                conn.execute(
                    text(
                        "INSERT INTO api_key (id, account_id, name, secret_sha256, created_at)"
                        " VALUES (:k, :id, 'k', 's', '2026-11-01T00:00:00+00:00')"
                    ),
                    {"k": f"key_{i}", "id": f"acct_{i:010d}"},
                )
        migrate("accounts", accounts_url)
        with engine.begin() as conn:
            codes = [r[0] for r in conn.execute(text("SELECT workshop_code FROM account"))]
            assert len(codes) == len(set(codes)) == 5
            assert all(len(c) == 8 and set(c) <= set(ALPHABET) for c in codes)
            # rebuilding the account table (SQLite) cascaded nothing away
            assert conn.execute(text("SELECT count(*) FROM api_key")).scalar_one() == 5
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            drift = [
                d
                for d in compare_metadata(context, AccountsModel.metadata)
                if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)
            ]
            assert drift == []
        command.downgrade(alembic_config("accounts", accounts_url), "0002")
        with engine.begin() as conn:
            columns = conn.execute(text("SELECT * FROM account")).keys()
            assert "workshop_code" not in columns
            assert not {"vehicle", "owner_grant"} & set(inspect(conn).get_table_names())
            assert conn.execute(text("SELECT count(*) FROM api_key")).scalar_one() == 5
        migrate("accounts", accounts_url)
    finally:
        engine.dispose()
