"""monthly partitions of events and the log (PostgreSQL); indexes for the review queue and rules page

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25 18:30:00

On PostgreSQL ``event`` becomes ``PARTITION BY RANGE (occurred_at)`` and ``oplog_bundle``
``PARTITION BY RANGE (ts)``: one partition per UTC calendar month plus a ``DEFAULT`` partition. Existing
rows are kept: each old table is renamed, the partitioned one is created with the months its rows (and
the next months) need, the rows are copied and counted, and the old table is dropped. ``event``'s primary
key becomes ``(id, occurred_at)``; the new ``event_key`` table keeps event ids unique and is what
``risk_decision.event_id`` refers to. The log's append-only triggers are recreated on the partitioned
table (and reach every partition). SQLite keeps its plain tables; both get the two new indexes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import Connection, text

from thawline.adapters.db import partitions, triggers

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_EVENT_COLUMNS = "id, account_id, type, occurred_at, received_at, payload, outcome"
_BUNDLE_COLUMNS = "first_seq, n_entries, ts, data, chains, accounts"


def _sql(conn: Connection, *statements: str) -> None:
    for statement in statements:
        conn.execute(text(statement))


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608 (fixed names)


def _copied(conn: Connection, source: str, target: str) -> None:
    if _count(conn, source) != _count(conn, target):
        raise RuntimeError(f"migration 0013: {source} and {target} disagree on their number of rows")


def upgrade() -> None:
    """Apply."""
    op.create_index("ix_appeal_status_due", "appeal", ["status", "first_response_due"], unique=False)
    op.create_index("ix_risk_decision_created", "risk_decision", ["created_at"], unique=False)
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    _sql(
        conn,
        "ALTER TABLE risk_decision DROP CONSTRAINT fk_risk_decision_event_id_event",
        "ALTER TABLE event RENAME TO event_0012",
        "ALTER INDEX pk_event RENAME TO pk_event_0012",
        "ALTER INDEX ix_event_account_occurred RENAME TO ix_event_0012_account_occurred",
        "CREATE TABLE event (LIKE event_0012 INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)",
        "CREATE TABLE event_key (id VARCHAR(128) NOT NULL, occurred_at TIMESTAMP WITH TIME ZONE NOT NULL, "
        "CONSTRAINT pk_event_key PRIMARY KEY (id))",
        "ALTER TABLE oplog_bundle RENAME TO oplog_bundle_0012",
        "ALTER INDEX pk_oplog_bundle RENAME TO pk_oplog_bundle_0012",
        "CREATE TABLE oplog_bundle (LIKE oplog_bundle_0012 INCLUDING DEFAULTS) PARTITION BY RANGE (ts)",
    )
    months = {
        partitions.Month.of(at)
        for query in (
            "SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM event_0012",
            "SELECT DISTINCT date_trunc('month', ts AT TIME ZONE 'UTC') FROM oplog_bundle_0012",
        )
        for at in conn.execute(text(query)).scalars()
    }
    partitions.ensure_partitions(conn, around=datetime.now(UTC), months=months)
    _sql(
        conn,
        "INSERT INTO event_key (id, occurred_at) SELECT id, occurred_at FROM event_0012",
        f"INSERT INTO event ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM event_0012",  # noqa: S608
        f"INSERT INTO oplog_bundle ({_BUNDLE_COLUMNS}) SELECT {_BUNDLE_COLUMNS} FROM oplog_bundle_0012",  # noqa: S608
    )
    _copied(conn, "event_0012", "event")
    _copied(conn, "event_0012", "event_key")
    _copied(conn, "oplog_bundle_0012", "oplog_bundle")
    _sql(
        conn,
        # Keys and indexes after the copy (one build per partition instead of row by row).
        "ALTER TABLE event ADD CONSTRAINT pk_event PRIMARY KEY (id, occurred_at)",
        "CREATE INDEX ix_event_account_occurred ON event (account_id, occurred_at)",
        "ALTER TABLE event ADD CONSTRAINT fk_event_account_id_account "
        "FOREIGN KEY (account_id) REFERENCES account (id)",
        "ALTER TABLE event ADD CONSTRAINT fk_event_id_event_key FOREIGN KEY (id) REFERENCES event_key (id)",
        "ALTER TABLE risk_decision ADD CONSTRAINT fk_risk_decision_event_id_event_key "
        "FOREIGN KEY (event_id) REFERENCES event_key (id)",
        "DROP TABLE event_0012",
        "ALTER TABLE oplog_bundle ADD CONSTRAINT pk_oplog_bundle PRIMARY KEY (first_seq, ts)",
        "DROP TABLE oplog_bundle_0012",
    )
    # The row trigger is cloned onto every partition (now and later); each partition got its own
    # TRUNCATE trigger when it was created.
    _sql(conn, *triggers.create_statements("postgresql", ["oplog_bundle"]))


def downgrade() -> None:
    """Revert: plain tables again, every row kept."""
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _sql(
            conn,
            "ALTER TABLE risk_decision DROP CONSTRAINT fk_risk_decision_event_id_event_key",
            "CREATE TABLE event_0013 (LIKE event INCLUDING DEFAULTS)",
            f"INSERT INTO event_0013 ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM event",  # noqa: S608
            "CREATE TABLE oplog_bundle_0013 (LIKE oplog_bundle INCLUDING DEFAULTS)",
            f"INSERT INTO oplog_bundle_0013 ({_BUNDLE_COLUMNS}) SELECT {_BUNDLE_COLUMNS} FROM oplog_bundle",  # noqa: S608
        )
        _copied(conn, "event", "event_0013")
        _copied(conn, "oplog_bundle", "oplog_bundle_0013")
        _sql(
            conn,
            "DROP TABLE event",  # and its partitions
            "DROP TABLE event_key",
            "ALTER TABLE event_0013 RENAME TO event",
            "ALTER TABLE event ADD CONSTRAINT pk_event PRIMARY KEY (id)",
            "CREATE INDEX ix_event_account_occurred ON event (account_id, occurred_at)",
            "ALTER TABLE event ADD CONSTRAINT fk_event_account_id_account "
            "FOREIGN KEY (account_id) REFERENCES account (id)",
            "ALTER TABLE risk_decision ADD CONSTRAINT fk_risk_decision_event_id_event "
            "FOREIGN KEY (event_id) REFERENCES event (id)",
            "DROP TABLE oplog_bundle",  # and its partitions
            "ALTER TABLE oplog_bundle_0013 RENAME TO oplog_bundle",
            "ALTER TABLE oplog_bundle ADD CONSTRAINT pk_oplog_bundle PRIMARY KEY (first_seq)",
        )
        _sql(conn, *triggers.create_statements("postgresql", ["oplog_bundle"]))
    op.drop_index("ix_risk_decision_created", table_name="risk_decision")
    op.drop_index("ix_appeal_status_due", table_name="appeal")
