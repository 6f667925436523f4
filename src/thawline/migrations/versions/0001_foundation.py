"""foundation: operation log, api keys, vault, legal holds

Revision ID: 0001
Revises: -
Create Date: 2026-11-25 08:20:38.852902
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from thawline.adapters.db import triggers
from thawline.adapters.db.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
    )
    op.create_table(
        "legal_hold",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_hold")),
    )
    op.create_table(
        "oplog_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_oplog_checkpoint")),
    )
    op.create_table(
        "oplog_bundle",
        sa.Column("first_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("n_entries", sa.Integer(), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("chains", sa.LargeBinary(), nullable=False),
        sa.Column("accounts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("first_seq", name=op.f("pk_oplog_bundle")),
    )
    op.create_table(
        "oplog_account",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "seq", name=op.f("pk_oplog_account")),
    )

    op.create_table(
        "oplog_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.LargeBinary(length=32), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("last_ts", UTCDateTime(), nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_at", UTCDateTime(), nullable=True),
        sa.Column("indexed_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oplog_head")),
    )
    op.create_table(
        "oplog_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_oplog_node")),
    )
    op.create_table(
        "vault_subject",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_subject")),
    )
    op.create_table(
        "vault_value",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("blind_index", sa.LargeBinary(length=32), nullable=True),
        sa.Column("nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["vault_subject.id"], name=op.f("fk_vault_value_subject_id_vault_subject")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_value")),
    )
    with op.batch_alter_table("vault_value", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vault_value_blind_index"), ["blind_index"], unique=False)
        batch_op.create_index(batch_op.f("ix_vault_value_subject_id"), ["subject_id"], unique=False)
    op.execute(
        sa.text(
            "INSERT INTO oplog_head (id, tree_size, chain, frontier, checkpoint_size, indexed_size) "
            "VALUES (1, 0, :zero, :empty, 0, 0)"
        ).bindparams(zero=b"\x00" * 32, empty=b"\x00" * 8)
    )
    for statement in triggers.create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    """Revert."""
    for statement in triggers.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("vault_value", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vault_value_subject_id"))
        batch_op.drop_index(batch_op.f("ix_vault_value_blind_index"))

    op.drop_table("vault_value")
    op.drop_table("vault_subject")
    op.drop_table("oplog_node")
    op.drop_table("oplog_head")
    op.drop_table("oplog_account")
    op.drop_table("oplog_bundle")
    op.drop_table("oplog_checkpoint")
    op.drop_table("legal_hold")
    op.drop_table("api_key")
