"""Stored events: which event ids are taken, and the insert of new events.

An integrator's event id is stored once: a replay is recognised by its id. On SQLite ``event.id`` is
the primary key. On PostgreSQL ``event`` is partitioned by month (migration 0013) and its primary key
is ``(id, occurred_at)``, which would let one id appear once per month; the narrow ``event_key`` table
(primary key ``id``) keeps ids unique across months and across concurrent writers, and a foreign key
from ``event.id`` to it means no event row exists without its key. A writer inserting an id another
transaction is inserting waits for it and then fails with a unique violation: never two rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from thawline.adapters.db.bulk import insert_rows
from thawline.adapters.db.schema import event, event_key

EVENT_COLUMNS = ("id", "account_id", "type", "occurred_at", "received_at", "payload", "outcome")
_ID, _OCCURRED_AT = EVENT_COLUMNS.index("id"), EVENT_COLUMNS.index("occurred_at")
CHUNK = 500


def stored_payloads(conn: Connection, ids: Iterable[str]) -> dict[str, str | None]:
    """The stored payload of every id in ``ids`` an event already has; ``None`` when the id is taken
    but its event is no longer in the table (PostgreSQL: its month was detached for retention)."""
    unique = sorted(set(ids))
    found: dict[str, str | None] = {}
    keyed = conn.dialect.name == "postgresql"
    for i in range(0, len(unique), CHUNK):
        chunk = unique[i : i + CHUNK]
        if not keyed:
            rows = conn.execute(select(event.c.id, event.c.payload).where(event.c.id.in_(chunk)))
            found.update((r[0], r[1]) for r in rows)
            continue
        # The narrow key table answers "is it new?" for the whole batch; only replays read their
        # events, in the month partitions between their earliest and latest times (a range prunes
        # partitions; an IN list of the times as well made the replay check three times slower).
        keys = conn.execute(
            select(event_key.c.id, event_key.c.occurred_at).where(event_key.c.id.in_(chunk))
        ).all()
        if not keys:
            continue
        found.update(dict.fromkeys(k.id for k in keys))
        rows = conn.execute(
            select(event.c.id, event.c.payload).where(
                event.c.id.in_([k.id for k in keys]),
                event.c.occurred_at.between(
                    min(k.occurred_at for k in keys), max(k.occurred_at for k in keys)
                ),
            )
        )
        found.update((r[0], r[1]) for r in rows)
    return found


# One statement for a batch's keys (two arrays) rather than one per row: measurably faster to store.
_INSERT_KEYS = (
    "INSERT INTO event_key (id, occurred_at) "
    "SELECT * FROM unnest(CAST(%s AS VARCHAR[]), CAST(%s AS TIMESTAMP WITH TIME ZONE[]))"
)


def insert_events(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Insert new events, rows in ``EVENT_COLUMNS`` order; on PostgreSQL their ``event_key`` rows
    first, in id order (two writers of overlapping batches then wait for each other rather than
    deadlock). Raises ``IntegrityError`` if an id is taken, also by a transaction committing meanwhile."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        keys = sorted((r[_ID], r[_OCCURRED_AT]) for r in rows)
        if any(at.tzinfo is None for _id, at in keys):
            raise ValueError("naive datetime refused: Thawline stores UTC-aware times only")
        conn.exec_driver_sql(_INSERT_KEYS, [([k for k, _at in keys], [at for _k, at in keys])])
    insert_rows(conn, event, EVENT_COLUMNS, rows)
