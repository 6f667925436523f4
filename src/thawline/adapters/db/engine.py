"""Engines for SQLite (WAL, serialised writers) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

READ_ONLY = "thawline_read_only"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    pool_size: int = 10,
    pool_timeout: float = 30.0,
    pool_recycle: int = 1800,
) -> Engine:
    """Create an engine with Thawline's connection settings for the URL's backend: on PostgreSQL a
    pool of ``pool_size`` kept connections (as many again at peaks), checked before use, replaced
    after ``pool_recycle`` seconds (behind PgBouncer or a load balancer that drops idle ones)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_synchronous)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle if pool_recycle > 0 else -1,
            pool_pre_ping=True,
        )
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    # Pooled connections: closing the last connection to a WAL database checkpoints and removes
    # the WAL, which would cost milliseconds per unit of work.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Large pages suit the log's bundle blobs; this only takes effect when the file is new.
        cursor.execute("PRAGMA page_size=32768")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two writers never interleave and the
        # operation log's chain cannot fork; read-only units of work do not block them.
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # each statement is its own transaction (the authoriser's single SELECTs)
        if options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def ping(engine: Engine) -> None:
    """Run a trivial query; raises if the database is unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
