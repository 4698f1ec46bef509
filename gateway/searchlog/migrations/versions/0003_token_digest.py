"""search_event.token_digest: a keyed digest of the accepted attestation token

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # on PostgreSQL the column is added to the partitioned table and so to every partition
    with op.batch_alter_table("search_event") as batch:
        batch.add_column(sa.Column("token_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("search_event") as batch:
        batch.drop_column("token_digest")
