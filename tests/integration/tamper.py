"""Raw-SQL tampering that bypasses the append-only triggers, as an attacker with database access would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from thawline.adapters.db import triggers


@contextmanager
def bypassing_triggers(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the append-only triggers do not fire."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
            return
        for statement in triggers.drop_statements("sqlite"):
            conn.exec_driver_sql(statement)
        yield conn
        for statement in triggers.create_statements("sqlite"):
            conn.exec_driver_sql(statement)
