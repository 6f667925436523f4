"""Backend-specific "insert or update" statements."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from thawline.adapters.db.schema import account_key


def upsert_keys(conn: Connection, rows: list[tuple[str, str, str, datetime]]) -> None:
    """Insert (kind, key, account, seen) rows; an existing row keeps its first sighting and moves
    its last sighting forward."""
    values = [
        {"kind": k, "key": v, "account_id": a, "first_seen": at, "last_seen": at} for k, v, a, at in rows
    ]
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(account_key)
    statement = statement.on_conflict_do_update(
        index_elements=["kind", "key", "account_id"],
        set_={"last_seen": statement.excluded.last_seen},
        where=account_key.c.last_seen < statement.excluded.last_seen,
    )
    for start in range(0, len(values), 2000):
        conn.execute(statement, values[start : start + 2000])
