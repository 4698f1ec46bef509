"""search_event.grant_pseudonym: the owner grant a query was made under (keyed, domain ``grant``)

A nullable column and a partial index ``(grant_pseudonym, at) WHERE grant_pseudonym IS NOT
NULL``: only the rows of grant uses are indexed, so the index stays small and an owner's "uses
of my grant" query is an index range per partition. On PostgreSQL both go onto the partitioned
table and so onto every partition, present and future. Existing rows get NULL (no grant).

Upgrade the stream writers (``searchlog-writer``, the gateways' own consumers) with or before
the gateways: a writer of an older release does not know the column of the rows newer gateways
queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEX = "ix_search_event_grant_pseudonym_at"


def upgrade() -> None:
    with op.batch_alter_table("search_event") as batch:
        batch.add_column(sa.Column("grant_pseudonym", sa.String(length=64), nullable=True))
    only_grants = sa.text("grant_pseudonym IS NOT NULL")
    op.create_index(
        INDEX,
        "search_event",
        ["grant_pseudonym", "at"],
        postgresql_where=only_grants,
        sqlite_where=only_grants,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="search_event")
    with op.batch_alter_table("search_event") as batch:
        batch.drop_column("grant_pseudonym")
