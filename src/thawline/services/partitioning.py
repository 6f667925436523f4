"""Partition maintenance on PostgreSQL: this month's and the next months' partitions exist before
rows arrive for them. ``thawline serve`` and ``thawline worker`` run it when they start and once a day
(:class:`DailyPartitions`); on SQLite it does nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from thawline.adapters.db import partitions
from thawline.adapters.db.partitions import EnsureResult, Month, Partition
from thawline.services.runtime import Runtime

logger = logging.getLogger("thawline.partitions")
LOCK_TIMEOUT_MS = 5000  # never stall writers for long: a missed day is retried, months ahead give slack
RETRY_SECONDS = 3600.0


def maintain(runtime: Runtime, months_ahead: int = partitions.MONTHS_AHEAD) -> EnsureResult:
    """Create the partitions of the runtime clock's month and the next ``months_ahead`` months where
    missing, in one short transaction; log what was created and any month held up by rows in the
    default partition (``thawline db partitions --split-default`` moves them)."""
    if runtime.engine.dialect.name != "postgresql":
        return EnsureResult()
    with runtime.engine.begin() as conn:
        result = partitions.ensure_partitions(
            conn, around=runtime.clock.now(), months_ahead=months_ahead, lock_timeout_ms=LOCK_TIMEOUT_MS
        )
    if result.created:
        logger.info("partitions created: %s", ", ".join(result.created))
    if result.blocked:
        logger.warning(
            "partitions not created, the default partition holds their rows "
            "(run `thawline db partitions --split-default`): %s",
            ", ".join(result.blocked),
        )
    return result


class DailyPartitions:
    """Calls :func:`maintain` on the first :meth:`tick` and then once per UTC day of the runtime's
    clock; a failure is logged and retried an hour later."""

    def __init__(self, runtime: Runtime, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self._monotonic = monotonic
        self._done_for: tuple[int, int, int] | None = None
        self._failed_at: float | None = None

    def tick(self) -> bool:
        """Maintain if due; True if maintenance ran and succeeded on this call."""
        if self.runtime.engine.dialect.name != "postgresql":
            return False
        today = self.runtime.clock.now().date()
        key = (today.year, today.month, today.day)
        if self._done_for == key:
            return False
        if self._failed_at is not None and self._monotonic() - self._failed_at < RETRY_SECONDS:
            return False
        try:
            maintain(self.runtime)
        except Exception:
            self._failed_at = self._monotonic()
            logger.exception("partition maintenance failed; retrying in an hour")
            return False
        self._done_for, self._failed_at = key, None
        return True


def list_partitions(runtime: Runtime) -> list[Partition]:
    """The partitions with their row counts (empty on SQLite)."""
    with runtime.engine.connect() as conn:
        return partitions.list_partitions(conn)


def split_default(
    runtime: Runtime, on_month: Callable[[str, Month, int], None] | None = None
) -> dict[str, dict[Month, int]]:
    """Move every default partition's rows into monthly partitions, in one transaction for both
    tables; returns the rows moved per table and month. ``on_month(table, month, rows)`` reports
    progress."""
    moved: dict[str, dict[Month, int]] = {}
    if runtime.engine.dialect.name != "postgresql":
        return moved
    with runtime.engine.begin() as conn:
        for table in partitions.PARTITIONED:
            report = None if on_month is None else _bind(on_month, table)
            moved[table] = partitions.split_default(conn, table, report)
    return moved


def default_months(runtime: Runtime) -> dict[str, list[Month]]:
    """The months the rows in each default partition belong to (empty on SQLite)."""
    if runtime.engine.dialect.name != "postgresql":
        return {}
    with runtime.engine.connect() as conn:
        if not partitions.is_partitioned(conn):
            return {}
        return {table: partitions.default_months(conn, table) for table in partitions.PARTITIONED}


def _bind(on_month: Callable[[str, Month, int], None], table: str) -> Callable[[Month, int], None]:
    return lambda month, rows: on_month(table, month, rows)
