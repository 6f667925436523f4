"""broker mode: partition owners and their epochs (the fence behind the leases)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "partition_owner",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("stream", "partition", name=op.f("pk_partition_owner")),
    )


def downgrade() -> None:
    """Revert."""
    op.drop_table("partition_owner")
