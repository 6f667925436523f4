"""The unit of work: one database transaction per command, with its log entries inside it."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy import Connection

from thawline.adapters.db.engine import READ_ONLY
from thawline.adapters.db.oplog_store import OplogStore
from thawline.domain.errors import UnrecordedChangeError
from thawline.oplog.entry import LogRecord
from thawline.services.runtime import Runtime


class UnitOfWork:
    """Owns a transaction; ``record`` queues log entries; ``commit`` appends them and commits.

    Invariant: a unit of work that changed state (``mark_changed``) cannot commit without at least
    one log record, and log records are never committed without the change they describe.
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

    def __enter__(self) -> Self:
        conn = self.runtime.engine.connect()
        if self.read_only:
            conn = conn.execution_options(**{READ_ONLY: True})
        conn.begin()
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
        """The operation log's tables in this transaction."""
        return OplogStore(self.conn)

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
            self.appended = self.runtime.log.append(self, self._records)
            # The messages these entries cause are written in the same transaction (the outbox).
            from thawline.services import outbox  # noqa: PLC0415 - outbox builds on this module

            queued = outbox.write(self, self._records, self.appended)
            self._records = []
        self.conn.commit()
        self._changed = False
        if self.appended:
            self.runtime.committed(self.appended, queued)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()
        return self.appended
