"""notifications: outbox, in-site inbox, staff notices, webhook subscriptions, preferences

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=40), nullable=True),
        sa.Column("lang", sa.String(length=8), nullable=True),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("event_type", sa.String(length=48), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("mandatory", sa.Boolean(), nullable=False),
        sa.Column("source_seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("receipt", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    op.create_index(op.f("ix_notification_outbox_account_id"), "notification_outbox", ["account_id"])
    op.create_index(
        op.f("ix_notification_outbox_subscription_id"), "notification_outbox", ["subscription_id"]
    )
    op.create_index("ix_notification_outbox_due", "notification_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "inbox_message",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=40), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("mandatory", sa.Boolean(), nullable=False),
        sa.Column("source_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_inbox_message_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_message")),
    )
    op.create_index("ix_inbox_message_account", "inbox_message", ["account_id", "created_at"])
    op.create_index("ix_inbox_message_source_seq", "inbox_message", ["source_seq"])
    op.create_table(
        "staff_notice",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("template", sa.String(length=40), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("appeal_id", sa.String(length=40), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("source_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_notice")),
    )
    op.create_index(op.f("ix_staff_notice_recipient"), "staff_notice", ["recipient"])
    op.create_index(op.f("ix_staff_notice_source_seq"), "staff_notice", ["source_seq"])
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("integrator", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("previous_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("previous_until", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscription")),
    )
    op.create_index(op.f("ix_webhook_subscription_integrator"), "webhook_subscription", ["integrator"])
    op.create_table(
        "notification_preference",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("email_opt_out", sa.Boolean(), nullable=False),
        sa.Column("sms_opt_out", sa.Boolean(), nullable=False),
        sa.Column("quiet_start", sa.SmallInteger(), nullable=True),
        sa.Column("quiet_end", sa.SmallInteger(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_notification_preference_account_id_account")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_preference")),
    )
    with op.batch_alter_table("appeal") as batch:
        batch.add_column(sa.Column("sla_warned_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("appeal") as batch:
        batch.drop_column("sla_warned_at")
    for name in (
        "notification_preference",
        "webhook_subscription",
        "staff_notice",
        "inbox_message",
        "notification_outbox",
    ):
        op.drop_table(name)
