"""Compliance exports: log ranges with their proofs, accounts and cases, as CSV, Parquet or JSON Lines,
and the retention report (what is due for deletion when, what is on legal hold).

Personal identifiers never leave in plaintext: the vault holds them, and exports carry only ids
(accounts, freezes, appeals, the vault subject id) and hashes; free text that staff or holders
wrote (explanations, notes, reasons) is left out. Every export writes a manifest naming the file's
SHA-256 and the latest signed checkpoint, and is itself recorded in the log (``export.created``).
A log range in JSON Lines is exactly ``thawline log export``'s format, which ``thawline log check``
verifies offline; in CSV or Parquet each row carries the entry, its chain value and its inclusion
proof, and the manifest carries the export header with the signed checkpoint they prove against.
"""

# ruff: noqa: S608 (the statements format in constants only: dialect expressions; values are bound)

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from pydantic import BaseModel
from sqlalchemy import bindparam, text

from thawline.adapters.db.types import UTCDateTime
from thawline.domain.errors import InvalidInputError
from thawline.oplog.entry import Actor, LogRecord, Subject, decode_entry
from thawline.services import proofs, retention
from thawline.services.analytics import RULE, Period
from thawline.services.unit_of_work import UnitOfWork

MANIFEST = "thawline.compliance_export.v1"


class Dataset(StrEnum):
    """What can be exported."""

    LOG = "log"
    ACCOUNTS = "accounts"
    CASES = "cases"
    APPEALS = "appeals"


class Format(StrEnum):
    """File formats."""

    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


# Columns per dataset: ids, codes, times and hashes only; never a vault value or free text.
SQL = {
    Dataset.ACCOUNTS: (
        "SELECT a.id AS account_id, a.integrator, a.holder_subject_id, a.kyc_level, a.vip_tier, "
        'a.language, a.created_at, a.probation_until, (SELECT COUNT(*) FROM "freeze" f '
        "WHERE f.account_id = a.id AND f.status = 'active') AS active_freezes "
        "FROM account a ORDER BY a.id"
    ),
    Dataset.CASES: (
        f"SELECT f.id AS freeze_id, f.account_id, f.category, {RULE} AS rule, f.source, f.scope, "
        "f.reason_codes, f.legal_basis, f.created_by, f.created_at, f.review_by, f.expires_at, f.status, "
        "f.ended_at, f.ended_by, (SELECT COUNT(*) FROM appeal a WHERE a.freeze_id = f.id) AS appeals, "
        "(SELECT COUNT(*) FROM appeal a WHERE a.freeze_id = f.id AND a.status = 'approved') "
        "AS approved_appeals "
        'FROM "freeze" f WHERE f.created_at >= :since AND f.created_at < :until ORDER BY f.created_at, f.id'
    ),
    Dataset.APPEALS: (
        "SELECT a.id AS appeal_id, a.freeze_id, a.account_id, a.round, a.status, a.contact_channel, "
        "a.expedited, a.created_at, a.submitted_at, a.first_response_due, a.first_responded_at, "
        "a.assignee, a.decided_at, "
        "(SELECT COUNT(*) FROM appeal_material m WHERE m.appeal_id = a.id) AS materials "
        'FROM appeal a JOIN "freeze" f ON f.id = a.freeze_id '
        "WHERE f.created_at >= :since AND f.created_at < :until ORDER BY a.created_at, a.id"
    ),
}


class ExportManifest(BaseModel):
    """What was written, its digest, and the signed checkpoint the log stood at."""

    type: str = MANIFEST
    dataset: str
    format: str
    file: str
    rows: int
    sha256: str
    generated_at: datetime
    filters: dict[str, Any]
    checkpoint_tree_size: int | None
    checkpoint: str | None
    log_export_header: dict[str, Any] | None = None


def _frame_sql(uow: UnitOfWork, dataset: Dataset, period: Period) -> pl.DataFrame:
    stmt = text(SQL[dataset]).bindparams(
        *(bindparam(p, type_=UTCDateTime()) for p in ("since", "until") if f":{p}" in SQL[dataset])
    )
    result = uow.conn.execute(stmt, {"since": period.since, "until": period.until})
    names = list(result.keys())
    rows = result.fetchall()
    data = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    frame = pl.DataFrame(data, infer_schema_length=None)
    # SQLite hands back stored times as text: make every time column a UTC datetime.
    times = [n for n in names if n.endswith(("_at", "_until", "_due", "review_by"))]
    fixes = [
        pl.col(n).str.to_datetime(time_zone="UTC", time_unit="us")
        for n in times
        if frame.schema[n] == pl.String
    ]
    return frame.with_columns(fixes) if fixes else frame


def _frame_log(uow: UnitOfWork, start: int, stop: int | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Entries [start, stop) with chain values and inclusion proofs, and the export header."""
    lines = proofs.export(uow, start, stop, uow.runtime.settings.log_origin)
    header = next(lines)
    rows: list[dict[str, Any]] = []
    for line in lines:
        data = _b64decode(line["entry"])
        entry = decode_entry(data)
        actor, subject = entry.get("actor", {}), entry.get("subject", {})
        rows.append(
            {
                "seq": line["seq"],
                "ts": entry.get("ts"),
                "action": entry.get("action"),
                "actor": f"{actor.get('kind')}:{actor.get('id')}",
                "account_id": subject.get("account_id"),
                "freeze_id": subject.get("freeze_id"),
                "appeal_id": subject.get("appeal_id"),
                "entry": data.decode("utf-8"),
                "leaf_hash": hashlib.sha256(b"\x00" + data).hexdigest(),
                "chain": line["chain"],
                "proof": " ".join(line["proof"]),
            }
        )
    schema = {
        "seq": pl.Int64,
        **dict.fromkeys(("ts", "action", "actor", "account_id", "freeze_id", "appeal_id"), pl.String),
        **dict.fromkeys(("entry", "leaf_hash", "chain", "proof"), pl.String),
    }
    return pl.DataFrame(rows, schema=schema), header


def _b64decode(value: str) -> bytes:
    import base64  # noqa: PLC0415 - only the log path needs it

    return base64.b64decode(value)


def _write(frame: pl.DataFrame, fmt: Format, path: Path) -> None:
    if fmt is Format.CSV:
        frame.write_csv(path)
    elif fmt is Format.PARQUET:
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(
    uow: UnitOfWork,
    dataset: Dataset,
    fmt: Format,
    out_dir: Path,
    *,
    period: Period | None = None,
    start: int = 0,
    stop: int | None = None,
) -> ExportManifest:
    """Write ``dataset`` into ``out_dir`` with its manifest; the caller records it (:func:`record`)."""
    if start < 0:
        raise InvalidInputError("from must be 0 or more", field="from")
    now = uow.runtime.clock.now()
    period = period or Period(since=datetime(1970, 1, 1, tzinfo=UTC), until=now + timedelta(seconds=1))
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"thawline-{dataset.value}-{stamp}.{fmt.value}"
    header: dict[str, Any] | None = None
    if dataset is Dataset.LOG:
        if fmt is Format.JSONL:  # the offline-checkable export format, line for line
            with path.open("wb") as handle:
                rows = -1
                for line in proofs.export(uow, start, stop, uow.runtime.settings.log_origin):
                    header = header or line
                    handle.write(orjson.dumps(line) + b"\n")
                    rows += 1
        else:
            frame, header = _frame_log(uow, start, stop)
            _write(frame, fmt, path)
            rows = frame.height
        filters: dict[str, Any] = {"from": start, "to": header["to"] if header else stop}
    else:
        frame = _frame_sql(uow, dataset, period)
        _write(frame, fmt, path)
        rows = frame.height
        filters = {"since": period.since.isoformat(), "until": period.until.isoformat()}
    checkpoint = uow.oplog.checkpoint()
    manifest = ExportManifest(
        dataset=dataset.value,
        format=fmt.value,
        file=path.name,
        rows=rows,
        sha256=_sha256(path),
        generated_at=now,
        filters=filters,
        checkpoint_tree_size=None if checkpoint is None else checkpoint.tree_size,
        checkpoint=None if checkpoint is None else checkpoint.note,
        log_export_header=header,
    )
    (out_dir / f"{path.name}.manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def record(uow: UnitOfWork, manifest: ExportManifest, actor: Actor) -> None:
    """Record that an export was made: who, what, how many rows, and the file's digest."""
    uow.record(
        LogRecord(
            action="export.created",
            actor=actor,
            subject=Subject(ref=f"export:{manifest.dataset}"),
            details={
                "dataset": manifest.dataset,
                "format": manifest.format,
                "rows": manifest.rows,
                "sha256": manifest.sha256,
                "filters": {k: str(v) for k, v in manifest.filters.items()},
            },
        )
    )


# ------------------------------------------------------------------------------------ retention


class HoldOut(BaseModel):
    """An active legal hold."""

    id: str
    account_id: str | None
    reason: str
    created_at: datetime


class RetentionPeriod(BaseModel):
    """One calendar month of records and when its retention ends."""

    month: str
    records: int
    first_seq: int | None = None
    last_seq: int | None = None
    keep_until: datetime
    due: bool
    on_hold: int = 0


class RetentionReport(BaseModel):
    """What is due for deletion when, and what legal holds keep."""

    generated_at: datetime
    retention_days: int
    whole_log_on_hold: bool
    holds: list[HoldOut]
    held_accounts: list[str]
    log: list[RetentionPeriod]
    closed_cases: list[RetentionPeriod]
    note: str


def _month(uow: UnitOfWork, column: str) -> str:
    if uow.conn.dialect.name == "sqlite":
        return f"substr({column}, 1, 7)"
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def retention_report(uow: UnitOfWork) -> RetentionReport:
    """Per month: log entries and closed cases, their keep-until date, and whether they are due now.

    Log entries are due ``retention_days`` after their time; a closed case (a freeze that ended)
    ``retention_days`` after it ended. Nothing is due while the whole log is on hold, and records
    of an account on hold stay whatever their age (``on_hold`` counts them).
    """
    st = retention.status(uow)
    now = uow.runtime.clock.now()
    keep = timedelta(days=st.retention_days)
    held = set(st.held_accounts)
    whole = st.eligible_before is None
    log_rows = uow.conn.execute(
        text(
            f"SELECT {_month(uow, 'ts')} AS month, MIN(first_seq) AS first, "
            "MAX(first_seq + n_entries - 1) AS last, SUM(n_entries) AS n, MAX(ts) AS newest "
            "FROM oplog_bundle GROUP BY 1 ORDER BY 1"
        )
    )
    log = []
    for r in log_rows:
        until = _as_utc(r.newest) + keep
        log.append(
            RetentionPeriod(
                month=r.month,
                records=int(r.n),
                first_seq=int(r.first),
                last_seq=int(r.last),
                keep_until=until,
                due=not whole and until <= now,
            )
        )
    case_rows = uow.conn.execute(
        text(
            f"SELECT {_month(uow, 'f.ended_at')} AS month, f.account_id, COUNT(*) AS n, "
            "MAX(f.ended_at) AS newest "
            'FROM "freeze" f WHERE f.ended_at IS NOT NULL GROUP BY 1, 2'
        )
    )
    months: dict[str, dict[str, Any]] = {}
    for r in case_rows:
        m = months.setdefault(r.month, {"n": 0, "held": 0, "newest": _as_utc(r.newest)})
        m["n"] += int(r.n)
        m["held"] += int(r.n) if r.account_id in held else 0
        m["newest"] = max(m["newest"], _as_utc(r.newest))
    cases = [
        RetentionPeriod(
            month=month,
            records=m["n"],
            keep_until=m["newest"] + keep,
            due=not whole and m["newest"] + keep <= now and m["n"] > m["held"],
            on_hold=m["held"],
        )
        for month, m in sorted(months.items())
    ]
    return RetentionReport(
        generated_at=now,
        retention_days=st.retention_days,
        whole_log_on_hold=whole,
        holds=[
            HoldOut(id=h.id, account_id=h.account_id, reason=h.reason, created_at=h.created_at)
            for h in st.active_holds
        ],
        held_accounts=st.held_accounts,
        log=log,
        closed_cases=cases,
        note="Thawline never deletes: log triggers refuse DELETE; operators archive what is due, "
        "except the records of accounts on hold.",
    )
