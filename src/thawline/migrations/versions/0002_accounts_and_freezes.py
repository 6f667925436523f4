"""accounts and freezes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:26:41.121095
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "account",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("integrator", sa.String(length=64), nullable=False),
        sa.Column("holder_subject_id", sa.String(length=40), nullable=False),
        sa.Column("identity_refs", sa.Text(), nullable=False),
        sa.Column("identity_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kyc_level", sa.String(length=16), nullable=False),
        sa.Column("vip_tier", sa.SmallInteger(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["holder_subject_id"],
            ["vault_subject.id"],
            name=op.f("fk_account_holder_subject_id_vault_subject"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
    )
    op.create_table(
        "freeze",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("limit_amount", sa.Numeric(precision=24, scale=6), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("counterparty", sa.String(length=128), nullable=True),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("reason_codes", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("source_ref", sa.String(length=128), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("internal_reason", sa.Text(), nullable=False),
        sa.Column("holder_reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("review_by", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=128), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], name=op.f("fk_freeze_account_id_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freeze")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_freeze_idempotency_key")),
    )
    with op.batch_alter_table("freeze", schema=None) as batch_op:
        batch_op.create_index("ix_freeze_account_status", ["account_id", "status"], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("freeze", schema=None) as batch_op:
        batch_op.drop_index("ix_freeze_account_status")

    op.drop_table("freeze")
    op.drop_table("account")
