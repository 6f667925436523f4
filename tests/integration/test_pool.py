"""PostgreSQL connection pooling from the settings: the pool's size, its overflow and how long a caller
waits for a connection are what THAWLINE_DB_POOL_* say."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.conftest import drop_postgres_schema, fresh_postgres_url, make_settings
from thawline.services.runtime import Runtime, build_runtime


@pytest.fixture
def pooled(tmp_path: Path, postgres_available: None) -> Iterator[Runtime]:
    url, schema = fresh_postgres_url()
    rt = build_runtime(make_settings(url, tmp_path, db_pool_size=2, db_pool_timeout=0.3, db_pool_recycle=60))
    try:
        yield rt
    finally:
        rt.close()
        drop_postgres_schema(schema)


def test_the_pool_holds_size_plus_overflow_and_then_times_out(pooled: Runtime) -> None:
    pool = pooled.engine.pool
    assert pool.size() == 2  # type: ignore[attr-defined]
    held = [pooled.engine.connect() for _ in range(4)]  # two kept, two overflow
    try:
        for conn in held:
            assert conn.execute(text("select 1")).scalar_one() == 1
        with pytest.raises(PoolTimeout):
            pooled.engine.connect()  # a fifth waits 0.3 s, then fails instead of hanging
    finally:
        for conn in held:
            conn.close()
    with pooled.engine.connect() as again:  # returned connections are reused
        assert again.execute(text("select 1")).scalar_one() == 1
    assert pool._recycle == 60  # type: ignore[attr-defined]
