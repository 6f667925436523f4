"""vip expedite quota

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:13:32.243136
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "vip_expedite",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("year", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("used", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_vip_expedite_account_id_account")
        ),
        sa.PrimaryKeyConstraint("account_id", "year", name=op.f("pk_vip_expedite")),
    )
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expedited", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.drop_column("expedited")

    op.drop_table("vip_expedite")
