"""appeals and their materials

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:44:00.260908
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "appeal",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("freeze_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("round", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("contact_channel", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("first_response_due", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], name=op.f("fk_appeal_account_id_account")),
        sa.ForeignKeyConstraint(["freeze_id"], ["freeze.id"], name=op.f("fk_appeal_freeze_id_freeze")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal")),
    )
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_appeal_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_appeal_freeze_id"), ["freeze_id"], unique=False)

    op.create_table(
        "appeal_material",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("appeal_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("transaction_ids", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appeal_id"], ["appeal.id"], name=op.f("fk_appeal_material_appeal_id_appeal")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeal_material")),
    )
    with op.batch_alter_table("appeal_material", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_appeal_material_appeal_id"), ["appeal_id"], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("appeal_material", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appeal_material_appeal_id"))

    op.drop_table("appeal_material")
    with op.batch_alter_table("appeal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appeal_freeze_id"))
        batch_op.drop_index(batch_op.f("ix_appeal_account_id"))

    op.drop_table("appeal")
