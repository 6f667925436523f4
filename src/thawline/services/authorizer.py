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
        self._lock = threading.Lock()

    def _take(self) -> Connection | None:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._opened >= self._limit:
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
            with UnitOfWork(self.runtime, read_only=True) as uow:
                return freezes.authorize(uow, account_id, op)
        healthy = False
        try:
            rows = conn.execute(freezes.AUTHORIZE_QUERY, {"account_id": account_id}).all()
            healthy = True
        finally:
            if healthy:
                with self._lock:
                    self._idle.append(conn)
            else:  # a broken connection is dropped, not reused
                conn.close()
                with self._lock:
                    self._opened -= 1
        settings = self.runtime.settings
        return freezes.decide(rows, account_id, op, self.runtime.clock.now(), settings.large_amounts)

    def close(self) -> None:
        """Close the kept connections."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._opened -= len(idle)
        for conn in idle:
            conn.close()
