"""search_event: idempotency key (event_id), monthly partitions on PostgreSQL, legal holds

On PostgreSQL ``search_event`` becomes ``PARTITION BY RANGE (at)`` with one partition per UTC
month (``search_event_pYYYYMM``), so purging drops partitions; the writer and the purge create
partitions ahead of time. Primary key and unique key include ``at`` (PostgreSQL requires the
partition key in them). SQLite keeps a plain table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import time
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
INDEXES = ("at", "key_epoch", "account_pseudonym")


def _month_start(at: int) -> int:
    d = datetime.fromtimestamp(at, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())


def _next_month(start: int) -> int:
    d = datetime.fromtimestamp(start, UTC)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(y, m, 1, tzinfo=UTC).timestamp())


def _columns() -> list[sa.Column]:
    return [
        sa.Column("at", sa.Integer(), nullable=False),
        sa.Column("key_epoch", S(length=16), nullable=False),
        sa.Column("account_pseudonym", S(length=64), nullable=False),
        sa.Column("vin_pseudonym", S(length=64), nullable=True),
        sa.Column("wmi", S(length=6), nullable=True),
        sa.Column("make", S(length=64), nullable=True),
        sa.Column("model_year", sa.Integer(), nullable=True),
        sa.Column("country_code", S(length=2), nullable=True),
        sa.Column("endpoint", S(length=32), nullable=False),
        sa.Column("outcome", S(length=16), nullable=False),
        sa.Column("code", S(length=64), nullable=True),
        sa.Column("basis", S(length=32), nullable=True),
        sa.Column("purpose", S(length=32), nullable=True),
        sa.Column("owner_ref_pseudonym", S(length=64), nullable=True),
        sa.Column("jti_digest", S(length=64), nullable=True),
        sa.Column("gateway_issued", sa.Boolean(), nullable=True),
        sa.Column("client_ip", S(length=64), nullable=True),
        sa.Column("ua_family", S(length=32), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("instance", S(length=64), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _upgrade_postgresql(bind)
    else:
        with op.batch_alter_table("search_event") as batch:
            batch.add_column(sa.Column("event_id", S(length=32), nullable=True))
        op.execute("UPDATE search_event SET event_id = 'legacy-' || id WHERE event_id IS NULL")
        with op.batch_alter_table("search_event") as batch:
            batch.alter_column("event_id", existing_type=S(length=32), nullable=False)
            batch.create_unique_constraint("uq_search_event_event_id_at", ["event_id", "at"])
    op.create_table(
        "legal_hold",
        sa.Column("key_epoch", S(length=16), nullable=False),
        sa.Column("account_pseudonym", S(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_epoch", "account_pseudonym"),
    )


def _upgrade_postgresql(bind: sa.engine.Connection) -> None:
    old = "search_event_unpartitioned"
    op.rename_table("search_event", old)
    for column in INDEXES:
        op.drop_index(f"ix_search_event_{column}", table_name=old)
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT search_event_pkey TO {old}_pkey")
    op.execute("ALTER SEQUENCE search_event_id_seq AS bigint")
    op.create_table(
        "search_event",
        *_columns(),
        sa.Column(
            "id",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text("nextval('search_event_id_seq')"),
        ),
        sa.Column("event_id", S(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", "at", name="search_event_pkey"),
        sa.UniqueConstraint("event_id", "at", name="uq_search_event_event_id_at"),
        postgresql_partition_by="RANGE (at)",
    )
    low, high = bind.execute(sa.text(f"SELECT min(at), max(at) FROM {old}")).one()  # noqa: S608
    now = int(time.time())
    start = _month_start(min(low if low is not None else now, now))
    last = _month_start(max(high if high is not None else now, now))
    for _ in range(3):  # this month and two ahead
        last = _next_month(last)
    while start < last:
        name = "search_event_p" + datetime.fromtimestamp(start, UTC).strftime("%Y%m")
        op.execute(
            f"CREATE TABLE {name} PARTITION OF search_event "
            f"FOR VALUES FROM ({start}) TO ({_next_month(start)})"
        )
        start = _next_month(start)
    names = ", ".join(c.name for c in _columns())
    op.execute(
        f"INSERT INTO search_event ({names}, id, event_id) "  # noqa: S608
        f"SELECT {names}, id, 'legacy-' || id FROM {old}"
    )
    op.execute("ALTER SEQUENCE search_event_id_seq OWNED BY search_event.id")
    op.drop_table(old)
    for column in INDEXES:
        op.create_index(f"ix_search_event_{column}", "search_event", [column])


def downgrade() -> None:
    op.drop_table("legal_hold")
    if op.get_bind().dialect.name == "postgresql":
        raise NotImplementedError(
            "un-partitioning search_event is not automated: restore the 0001 schema from a backup"
        )
    with op.batch_alter_table("search_event") as batch:
        batch.drop_constraint("uq_search_event_event_id_at", type_="unique")
        batch.drop_column("event_id")
