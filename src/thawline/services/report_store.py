"""A columnar copy of the case tables for reports, kept current from the log.

The report needs a few narrow columns of every freeze, appeal and review. Reading and grouping
them in the database costs seconds at a few hundred thousand cases; grouping them in Polars costs
milliseconds. So the columns are kept as Polars frames (and as Parquet under
``<data_dir>/reports``, so the CLI and every server process share them), stamped with the log size
they reflect. Before each report, the entries appended since then name the accounts whose cases
changed — every change to a freeze, appeal or review commits with a log entry about its account,
and ``oplog_bundle.accounts`` lists them without decoding an entry — and only those accounts' rows
are read again. The frames hold ids, codes and times only (no personal data).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import bindparam, text

from thawline.services.unit_of_work import UnitOfWork

RULE = "CASE WHEN f.source IN ('rule', 'policy_rescreen') THEN f.source_ref ELSE f.source END"
COLUMNS: dict[str, tuple[str, dict[str, Any]]] = {
    "freezes": (
        "SELECT f.id, f.account_id, f.created_at, f.category, "  # noqa: S608 (constants only)
        + RULE
        + ' AS rule, f.status, f.ended_at FROM "freeze" f',
        {"created_at": True, "ended_at": True},
    ),
    "appeals": (
        "SELECT a.id, a.freeze_id, a.account_id, a.round, a.status, a.expedited, a.first_response_due, "
        "a.first_responded_at FROM appeal a",
        {"first_response_due": True, "first_responded_at": True},
    ),
    "reviews": (
        "SELECT r.appeal_id, a.freeze_id, a.account_id, r.kind, r.reviewer, r.decision, "
        "r.agrees_with_machine, r.reason_codes, r.created_at "
        "FROM appeal_review r JOIN appeal a ON a.id = r.appeal_id",
        {"created_at": True},
    ),
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "freezes": {
        "id": pl.String,
        "account_id": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
        "category": pl.String,
        "rule": pl.String,
        "status": pl.String,
        "ended_at": pl.Datetime("us", "UTC"),
    },
    "appeals": {
        "id": pl.String,
        "freeze_id": pl.String,
        "account_id": pl.String,
        "round": pl.Int64,
        "status": pl.String,
        "expedited": pl.Boolean,
        "first_response_due": pl.Datetime("us", "UTC"),
        "first_responded_at": pl.Datetime("us", "UTC"),
    },
    "reviews": {
        "appeal_id": pl.String,
        "freeze_id": pl.String,
        "account_id": pl.String,
        "kind": pl.String,
        "reviewer": pl.String,
        "decision": pl.String,
        "agrees_with_machine": pl.Boolean,
        "reason_codes": pl.String,
        "created_at": pl.Datetime("us", "UTC"),
    },
}
# Beyond this many changed accounts, reading everything again is cheaper than reading them one set at a time.
FULL_RELOAD_ACCOUNTS = 20_000
# Frames are written to disk when first built and then every this many entries (not on every report).
SAVE_EVERY = 100_000
CHUNK = 900  # accounts per IN (...) list (SQLite allows 999 bound parameters by default)


@dataclass(frozen=True, slots=True)
class CaseFrames:
    """Freezes, appeals and reviews as of log size ``tree_size``."""

    tree_size: int
    chain: str  # the log's chain value at tree_size: these frames belong to this log
    freezes: pl.DataFrame
    appeals: pl.DataFrame
    reviews: pl.DataFrame

    def table(self, name: str) -> pl.DataFrame:
        """One of the three frames by name."""
        frame: pl.DataFrame = getattr(self, name)
        return frame


def _read(uow: UnitOfWork, name: str, accounts: list[str] | None = None) -> pl.DataFrame:
    """Rows of ``name`` (all, or only those of ``accounts``) as a typed frame."""
    sql, times = COLUMNS[name]
    schema = SCHEMAS[name]
    if accounts is None:
        batches: list[dict[str, Any]] = [{}]
        stmt = text(sql)
    else:
        alias = "f" if name == "freezes" else "a"
        stmt = text(f"{sql} WHERE {alias}.account_id IN :ids").bindparams(bindparam("ids", expanding=True))
        batches = [{"ids": accounts[i : i + CHUNK]} for i in range(0, len(accounts), CHUNK)]
    parts = []
    for params in batches:
        # The driver's own rows (plain tuples) go to Polars, which builds the columns in Rust.
        rows = uow.conn.execute(stmt, params).cursor.fetchall()
        names = list(schema)
        frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
        parts.append(_typed(frame, times, schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _typed(frame: pl.DataFrame, times: dict[str, Any], schema: dict[str, Any]) -> pl.DataFrame:
    """SQLite hands stored times back as text and booleans as 0/1: make every column its type."""
    fixes = []
    for col in times:
        if frame.schema[col] == pl.String:
            parsed = pl.col(col).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC", time_unit="us")
            fixes.append(parsed.alias(col))
        elif isinstance(frame.schema[col], pl.Datetime):
            fixes.append(pl.col(col).dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    fixed = frame.with_columns(fixes) if fixes else frame
    return fixed.select([pl.col(c).cast(t) for c, t in schema.items()])


def _chain(uow: UnitOfWork, tree_size: int) -> str:
    """The log's chain value after ``tree_size`` entries (hex)."""
    return uow.oplog.chain_at(tree_size - 1).hex()


def _changed_accounts(uow: UnitOfWork, since: int) -> tuple[set[str], int]:
    """Accounts named by the entries from ``since`` on, and the log size now."""
    size = uow.oplog.head().tree_size
    if size <= since:
        return set(), size
    start = uow.conn.execute(
        text("SELECT COALESCE(MAX(first_seq), 0) FROM oplog_bundle WHERE first_seq <= :s"), {"s": since}
    ).scalar_one()
    changed: set[str] = set()
    for (accounts,) in uow.conn.execute(
        text("SELECT accounts FROM oplog_bundle WHERE first_seq >= :s"), {"s": int(start)}
    ):
        changed.update(a for a in str(accounts).split("\n") if a)
    return changed, size


class ReportStore:
    """The case frames of one database, cached in memory and on disk, refreshed from the log's tail."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._frames: CaseFrames | None = None
        self._saved_size = -1  # the log size of the frames on disk (-1: none, or not ours)
        self._lock = threading.Lock()

    def frames(self, uow: UnitOfWork) -> CaseFrames:
        """Frames reflecting everything ``uow`` sees (read in its transaction)."""
        with self._lock:
            return self._frames_locked(uow)

    def _frames_locked(self, uow: UnitOfWork) -> CaseFrames:
        head = uow.oplog.head().tree_size
        current = self._frames
        if current is not None and current.tree_size > head:
            return current  # a reader whose transaction began before the last refresh: newer is fine
        if current is None:
            current = self._load_files()
            self._saved_size = -1 if current is None else current.tree_size
            if current is not None and (
                current.tree_size > head or current.chain != _chain(uow, current.tree_size)
            ):
                current = None  # frames of another database, or of one restored from a backup
                self._saved_size = -1
        if current is None:
            fresh = self._full(uow)
        else:
            changed, size = _changed_accounts(uow, current.tree_size)
            if size == current.tree_size:
                fresh = current
            elif len(changed) > FULL_RELOAD_ACCOUNTS:
                fresh = self._full(uow)
            else:
                fresh = self._refresh(uow, current, sorted(changed), size)
        self._frames = fresh
        if self._saved_size < 0 or fresh.tree_size - self._saved_size >= SAVE_EVERY:
            self._save(fresh)
            self._saved_size = fresh.tree_size
        return fresh

    def _full(self, uow: UnitOfWork) -> CaseFrames:
        size = uow.oplog.head().tree_size
        return CaseFrames(size, _chain(uow, size), *(_read(uow, name) for name in COLUMNS))

    def _refresh(self, uow: UnitOfWork, old: CaseFrames, accounts: list[str], size: int) -> CaseFrames:
        chain = _chain(uow, size)
        if not accounts:
            return CaseFrames(size, chain, old.freezes, old.appeals, old.reviews)
        keep = ~pl.col("account_id").is_in(accounts)
        parts = [pl.concat([old.table(n).filter(keep), _read(uow, n, accounts)]) for n in COLUMNS]
        return CaseFrames(size, chain, *parts)

    def _load_files(self) -> CaseFrames | None:
        if self.directory is None:
            return None
        try:
            meta = json.loads((self.directory / "frames.json").read_text())
            size = int(meta["tree_size"])
            return CaseFrames(
                size,
                str(meta["chain"]),
                *(pl.read_parquet(self.directory / f"{n}.{meta['stamp']}.parquet") for n in COLUMNS),
            )
        except (OSError, ValueError, KeyError):
            return None  # none yet, or a writer replaced them meanwhile: read the database instead

    def _save(self, frames: CaseFrames) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = f"{frames.tree_size}-{secrets.token_hex(4)}"
        for name in COLUMNS:
            frames.table(name).write_parquet(self.directory / f"{name}.{stamp}.parquet")
        tmp = self.directory / f"frames.json.{stamp}"
        tmp.write_text(json.dumps({"tree_size": frames.tree_size, "chain": frames.chain, "stamp": stamp}))
        os.replace(tmp, self.directory / "frames.json")  # readers see the old set or the new one
        for old in self.directory.glob("*.parquet"):
            if stamp not in old.name:
                with contextlib.suppress(OSError):
                    old.unlink()
