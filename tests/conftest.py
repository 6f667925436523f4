"""Shared fixtures: a runtime on SQLite and on PostgreSQL (never silently skipped)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from thawline.config import Settings
from thawline.domain.clock import FakeClock
from thawline.services import partitioning
from thawline.services.runtime import Runtime, build_runtime

POSTGRES_URL = os.environ.get("THAWLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_conninfo(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} dbname={u.database} user={u.username or 'postgres'}"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Fail (not skip) when PostgreSQL is down, unless explicitly opted out."""
    try:
        psycopg.connect(_pg_conninfo(POSTGRES_URL), connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("THAWLINE_TEST_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL opted out with THAWLINE_TEST_SKIP_POSTGRES=1")
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required for the integration suite: {exc}")


def fresh_postgres_url() -> tuple[str, str]:
    """A URL whose search_path is a brand-new schema, and the schema name."""
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(_pg_conninfo(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = make_url(POSTGRES_URL).set(
        drivername="postgresql+psycopg", query={"options": f"-csearch_path={schema}"}
    )
    return url.render_as_string(hide_password=False), schema


def drop_postgres_schema(schema: str) -> None:
    """Remove a test schema."""
    with psycopg.connect(_pg_conninfo(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'thawline.db'}"
        return
    request.getfixturevalue("postgres_available")
    url, schema = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres_schema(schema)


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings pointing at ``database_url`` with keys under ``tmp_path``."""
    # Test receivers listen on 127.0.0.1, which production refuses for webhooks.
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "webhook_allow_private_urls": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    """A controllable clock."""
    return FakeClock()


@pytest.fixture
def runtime(database_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    """A migrated runtime on a fresh database, checkpointing every 100 entries; on PostgreSQL with the
    clock's month partitions made, as ``serve`` and ``worker`` make them for theirs."""
    rt = build_runtime(make_settings(database_url, tmp_path, checkpoint_every_entries=100), clock=clock)
    partitioning.maintain(rt)
    try:
        yield rt
    finally:
        rt.close()
