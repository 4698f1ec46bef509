"""Alembic environment for the accounts database (its own metadata, its own version table)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from gateway.accounts.models import AccountsModel

config = context.config
target_metadata = AccountsModel.metadata


def run() -> None:
    connectable = config.attributes.get("connection") or engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table="alembic_version_accounts",
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
