"""Benchmark the operation log: batched append, single append, verify. Prints one JSON object.

    python bench/oplog.py [--quick] [--database-url URL]

SQLite (a temporary file) by default; PostgreSQL with --database-url postgresql://...
(a fresh schema is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

import _scratch as scratch  # bench/_scratch.py, beside this script
from thawline.config import Settings
from thawline.oplog.entry import (
    Actor,
    ActorKind,
    EvidenceRef,
    LogRecord,
    RuleRef,
    Subject,
    encode_entry,
    format_ts,
)
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log


def make_record(i: int) -> LogRecord:
    """A representative entry (~420 canonical bytes): a rule freezing an account with evidence."""
    return LogRecord(
        action="account.frozen",
        actor=Actor(ActorKind.RULE, "high_frequency"),
        subject=Subject(account_id=f"acc_{i % 5000:06d}", freeze_id=f"frz_{i:09d}"),
        reason_codes=("HF_10MIN",),
        rule=RuleRef("high_frequency", 3),
        evidence=(EvidenceRef("transaction", f"tx_{i:010d}"), EvidenceRef("ip", "ip_7f3a9c")),
        state_before={"status": "active"},
        state_after={"status": "frozen", "scope": "full"},
        correlation_id=f"corr-{i:010d}",
    )


def make_small_record(i: int) -> LogRecord:
    """A minimal entry (~150 canonical bytes), the size the issue's 0.5 µs-per-hash figure assumes."""
    return LogRecord(
        action="account.frozen",
        actor=Actor(ActorKind.RULE, "high_frequency"),
        subject=Subject(account_id=f"acc_{i % 5000:06d}"),
    )


PROFILES = {"typical": make_record, "small": make_small_record}


def build_records(total: int, profile: str = "typical") -> tuple[list[LogRecord], float]:
    """Records per second created: validated, PII-scanned and canonicalised (the caller's share)."""
    make = PROFILES[profile]
    started = time.perf_counter()
    records = [make(i) for i in range(total)]
    return records, total / (time.perf_counter() - started)


def append_batched(rt: Runtime, records: list[LogRecord], batch: int) -> float:
    """Entries per second appended in transactions of ``batch`` (number, time, hash, chain, tree, store)."""
    total = len(records)
    started = time.perf_counter()
    for start in range(0, total, batch):
        with UnitOfWork(rt) as uow:
            for r in records[start : start + batch]:
                uow.record(r)
            uow.commit()
    return total / (time.perf_counter() - started)


def append_single(rt: Runtime, total: int) -> float:
    """Entries per second with one transaction (and one durable commit) per entry."""
    records = [make_record(i) for i in range(total)]
    started = time.perf_counter()
    for r in records:
        with UnitOfWork(rt) as uow:
            uow.record(r)
            uow.commit()
    return total / (time.perf_counter() - started)


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes within a minute")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--entries", type=int, default=None, help="entries for the batched run")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="typical", help="entry shape and size")
    args = parser.parse_args()
    total = args.entries or (100_000 if args.quick else 1_000_000)
    singles = 300 if args.quick else 2000

    tmp = Path(tempfile.mkdtemp(prefix="thawline-bench-"))
    given = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    backend = make_url(given).get_backend_name()
    url, schema = scratch.create(given)
    settings = Settings(database_url=url, data_dir=tmp / "data", checkpoint_every_entries=100_000)  # type: ignore[call-arg]
    rt = build_runtime(settings)
    try:
        records, built = build_records(total, args.profile)
        entry_bytes = len(encode_entry(records[-1], total - 1, format_ts(datetime.now(UTC))))
        batched = append_batched(rt, records, args.batch)
        del records
        single = append_single(rt, singles)
        with UnitOfWork(rt) as uow:
            rt.log.checkpoint(uow)
            uow.commit()
        started = time.perf_counter()
        report = verify_log(rt)
        verify_s = time.perf_counter() - started
        assert report.ok, report.problem
        result = {
            "backend": backend,
            "entries": report.entries,
            "batch_size": args.batch,
            "profile": args.profile,
            "entry_bytes": entry_bytes,
            "record_build_per_s": round(built),
            "append_batched_per_s": round(batched),
            "append_single_per_s": round(single),
            "verify_per_s": round(report.entries / verify_s),
            "verify_seconds": round(verify_s, 3),
            "checkpoints": report.checkpoints,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "quick": args.quick,
        }
    finally:
        rt.close()
        scratch.drop(given, schema)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
