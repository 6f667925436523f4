"""The gateway's hot path: "may this account pay now?" answered in tens of microseconds.

A unit of work costs a pool checkout, BEGIN, ROLLBACK and a reset on return — four round trips
around one query. The authoriser keeps a few connections open in autocommit mode and runs only
the query: a single SELECT is atomic and sees one consistent snapshot on SQLite and PostgreSQL
alike, so nothing is lost by skipping the transaction. When every kept connection is busy, the
check falls back to an ordinary read-only unit of work rather than waiting.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from thawline.domain.authorization import Decision
from thawline.domain.freezes import Operation
from thawline.services import freezes
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


class Authorizer:
    """Answers authorisation checks on a few kept-open autocommit connections."""

    def __init__(self, runtime: Runtime, *, connections: int = 4) -> None:
        self.runtime = runtime
        self._limit = connections
        self._idle: list[Connection] = []
        self._opened = 0
        self._closed = False
        self._lock = threading.Lock()

    def _take(self) -> Connection | None:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._closed or self._opened >= self._limit:
                return None
            self._opened += 1
        try:
            return self.runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception:
            with self._lock:
                self._opened -= 1
            raise

    def check(self, account_id: str, op: Operation) -> Decision:
        """May ``account_id`` do ``op`` now? Same answer as :func:`freezes.authorize`."""
        conn = self._take()
        if conn is None:
            return self._fallback(account_id, op)
        try:
            rows = conn.execute(freezes.AUTHORIZE_QUERY, {"account_id": account_id}).all()
        except DBAPIError:
            # A dropped connection (e.g. the database restarted) is discarded; this check is answered
            # by a fresh unit of work, so the caller sees no error if the database is back.
            self._discard(conn)
            return self._fallback(account_id, op)
        except BaseException:
            self._discard(conn)
            raise
        with self._lock:
            if self._closed:
                conn.close()
                self._opened -= 1
            else:
                self._idle.append(conn)
        settings = self.runtime.settings
        return freezes.decide(rows, account_id, op, self.runtime.clock.now(), settings.large_amounts)

    def _fallback(self, account_id: str, op: Operation) -> Decision:
        with UnitOfWork(self.runtime, read_only=True) as uow:
            return freezes.authorize(uow, account_id, op)

    def _discard(self, conn: Connection) -> None:
        try:
            conn.invalidate()
            conn.close()
        finally:
            with self._lock:
                self._opened -= 1

    def close(self) -> None:
        """Close the kept connections; connections in use are closed when their check ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._opened -= len(idle)
        for conn in idle:
            conn.close()
