"""Bulk writes on the hot ingest path, straight through the driver's ``executemany``.

SQLAlchemy Core spends more time per row (bind processing, parameter construction) than SQLite
spends storing it. These helpers build one statement per table and hand the driver plain tuples,
converting timestamps exactly as the ``UTCDateTime`` column type does (UTC; naive text on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table

from thawline.adapters.db.types import UTCDateTime


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _timestamp(conn: Connection, value: datetime | None) -> Any:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: Thawline stores UTC-aware times only")
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S.%f}" if conn.dialect.name == "sqlite" else utc


def _sqlite_text(value: datetime, offsets: dict[Any, timedelta]) -> str:
    """``_timestamp`` on SQLite, faster: the zone's offset looked up once per zone, C formatting."""
    tz = value.tzinfo
    offset = offsets.get(tz)
    if offset is None:
        if tz is None:
            raise ValueError("naive datetime refused: Thawline stores UTC-aware times only")
        offset = offsets[tz] = value.utcoffset() or timedelta(0)
    naive = value.replace(tzinfo=None) - offset
    if naive.year < 1000:  # isoformat pads years to four digits too, but keep the one definition
        return str(_timestamp_text(value))
    return naive.isoformat(" ", "microseconds")


def _timestamp_text(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """``INSERT INTO table (columns) VALUES (…)`` for every row, in one ``executemany``."""
    if not rows:
        return
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
    mark = _placeholder(conn)
    quoted = ", ".join(f'"{c}"' for c in columns)
    # Table and column names come from the schema, never from input; values are bound parameters.
    sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join([mark] * len(columns))}) {on_conflict}'  # noqa: S608
    times = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
    if times:
        converted = []
        sqlite = conn.dialect.name == "sqlite"
        offsets: dict[Any, timedelta] = {}
        done: dict[datetime, Any] = {}  # a batch repeats its times (received_at, first/last seen)
        for row in rows:
            values = list(row)
            for i in times:
                value = values[i]
                if value is None:
                    continue
                text = done.get(value)
                if text is None:
                    text = done[value] = _sqlite_text(value, offsets) if sqlite else _timestamp(conn, value)
                values[i] = text
            converted.append(tuple(values))
    else:
        converted = [tuple(row) for row in rows]
    conn.exec_driver_sql(sql, converted)
