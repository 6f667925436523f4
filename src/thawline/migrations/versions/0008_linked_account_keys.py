"""linked account keys

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 11:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "account_key",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_key_account_id_account")
        ),
        sa.PrimaryKeyConstraint("kind", "key", "account_id", name=op.f("pk_account_key")),
    )
    with op.batch_alter_table("account_key", schema=None) as batch_op:
        batch_op.create_index("ix_account_key_account", ["account_id"], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("account_key", schema=None) as batch_op:
        batch_op.drop_index("ix_account_key_account")
    op.drop_table("account_key")
