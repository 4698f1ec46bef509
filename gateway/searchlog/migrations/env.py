"""Alembic environment for the search-log database (its own metadata, its own version table)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from gateway.searchlog.models import SearchLogModel

config = context.config
target_metadata = SearchLogModel.metadata


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
            version_table="alembic_version_searchlog",
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
