"""search_daily_count rollups (backfilled); (account_pseudonym, at) replaces two single indexes

``search_daily_count`` holds the admin statistics' daily counts, kept by the writer from now
on; this migration backfills it from the rows already stored (one grouped scan per dimension,
in the migration's transaction: events written meanwhile by writers of the previous release,
which do not keep rollups, are not counted; stop them, or accept that gap).

A subject's rows are found per key epoch by ``account_pseudonym`` within the epoch's time range:
``(account_pseudonym, at)`` serves that (and its ordering). The single-column indexes on
``account_pseudonym`` and ``key_epoch`` go: nothing filters ``key_epoch`` without the epoch's
time range any more. On PostgreSQL the indexes are built on the partitioned table (every
partition, not concurrently: run it with the writers stopped on a large log).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DIMENSIONS = ("make", "model_year", "country_code", "outcome", "code")


def _as_json(column: str, dialect: str) -> str:
    """The SQL for a column's value as JSON text, the same text ``json.dumps`` writes."""
    if dialect == "postgresql":
        return f"COALESCE(to_jsonb({column})::text, 'null')"
    return f"json_quote({column})"  # SQLite: NULL -> 'null'


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "search_daily_count",
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "day", "value", name="search_daily_count_pkey"),
    )
    for dimension in DIMENSIONS:
        value = _as_json(dimension, dialect)
        # integer division floors for the non-negative epoch seconds of ``at`` on both engines
        op.execute(
            "INSERT INTO search_daily_count (dimension, day, value, count) "  # noqa: S608
            f"SELECT '{dimension}', (at / 86400) * 86400 AS d, {value} AS v, count(*) "
            "FROM search_event GROUP BY d, v"
        )
    with op.batch_alter_table("search_event") as batch:
        batch.drop_index("ix_search_event_account_pseudonym")
        batch.drop_index("ix_search_event_key_epoch")
        batch.create_index("ix_search_event_account_pseudonym_at", ["account_pseudonym", "at"])


def downgrade() -> None:
    with op.batch_alter_table("search_event") as batch:
        batch.drop_index("ix_search_event_account_pseudonym_at")
        batch.create_index("ix_search_event_key_epoch", ["key_epoch"])
        batch.create_index("ix_search_event_account_pseudonym", ["account_pseudonym"])
    op.drop_table("search_daily_count")
