"""A throwaway database for a benchmark run: SQLite URLs as given; on PostgreSQL a fresh schema.

url, schema = scratch.create(url)          # ... run against url ...
scratch.drop(original_url, schema)         # in a finally: the schema and all in it go
"""

from __future__ import annotations

import secrets

import psycopg
from sqlalchemy.engine import make_url


def conninfo(url: str) -> str:
    """A libpq connection string for a PostgreSQL URL's server and database."""
    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} dbname={u.database} user={u.username or 'postgres'}"


def create(url: str, *, tag_connections: bool = False) -> tuple[str, str | None]:
    """The URL to run against and the schema made for it (None on SQLite). ``tag_connections``: the
    connections also carry the schema's name as their ``application_name`` (to find their backends)."""
    if make_url(url).get_backend_name() != "postgresql":
        return url, None
    schema = "bench_" + secrets.token_hex(5)
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    query = {"options": f"-csearch_path={schema}"}
    if tag_connections:
        query["application_name"] = schema
    scratch = make_url(url).set(drivername="postgresql+psycopg", query=query)
    return scratch.render_as_string(hide_password=False), schema


def drop(url: str, schema: str | None) -> None:
    """Drop the schema ``create`` made (nothing on SQLite)."""
    if schema is not None:
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
