"""owner grants: workshop codes, vehicles, grants

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Every existing account gets a workshop code (8 random Crockford base32 characters, unique),
then the column becomes NOT NULL with its unique index.
"""

import secrets
import string

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# the alphabet of gateway.accounts.codes, computed here: a migration does not follow later code
ALPHABET = "".join(c for c in string.digits + string.ascii_uppercase if c not in "ILOU")


def _backfill() -> None:
    bind = op.get_bind()
    account = sa.table("account", sa.column("id", sa.String), sa.column("workshop_code", sa.String))
    ids = [row[0] for row in bind.execute(sa.select(account.c.id))]
    used: set[str] = set()
    for account_id in ids:
        code = "".join(secrets.choice(ALPHABET) for _ in range(8))
        while code in used:
            code = "".join(secrets.choice(ALPHABET) for _ in range(8))
        used.add(code)
        bind.execute(
            sa.update(account).where(account.c.id == account_id).values(workshop_code=code)
        )


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("workshop_code", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )
    _backfill()
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.alter_column(
            "workshop_code",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=8),
            nullable=False,
        )
        batch_op.create_index(
            batch_op.f("ix_account_workshop_code"), ["workshop_code"], unique=True
        )

    op.create_table(
        "vehicle",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("owner_account_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("vin_pseudonym", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_account_id"], ["account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_account_id", "vin_pseudonym", name="uq_vehicle_owner_vin"),
    )

    op.create_table(
        "owner_grant",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("vehicle_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("owner_account_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("grantee_account_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("code_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["vehicle_id"], ["vehicle.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_account_id"], ["account.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grantee_account_id"], ["account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("owner_grant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_owner_grant_vehicle_id"), ["vehicle_id"])
        batch_op.create_index(batch_op.f("ix_owner_grant_owner_account_id"), ["owner_account_id"])
        batch_op.create_index(
            batch_op.f("ix_owner_grant_grantee_account_id"), ["grantee_account_id"]
        )
        batch_op.create_index(
            batch_op.f("ix_owner_grant_code_digest"), ["code_digest"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("owner_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_owner_grant_code_digest"))
        batch_op.drop_index(batch_op.f("ix_owner_grant_grantee_account_id"))
        batch_op.drop_index(batch_op.f("ix_owner_grant_owner_account_id"))
        batch_op.drop_index(batch_op.f("ix_owner_grant_vehicle_id"))
    op.drop_table("owner_grant")
    op.drop_table("vehicle")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_workshop_code"))
        batch_op.drop_column("workshop_code")
