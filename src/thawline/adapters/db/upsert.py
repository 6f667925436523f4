"""Backend-specific "insert or update" statements."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from thawline.adapters.db.bulk import insert_rows
from thawline.adapters.db.schema import account_key

# The same clause on SQLite (3.24+) and PostgreSQL.
_KEEP_NEWEST = (
    'ON CONFLICT ("kind", "key", "account_id") DO UPDATE SET "last_seen" = excluded."last_seen" '
    'WHERE "account_key"."last_seen" < excluded."last_seen"'
)


def upsert_keys(conn: Connection, rows: list[tuple[str, str, str, datetime]]) -> None:
    """Insert (kind, key, account, seen) rows; an existing row keeps its first sighting and moves
    its last sighting forward."""
    insert_rows(
        conn,
        account_key,
        ("kind", "key", "account_id", "first_seen", "last_seen"),
        [(k, v, a, at, at) for k, v, a, at in rows],
        on_conflict=_KEEP_NEWEST,
    )
