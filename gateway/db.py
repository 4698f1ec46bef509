"""Database engines and Alembic migrations, one tree per database (accounts, search log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, engine_from_config, event, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.config import async_database_url, sync_database_url

MIGRATION_TREES = {"accounts": "gateway.accounts", "searchlog": "gateway.searchlog"}


class Database:
    """An async engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        async_url = async_database_url(url)
        kwargs: dict[str, object] = {"pool_pre_ping": True}
        if make_url(async_url).get_backend_name() == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(async_url, **kwargs)
        if make_url(async_url).get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def alembic_config(tree: str, url: str) -> Config:
    package = MIGRATION_TREES[tree]
    location = resources.files(package).joinpath("migrations")
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("sqlalchemy.url", sync_database_url(url).replace("%", "%%"))
    cfg.attributes["tree"] = tree
    return cfg


def run_migrations_online(metadata: MetaData, version_table: str) -> None:
    """The body of each tree's ``env.py``: its own metadata and its own version table."""
    from alembic import context

    config = context.config
    connectable = config.attributes.get("connection") or engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


def migrate(tree: str, url: str, revision: str = "head") -> None:
    """Bring one database to ``revision`` (synchronous; run at start-up or by the CLI)."""
    parsed = make_url(sync_database_url(url))
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        ":memory:",
    )
    if sqlite_file:
        # the files hold account data or pseudonymous logs: owner-only, like the secrets
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    command.upgrade(alembic_config(tree, url), revision)
    if sqlite_file:
        Path(str(parsed.database)).chmod(0o600)
