"""PostgreSQL monthly partitions of ``event`` (by ``occurred_at``) and ``oplog_bundle`` (by ``ts``).

Migration 0013 makes both tables ``PARTITION BY RANGE`` with one partition per calendar month in UTC
(``event_y2026m11`` holds ``[2026-11-01, 2026-12-01)``) and a ``DEFAULT`` partition for rows outside
every month (backfilled history, a clock far off). SQLite keeps its plain tables: every function here
does nothing there.

- :func:`ensure_partitions` creates the current month's and the next months' partitions, idempotently,
  under an advisory lock (two processes starting at once do not race).
- :func:`list_partitions` names them with their row counts.
- :func:`split_default` moves the rows the ``DEFAULT`` partition holds into monthly partitions, in the
  caller's transaction, so that every month can later be detached on its own for retention.

The append-only triggers of the log reject ``UPDATE`` and ``DELETE`` on every partition: a row trigger
on the partitioned table is cloned onto each partition, including later ones. A statement trigger is
not, so each log partition gets its own ``TRUNCATE`` trigger when it is created here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from thawline.adapters.db.schema import event, oplog_bundle

# Partitioned table -> its partition key column.
PARTITIONED: dict[str, str] = {"event": "occurred_at", "oplog_bundle": "ts"}
_COLUMNS: dict[str, tuple[str, ...]] = {
    "event": tuple(event.c.keys()),
    "oplog_bundle": tuple(oplog_bundle.c.keys()),
}
APPEND_ONLY_PARTITIONED = ("oplog_bundle",)
# pg_advisory_xact_lock key serialising partition changes ("thawline" in ASCII).
ADVISORY_LOCK = 0x746861776C696E65
MONTHS_AHEAD = 3


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month in UTC."""

    year: int
    month: int

    @classmethod
    def of(cls, at: datetime) -> Month:
        """The UTC month holding ``at`` (a naive time is taken as UTC, as stored truncations are)."""
        utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        return cls(utc.year, utc.month)

    @classmethod
    def parse(cls, text_: str) -> Month:
        """``YYYY-MM``."""
        year, _, month = text_.partition("-")
        return cls(int(year), int(month))

    def plus(self, months: int) -> Month:
        """The month ``months`` later (earlier if negative)."""
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> datetime:
        """The first instant of the month (UTC)."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant of the next month (UTC): the exclusive upper bound."""
        return self.plus(1).start

    @property
    def suffix(self) -> str:
        """``y2026m11``: the partition name's suffix."""
        return f"y{self.year:04d}m{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def partition_name(table: str, month: Month | None) -> str:
    """``event_y2026m11``, or ``event_default`` for ``None``."""
    return f"{table}_default" if month is None else f"{table}_{month.suffix}"


def _literal(month: Month) -> str:
    # DDL takes no bound parameters; the bound is built from two integers, never from input.
    return f"'{month.year:04d}-{month.month:02d}-01 00:00:00+00'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition: its table, name, month (``None`` for the default partition) and row count."""

    table: str
    name: str
    month: Month | None
    rows: int | None = None


@dataclass(slots=True)
class EnsureResult:
    """Partitions created, and months not created because the default partition holds rows of them."""

    created: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def is_partitioned(conn: Connection) -> bool:
    """True on a PostgreSQL database whose ``event`` table is partitioned (migration 0013 applied)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('event')")).scalar()
    return kind == "p"


def lock(conn: Connection) -> None:
    """Take the transaction-scoped advisory lock that serialises partition changes."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})


def _existing(conn: Connection, table: str) -> set[str]:
    return set(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:t)"
            ),
            {"t": table},
        ).scalars()
    )


def _create(conn: Connection, table: str, month: Month | None) -> str:
    name = partition_name(table, month)
    if month is None:
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} DEFAULT")
    else:
        # A table attached afterwards: ATTACH takes a SHARE UPDATE EXCLUSIVE lock on the parent, which
        # lets inserts go on (CREATE TABLE … PARTITION OF would take ACCESS EXCLUSIVE and stop them).
        # The parent's indexes, keys and row triggers are cloned onto it as it is attached.
        bounds = f"FOR VALUES FROM ({_literal(month)}) TO ({_literal(month.plus(1))})"
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING DEFAULTS)")
        conn.exec_driver_sql(f"ALTER TABLE {table} ATTACH PARTITION {name} {bounds}")
    if table in APPEND_ONLY_PARTITIONED:
        # Row triggers reach partitions from the parent; statement (TRUNCATE) triggers do not.
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_truncate ON {name}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
            "FOR EACH STATEMENT EXECUTE FUNCTION thawline_append_only()"
        )
    return name


def _default_holds(conn: Connection, table: str, month: Month) -> bool:
    column = PARTITIONED[table]
    found = conn.execute(
        text(f"SELECT 1 FROM {partition_name(table, None)} WHERE {column} >= :lo AND {column} < :hi LIMIT 1"),  # noqa: S608 (fixed names)
        {"lo": month.start, "hi": month.end},
    ).first()
    return found is not None


def wanted_months(around: datetime, months_ahead: int = MONTHS_AHEAD) -> list[Month]:
    """The month of ``around`` and the ``months_ahead`` months after it."""
    first = Month.of(around)
    return [first.plus(i) for i in range(months_ahead + 1)]


def ensure_partitions(
    conn: Connection,
    *,
    around: datetime,
    months_ahead: int = MONTHS_AHEAD,
    months: Iterable[Month] = (),
    lock_timeout_ms: int | None = None,
) -> EnsureResult:
    """Create the default partitions and the monthly ones for the month of ``around``, the next
    ``months_ahead`` months and ``months``, where missing; in the caller's transaction.

    Idempotent, and serialised with an advisory lock. A month whose rows already sit in the default
    partition is not created (PostgreSQL would refuse: the default partition's rows must move first,
    with :func:`split_default`); it is reported in ``blocked``. ``lock_timeout_ms`` bounds each wait
    for a lock — the advisory one, and those on the tables (attaching a partition locks the default
    partition, and the tables its foreign keys refer to, briefly) — after which it raises.
    Does nothing unless the database is PostgreSQL with migration 0013 applied.
    """
    result = EnsureResult()
    if not is_partitioned(conn):
        return result
    if lock_timeout_ms is not None:  # also bounds the wait for the advisory lock (a long split holds it)
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    lock(conn)
    wanted = sorted(set(wanted_months(around, months_ahead)) | set(months))
    for table in PARTITIONED:
        existing = _existing(conn, table)
        if partition_name(table, None) not in existing:
            result.created.append(_create(conn, table, None))
        for month in wanted:
            if partition_name(table, month) in existing:
                continue
            if _default_holds(conn, table, month):
                result.blocked.append(partition_name(table, month))
                continue
            result.created.append(_create(conn, table, month))
    return result


def list_partitions(conn: Connection, *, count_rows: bool = True) -> list[Partition]:
    """Every partition of the partitioned tables, months in order then the default, with row counts
    (``count_rows`` counts each partition's rows: a scan of each). Empty on SQLite."""
    if not is_partitioned(conn):
        return []
    found: list[Partition] = []
    for table in PARTITIONED:
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
            ),
            {"t": table},
        ).all()
        parts: list[Partition] = []
        for name, bound in rows:
            month = None if bound == "DEFAULT" else _month_of_name(table, name)
            count = None
            if count_rows:
                count = int(conn.execute(text(f"SELECT count(*) FROM {_quote(name)}")).scalar_one())  # noqa: S608
            parts.append(Partition(table, name, month, count))
        parts.sort(key=lambda p: (p.month is None, p.month or Month(0, 1), p.name))
        found.extend(parts)
    return found


def _month_of_name(table: str, name: str) -> Month | None:
    found = re.fullmatch(r"y(\d{4})m(\d{2})", name.removeprefix(f"{table}_"))
    if found:
        return Month(int(found[1]), int(found[2]))
    return None  # a partition someone made by hand under another name


def default_months(conn: Connection, table: str) -> list[Month]:
    """The months the rows in ``table``'s default partition belong to."""
    column = PARTITIONED[table]
    rows = conn.execute(
        text(
            f"SELECT DISTINCT date_trunc('month', {column} AT TIME ZONE 'UTC') "  # noqa: S608 (fixed names)
            f"FROM {partition_name(table, None)}"
        )
    ).scalars()
    return sorted(Month.of(r) for r in rows)


def split_default(
    conn: Connection, table: str, on_month: Callable[[Month, int], None] | None = None
) -> dict[Month, int]:
    """Move the rows of ``table``'s default partition into monthly partitions; in the caller's
    transaction. Returns the rows moved per month; ``on_month(month, rows)`` is called after each.

    The default partition is detached, the months its rows need are created, the rows are copied into
    the partitioned table (which routes each to its month), the number copied is checked against the
    number held,
    the detached table is dropped and an empty default partition takes its place. Writers to the table
    wait (its lock is held) until the caller commits; nothing is deleted row by row, so the log's
    append-only triggers are never bypassed.
    """
    moved: dict[Month, int] = {}
    if not is_partitioned(conn):
        return moved
    lock(conn)
    months = default_months(conn, table)
    if not months:
        return moved
    default = partition_name(table, None)
    parked = f"{table}_default_split"
    conn.exec_driver_sql(f"ALTER TABLE {table} DETACH PARTITION {default}")
    conn.exec_driver_sql(f"ALTER TABLE {default} RENAME TO {parked}")
    existing = _existing(conn, table)
    column = PARTITIONED[table]
    columns = ", ".join(_COLUMNS[table])
    for month in months:
        if partition_name(table, month) not in existing:
            _create(conn, table, month)
        copied = conn.execute(
            text(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {parked} "  # noqa: S608 (fixed names)
                f"WHERE {column} >= :lo AND {column} < :hi"
            ),
            {"lo": month.start, "hi": month.end},
        ).rowcount
        moved[month] = copied
        if on_month is not None:
            on_month(month, copied)
    held = int(conn.execute(text(f"SELECT count(*) FROM {parked}")).scalar_one())  # noqa: S608 (fixed names)
    if held != sum(moved.values()):
        raise RuntimeError(f"{table}: {held} rows in the default partition but {sum(moved.values())} moved")
    conn.exec_driver_sql(f"DROP TABLE {parked}")
    _create(conn, table, None)
    return moved
