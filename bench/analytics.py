"""Benchmark the freeze report over a log of 10 M entries (and merge the backtest's figures).

    python bench/analytics.py [--quick] [--entries N] [--database-url URL]

Builds a realistic history in bulk: freezes by a dozen rules over 30 days, and for each one what
followed — notifications, appeals with materials, machine pre-reviews, human decisions (approvals,
rejections with their reasons, requests for more information, second appeals, VIP expedites, late
first responses), second verification, release and probation. The case rows and their log entries
are written together, a few thousand entries per transaction, through the log's batched append
(``LogWriter.append``, as bench/oplog.py does; the outbox rows a command would also write are left
out, their deliveries are in the mix as entries), until the log holds ``--entries`` entries
(10,000,000; ``--quick``: 200,000). Then the full report (every day of the history) is timed cold,
warm, as a new process, and after more cases were appended (see ``time_report``).

Prints one JSON object: ``report_seconds_10m`` (median of the warm runs; with --quick or --entries
it is the time at that scale, named by ``log_entries``) and ``backtest_events_per_s`` (from
``bench/_backtest.py`` when present, else null). ``--keep FILE`` keeps the SQLite file and reuses it
(the build is skipped; each run appends 3,000 cases).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from thawline.adapters.db import schema
from thawline.adapters.db.bulk import insert_rows
from thawline.config import Settings
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, LogRecord, RuleRef, Subject
from thawline.services import analytics
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
HOUR = timedelta(hours=1)
# (rule, cause, share of freezes, chance an appeal is approved): some rules over-block.
RULES = [
    ("hf_burst", "high_frequency", 0.18, 0.55),
    ("amount_spike", "amount_anomaly", 0.14, 0.45),
    ("small_many", "amount_anomaly", 0.08, 0.30),
    ("ip_hop", "ip_device", 0.12, 0.70),
    ("proxy_vpn", "ip_device", 0.08, 0.60),
    ("night_login", "abnormal_login", 0.10, 0.80),
    ("profile_churn", "behavior", 0.07, 0.50),
    ("blocklist_id", "blacklist", 0.05, 0.15),
    ("linked_2hop", "linked_risk", 0.06, 0.35),
    ("structuring", "aml", 0.04, 0.10),
    ("kyc_volume", "kyc_incomplete", 0.05, 0.90),
    ("card_testing", "high_frequency", 0.03, 0.20),
]
REVIEWERS = [f"reviewer:st_{i:04d}" for i in range(40)]
REJECT_CODES = [
    ("voucher_mismatch", 0.40),
    ("voucher_unreadable", 0.23),
    ("insufficient_evidence", 0.15),
    ("risk_confirmed", 0.17),
    ("identity_mismatch", 0.05),
]
SYSTEM = Actor(ActorKind.SYSTEM, "bench")
MACHINE = Actor(ActorKind.SYSTEM, "pre_review")
HOLDER = Actor(ActorKind.HOLDER, "holder")
DISPATCHER = Actor(ActorKind.SYSTEM, "dispatcher")


class Writer:
    """Collects case rows and log records of whole cases, and writes them in one transaction."""

    def __init__(self, rt: Runtime, batch: int) -> None:
        self.rt = rt
        self.batch = batch
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.records: list[LogRecord] = []
        self.entries = 0

    def row(self, table: str, values: tuple[Any, ...]) -> None:
        """Queue one row of ``table`` (columns as in COLUMNS)."""
        self.rows.setdefault(table, []).append(values)

    def log(self, action: str, actor: Actor, subject: Subject, **extra: Any) -> None:
        """Queue one log record."""
        self.records.append(LogRecord(action=action, actor=actor, subject=subject, **extra))

    def flush(self) -> None:
        """Write the queued rows and append the queued records in one transaction."""
        if not self.records and not self.rows:
            return
        with UnitOfWork(self.rt) as uow:
            for table in ORDER:
                if self.rows.get(table):
                    insert_rows(uow.conn, schema.metadata.tables[table], COLUMNS[table], self.rows[table])
            # The log's batched append itself: the outbox rows a commit would also write are left out
            # (the deliveries they cause are in the mix as notification.delivered entries).
            self.rt.log.append(uow, self.records)
            uow.conn.commit()
        self.entries += len(self.records)
        self.rows, self.records = {}, []


ORDER = ("vault_subject", "account", "freeze", "appeal", "appeal_material", "appeal_review", "vip_expedite")
COLUMNS: dict[str, tuple[str, ...]] = {
    "vault_subject": ("id", "created_at"),
    "account": (
        "id", "integrator", "holder_subject_id", "identity_refs", "identity_digest", "kyc_level", "vip_tier",
        "language", "created_at",
    ),
    "freeze": (
        "id", "account_id", "scope", "category", "reason_codes", "source", "source_ref", "legal_basis",
        "internal_reason", "holder_reason", "evidence", "created_by", "created_at", "review_by", "status",
        "ended_at", "ended_by", "end_reason",
    ),
    "appeal": (
        "id", "freeze_id", "account_id", "round", "status", "explanation", "contact_channel", "created_by",
        "created_at", "submitted_at", "first_response_due", "expedited", "assignee", "claimed_at",
        "first_responded_at", "decided_at", "version",
    ),
    "appeal_material": (
        "id", "appeal_id", "kind", "sha256", "media_type", "size", "transaction_ids", "created_at",
    ),
    "appeal_review": (
        "id", "appeal_id", "reviewer", "kind", "decision", "reason_codes", "note", "confidence", "findings",
        "agrees_with_machine", "created_at",
    ),
    "vip_expedite": ("account_id", "year", "used"),
}  # fmt: skip


def notify(w: Writer, subject: Subject, n: int = 3) -> None:
    """What the dispatcher records per message: email, SMS, webhook."""
    for channel in ("email", "sms", "webhook")[:n]:
        w.log(
            "notification.delivered",
            DISPATCHER,
            subject,
            details={"channel": channel, "message_id": "msg_" + secrets.token_hex(6), "attempt": 1},
        )


def one_case(w: Writer, rng: random.Random, i: int) -> None:
    """One freeze and everything that followed it."""
    rule, cause, _share, approve_p = rng.choices(RULES, weights=[r[2] for r in RULES])[0]
    account, frz = f"acc_{i:08d}", f"frz_{i:010d}"
    created = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
    vip = rng.random() < 0.06
    w.row("vault_subject", (f"ds_{i:010d}", created))
    w.row(
        "account",
        (account, "gw_1", f"ds_{i:010d}", "{}", secrets.token_bytes(32), "basic", int(vip), "zh-CN", created),
    )
    subject = Subject(account_id=account, freeze_id=frz)
    w.log(
        "account.frozen",
        Actor(ActorKind.RULE, rule),
        subject,
        reason_codes=(rule.upper(),),
        rule=RuleRef(rule, 3),
        evidence=(EvidenceRef("event", f"ev_{i:010d}"),),
        state_after={"status": "frozen", "scope": "full"},
    )
    notify(w, subject)
    status, ended, ended_by, end_reason = "active", None, None, None
    appealed = cause != "kyc_incomplete" and rng.random() < 0.6
    if not appealed:
        if rng.random() < 0.35:
            status, ended, ended_by = (
                "expired",
                created + timedelta(days=rng.uniform(3, 20)),
                "scheduler:timers",
            )
            end_reason = "expired"
            w.log("freeze.expired", Actor(ActorKind.SCHEDULER, "timers"), subject)
            notify(w, subject)
    else:
        released_at = appeal_rounds(
            w, rng, i=i, account=account, frz=frz, created=created, approve_p=approve_p, vip=vip
        )
        if released_at is not None:
            status, ended, ended_by = "released", released_at, "system:verification"
            end_reason = "appeal approved and second verification passed"
    w.row(
        "freeze",
        (
            frz, account, "full", cause, rule.upper(), "rule", rule, "terms §4", "rule fired", "holder text",
            f"event:ev_{i:010d}", "rule:" + rule, created, created + timedelta(days=30), status, ended,
            ended_by, end_reason,
        ),
    )  # fmt: skip


def appeal_rounds(
    w: Writer,
    rng: random.Random,
    *,
    i: int,
    account: str,
    frz: str,
    created: datetime,
    approve_p: float,
    vip: bool,
) -> datetime | None:
    """One or two appeal rounds; returns the release time if the freeze was released on appeal."""
    at = created + timedelta(hours=rng.uniform(1, 48))
    for rnd in (1, 2):
        apl = f"apl_{i:010d}_{rnd}"
        subject = Subject(account_id=account, freeze_id=frz, appeal_id=apl)
        opened = at
        w.log("appeal.opened", HOLDER, subject, details={"round": rnd})
        for k, kind in enumerate(("explanation_letter", "transaction_voucher")):
            w.row(
                "appeal_material",
                (
                    f"mat_{i:010d}_{rnd}_{k}",
                    apl,
                    kind,
                    secrets.token_hex(32),
                    "application/pdf",
                    48_213,
                    "",
                    at,
                ),
            )
            w.log("appeal.material_added", HOLDER, subject, details={"kind": kind})
        submitted = at + timedelta(minutes=rng.uniform(5, 120))
        expedited = vip and rnd == 1 and rng.random() < 0.5
        if expedited:
            w.log("appeal.expedited", HOLDER, subject)
            w.row("vip_expedite", (account, submitted.year, 1))
        w.log("appeal.submitted", HOLDER, subject)
        machine = rng.choices(("approve", "needs_more_info", "reject"), weights=(0.6, 0.3, 0.1))[0]
        w.row(
            "appeal_review",
            (f"rev_{i:010d}_{rnd}_m", apl, "machine:pre_review", "machine", machine, "evidence_sufficient",
             "", 0.9, "[]", None, submitted),
        )  # fmt: skip
        w.log("appeal.pre_reviewed", MACHINE, subject, details={"recommendation": machine})
        notify(w, subject, 2)
        first_response = submitted + timedelta(hours=rng.expovariate(1 / (6 if expedited else 20)))
        reviewer = rng.choice(REVIEWERS)
        w.log("appeal.claimed", Actor(ActorKind.REVIEWER, reviewer.split(":")[1]), subject)
        more_info = rng.random() < 0.15
        decided = first_response + timedelta(hours=rng.uniform(0.2, 8))
        n = 0
        if more_info:
            w.row(
                "appeal_review",
                (f"rev_{i:010d}_{rnd}_h{n}", apl, reviewer, "human", "needs_more_info", "voucher_missing", "",
                 None, "[]", machine == "needs_more_info", decided),
            )  # fmt: skip
            n += 1
            w.log("appeal.needs_more_info", Actor(ActorKind.REVIEWER, reviewer.split(":")[1]), subject)
            notify(w, subject)
            w.log("appeal.material_added", HOLDER, subject, details={"kind": "transaction_voucher"})
            w.log("appeal.resubmitted", HOLDER, subject)
            decided += timedelta(hours=rng.uniform(12, 60))
        approved = rng.random() < approve_p
        decision = "approve" if approved else "reject"
        codes = "false_positive" if approved else rng.choices(*zip(*REJECT_CODES, strict=True))[0]
        w.row(
            "appeal_review",
            (f"rev_{i:010d}_{rnd}_h{n}", apl, reviewer, "human", decision, codes, "", None, "[]",
             machine == decision, decided),
        )  # fmt: skip
        reviewer_actor = Actor(ActorKind.REVIEWER, reviewer.split(":")[1])
        w.log(
            f"appeal.{'approved' if approved else 'rejected'}", reviewer_actor, subject, reason_codes=(codes,)
        )
        notify(w, subject)
        w.row(
            "appeal",
            (apl, frz, account, rnd, "approved" if approved else "rejected", "my own payments", "phone",
             "holder:holder", opened, submitted, submitted + 48 * HOUR, expedited, reviewer, first_response,
             first_response, decided, 3),
        )  # fmt: skip
        if approved:
            done = decided + timedelta(hours=rng.expovariate(1 / 3))
            for step in ("started", "code_sent", "sms_passed", "face_started", "face_passed", "completed"):
                w.log(f"verification.{step}", SYSTEM, subject)
            w.log("freeze.released", SYSTEM, subject, state_after={"status": "released"})
            w.log("probation.started", SYSTEM, subject)
            notify(w, subject)
            w.log("probation.ended", Actor(ActorKind.SCHEDULER, "timers"), subject)
            return done
        if rng.random() > 0.45:
            return None
        at = decided + timedelta(hours=rng.uniform(2, 72))
    return None


def build(rt: Runtime, entries: int, seed: int) -> dict[str, int]:
    """Write cases until the log holds ``entries`` entries; return what was written."""
    rng = random.Random(seed)
    w = Writer(rt, batch=5000)
    cases = 0
    while w.entries + len(w.records) < entries:
        one_case(w, rng, cases)
        cases += 1
        if len(w.records) >= w.batch:
            w.flush()
    w.flush()
    with UnitOfWork(rt) as uow:
        rt.log.checkpoint(uow)
        uow.commit()
    return {"freezes": cases, "log_entries": w.entries}


def _one_report(rt: Runtime) -> tuple[float, analytics.Report]:
    period = analytics.Period(since=START, until=START + timedelta(days=DAYS + 30))
    started = time.perf_counter()
    with UnitOfWork(rt, read_only=True) as uow:
        built = analytics.build_report(uow, period)
    return time.perf_counter() - started, built


def time_report(rt: Runtime, runs: int, seed: int) -> tuple[dict[str, Any], analytics.Report]:
    """The full report (every day of the history) in the situations it meets.

    cold: no case frames yet (the whole case tables are read); warm: frames current in the process
    (the server, the dashboard); new process: frames from their Parquet files (the CLI); after
    append: 1,000 more cases (~18,000 entries) were written since the last report, so the accounts
    they name are read again first.
    """
    shutil.rmtree(rt.settings.data_dir / "reports", ignore_errors=True)
    analytics._stores.clear()
    cold, built = _one_report(rt)
    warm = [_one_report(rt)[0] for _ in range(runs)]
    fresh = []
    for _ in range(max(1, runs // 2)):
        analytics._stores.clear()
        fresh.append(_one_report(rt)[0])
    with UnitOfWork(rt, read_only=True) as uow:
        first = int(uow.conn.exec_driver_sql('SELECT COUNT(*) FROM "freeze"').scalar_one()) + 50_000_000
    appended, rng = [], random.Random(seed + 1)
    for n in range(3):
        w = Writer(rt, batch=5000)
        for i in range(1000):
            one_case(w, rng, first + n * 1000 + i)
            if len(w.records) >= w.batch:
                w.flush()
        w.flush()
        took, built = _one_report(rt)
        appended.append(took)
    return {
        "report_seconds_10m": round(statistics.median(warm), 3),
        "report_seconds_warm_runs": [round(t, 3) for t in warm],
        "report_seconds_new_process": round(statistics.median(fresh), 3),
        "report_seconds_after_append": round(statistics.median(appended), 3),
        "report_seconds_cold": round(cold, 3),
    }, built


def backtest(quick: bool) -> dict[str, Any]:
    """The backtest helper's figures (bench/_backtest.py), or null while it does not exist."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import _backtest  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return {"backtest_events_per_s": None}
    result: dict[str, Any] = _backtest.measure(quick)
    return result


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200,000 entries; finishes within a minute")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep", type=Path, default=None, help="SQLite file to keep (and reuse if it exists)"
    )
    args = parser.parse_args()
    entries = args.entries or (200_000 if args.quick else 10_000_000)

    tmp = Path(tempfile.mkdtemp(prefix="thawline-bench-analytics-"))
    db_file = args.keep or tmp / "bench.db"
    reuse = args.keep is not None and args.keep.exists()
    url = args.database_url or f"sqlite:///{db_file}"
    backend = make_url(url).get_backend_name()
    schema_name = conninfo = None
    if backend == "postgresql":
        schema_name = "bench_" + secrets.token_hex(4)
        u = make_url(url)
        conninfo = f"host={u.host} port={u.port or 5432} dbname={u.database} user={u.username or 'postgres'}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema_name}")
        url = u.set(
            drivername="postgresql+psycopg", query={"options": f"-csearch_path={schema_name}"}
        ).render_as_string(hide_password=False)
    settings = Settings(
        database_url=url,
        data_dir=(args.keep.parent if args.keep else tmp) / "data",
        checkpoint_every_entries=1_000_000,
    )  # type: ignore[call-arg]
    rt = build_runtime(settings)
    try:
        started = time.perf_counter()
        if reuse:
            with UnitOfWork(rt, read_only=True) as uow:
                written = {"freezes": -1, "log_entries": uow.oplog.count()}
        else:
            written = build(rt, entries, args.seed)
        build_s = time.perf_counter() - started
        if backend == "postgresql":
            with rt.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        timings, built = time_report(rt, args.runs, args.seed)
        result: dict[str, Any] = {
            **timings,
            "backend": backend,
            "log_entries": written["log_entries"],
            "freezes": built.freezes,
            "appeals": built.appeals.total,
            "human_decisions": built.reviews.human_decisions,
            "released_on_appeal": built.time_to_release.all.cases,
            "build_seconds": None if reuse else round(build_s, 1),
            "build_entries_per_s": None if reuse else round(written["log_entries"] / build_s),
            "db_bytes": db_file.stat().st_size if backend == "sqlite" else None,
            "quick": args.quick,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }
    finally:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if schema_name is not None and conninfo is not None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema_name} CASCADE")
    result.update(backtest(args.quick))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
