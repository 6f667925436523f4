"""Database triggers that make the operation-log tables append-only on both backends."""

from __future__ import annotations

from collections.abc import Iterable

from thawline.adapters.db.schema import APPEND_ONLY_TABLES

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION thawline_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'thawline: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def create_statements(dialect: str, tables: Iterable[str] = APPEND_ONLY_TABLES) -> list[str]:
    """SQL that installs the append-only triggers."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'thawline: {table} is append-only ({op} refused)'); END"
            for table in tables
            for op in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        statements = [_PG_FUNCTION]
        for table in tables:
            statements += [
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION thawline_append_only()",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION thawline_append_only()",
            ]
        return statements
    raise ValueError(f"no append-only triggers for dialect {dialect!r}")


def drop_statements(dialect: str, tables: Iterable[str] = APPEND_ONLY_TABLES) -> list[str]:
    """SQL that removes the triggers (downgrade only)."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {t}_no_{op}" for t in tables for op in ("update", "delete")]
    statements = []
    for table in tables:
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        ]
    return [*statements, "DROP FUNCTION IF EXISTS thawline_append_only()"]
