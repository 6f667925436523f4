"""The unit of work: one database transaction per command, with its log entries inside it."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Self

from sqlalchemy import Connection

from thawline.adapters.db.engine import READ_ONLY
from thawline.adapters.db.oplog_store import OplogStore
from thawline.domain.errors import UnrecordedChangeError
from thawline.oplog.entry import LogRecord
from thawline.services import metrics
from thawline.services.runtime import Runtime


class UnitOfWork:
    """Owns a transaction; ``record`` queues log entries; ``commit`` appends them and commits.

    Invariant: a unit of work that changed state (``mark_changed``) cannot commit without at least
    one log record, and log records are never committed without the change they describe.

    It also times the log's append lock (the ``oplog_head`` row lock on PostgreSQL, the write lock
    of ``BEGIN IMMEDIATE`` on SQLite): ``lock_wait`` is how long it waited for the lock, ``lock_held``
    how long it held it, to the end of COMMIT or ROLLBACK; both go to the metrics' histograms.
    """

    def __init__(self, runtime: Runtime, *, read_only: bool = False) -> None:
        self.runtime = runtime
        self.read_only = read_only
        self._conn: Connection | None = None
        self._records: list[LogRecord] = []
        self._changed = False
        self._after_commit: list[Callable[[], None]] = []
        self.appended = range(0)
        # Secret template variables (a one-time code) for the messages this commit causes, by action;
        # sealed into the outbox, never logged.
        self.notification_secrets: dict[str, dict[str, str]] = {}
        self.lock_wait = 0.0  # seconds waited for the log's append lock (0 if never taken)
        self.lock_held = 0.0  # seconds it was held, to the end of COMMIT or ROLLBACK
        self._locked_at: float | None = None

    def __enter__(self) -> Self:
        conn = self.runtime.engine.connect()
        if self.read_only:
            conn = conn.execution_options(**{READ_ONLY: True})
            conn.begin()
        elif conn.dialect.name == "sqlite":
            asked = perf_counter()
            conn.begin()  # BEGIN IMMEDIATE: the write lock that serialises appends, taken up front
            self._lock_taken(asked)
        else:
            conn.begin()  # PostgreSQL: the append takes the head row's lock (lock_head)
        self._conn = conn
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self.conn
        try:
            if conn.in_transaction():
                conn.rollback()
        finally:
            if self._locked_at is not None:
                self._lock_released(self._locked_at)
            conn.close()
            self._conn = None

    @property
    def conn(self) -> Connection:
        """The connection of this unit of work."""
        if self._conn is None:
            raise RuntimeError("unit of work is not open")
        return self._conn

    @property
    def oplog(self) -> OplogStore:
        """The operation log's tables in this transaction (its head lock timed by this unit of work)."""
        return OplogStore(self.conn, on_lock=self._lock_taken)

    def _lock_taken(self, asked: float) -> None:
        """The append lock was granted; ``asked`` is when it was requested (``perf_counter``)."""
        if self._locked_at is None:  # SQLite took it at BEGIN; a second lock_head holds the same lock
            now = perf_counter()
            self.lock_wait = now - asked
            self._locked_at = now

    def _lock_released(self, locked_at: float) -> None:
        """COMMIT or ROLLBACK has released the append lock taken at ``locked_at``: record wait and hold."""
        self.lock_held = perf_counter() - locked_at
        self._locked_at = None
        metrics.observe_log_lock(self.lock_wait, self.lock_held)

    def mark_changed(self) -> None:
        """Note that state changed; commit then requires a log record."""
        self._changed = True

    def record(self, record: LogRecord) -> None:
        """Queue a log entry to append in this transaction."""
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot record log entries")
        self._records.append(record)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never on rollback)."""
        self._after_commit.append(callback)

    def commit(self) -> range:
        """Append the queued records, sign a checkpoint if one is due, and commit; returns their numbers."""
        if self._changed and not self._records:
            raise UnrecordedChangeError("state changed without an operation-log record")
        queued = 0
        if self._records:
            # The messages these entries cause are written in the same transaction (the outbox):
            # read and rendered before the append, so that the append lock, held from the append to
            # the end of COMMIT, covers only the check of what they were routed by and their inserts.
            from thawline.services import outbox  # noqa: PLC0415 - outbox builds on this module

            pending = outbox.prepare(self, self._records)
            self.appended = self.runtime.log.append(self, self._records)
            queued = pending.write(self.appended)
            self._records = []
        self.conn.commit()
        if self._locked_at is not None:
            self._lock_released(self._locked_at)
        self._changed = False
        if self.appended:
            self.runtime.committed(self.appended, queued)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()
        return self.appended
