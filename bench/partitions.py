"""Event storage through the engine, on the database given: new events, replays, and the log verify.

    python bench/partitions.py [--quick] [--database-url URL] [--events N] [--batch 500]

SQLite (a temporary file) by default; PostgreSQL with --database-url postgresql://... (a fresh schema
is created and dropped). Written to compare PostgreSQL before and after the monthly partitions of
``event`` and ``oplog_bundle`` (migration 0013): it uses only interfaces both versions have.

- ``ingest_events_per_s``: ``RiskEngine.ingest`` of new events (logins and payments of 2,000 accounts
  in the current month) in batches: replay check, features, rules, decisions, storage, one log entry
  per batch, commit.
- ``replay_events_per_s``: the same batches again: every event is found stored and is a duplicate.
- ``verify_per_s``: ``thawline log verify`` over the log those batches wrote, padded with appended
  entries to ``--log-entries``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

import _scratch as scratch  # bench/_scratch.py, beside this script
from thawline.adapters.db.schema import account, vault_subject
from thawline.config import Settings
from thawline.domain.events import Login, Transaction
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services.engine import RiskEngine
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_bench")
ACCOUNTS = 2000


def make_events(total: int, start: datetime, seed: int = 7) -> list[Any]:
    """Logins and debit payments spread over two hours, in time order."""
    rng = random.Random(seed)
    events: list[Any] = []
    for i in range(total):
        acct = f"acc_{rng.randrange(ACCOUNTS):05d}"
        at = start + timedelta(milliseconds=i * 7200_000 // total)
        if i % 3 == 0:
            events.append(
                Login(id=f"ev-{i}", account_id=acct, occurred_at=at, ip="198.51.100.7", device_id="d1")
            )
        else:
            events.append(
                Transaction(
                    id=f"ev-{i}",
                    account_id=acct,
                    occurred_at=at,
                    transaction_id=f"tx-{i}",
                    amount=Decimal(rng.randrange(100, 50_000)) / 100,
                    currency="CNY",
                    direction="debit",
                    order_ref=f"ORD-{i}",
                )
            )
    return events


def register(rt: Runtime) -> None:
    """Bulk-load the accounts (setup, not measured)."""
    now = datetime.now(UTC)
    ids = [f"acc_{i:05d}" for i in range(ACCOUNTS)]
    with rt.engine.begin() as conn:
        conn.execute(
            insert(vault_subject), [{"id": f"ds_{a}", "wrapped_key": b"x", "created_at": now} for a in ids]
        )
        conn.execute(
            insert(account),
            [
                {"id": a, "integrator": "bench", "holder_subject_id": f"ds_{a}", "identity_refs": "{}",
                 "identity_digest": b"\0" * 32, "kyc_level": "full", "vip_tier": 0, "language": "zh-CN",
                 "created_at": now}
                for a in ids
            ],
        )  # fmt: skip


def ingest(engine: RiskEngine, events: list[Any], batch: int) -> tuple[float, int, int]:
    """Events per second, accepted, duplicates."""
    accepted = duplicates = 0
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        result = engine.ingest(events[i : i + batch], GATEWAY)
        accepted += len(result.accepted)
        duplicates += len(result.duplicates)
    return len(events) / (time.perf_counter() - started), accepted, duplicates


def pad_log(rt: Runtime, entries: int, batch: int = 1000) -> None:
    """Append small entries until the log holds ``entries`` (setup, not measured)."""
    with UnitOfWork(rt, read_only=True) as uow:
        size = uow.oplog.head().tree_size
    while size < entries:
        n = min(batch, entries - size)
        with UnitOfWork(rt) as uow:
            for i in range(n):
                uow.record(
                    LogRecord(action="bench.padding", actor=GATEWAY, subject=Subject(ref=f"p{size + i}"))
                )
            uow.commit()
        size += n
    with UnitOfWork(rt) as uow:
        rt.log.checkpoint(uow)
        uow.commit()


def is_partitioned(rt: Runtime) -> bool:
    """True when ``event`` is a partitioned PostgreSQL table (migration 0013)."""
    if rt.engine.dialect.name != "postgresql":
        return False
    with rt.engine.connect() as conn:
        return (
            conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('event')")).scalar()
            == "p"
        )


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes within a minute or two")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--log-entries", type=int, default=None)
    args = parser.parse_args()
    total = args.events or (20_000 if args.quick else 100_000)
    log_entries = args.log_entries or (100_000 if args.quick else 500_000)

    tmp = Path(tempfile.mkdtemp(prefix="thawline-bench-"))
    given = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    backend = make_url(given).get_backend_name()
    url, schema = scratch.create(given)
    settings = Settings(database_url=url, data_dir=tmp / "data", checkpoint_every_entries=100_000)  # type: ignore[call-arg]
    rt = build_runtime(settings)
    try:
        register(rt)
        now = datetime.now(UTC)
        start = max(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(hours=3))
        events = make_events(total, start)
        engine = RiskEngine(rt)
        rate, accepted, _ = ingest(engine, events, args.batch)
        assert accepted == total, accepted
        replay_rate, _, duplicates = ingest(engine, events, args.batch)
        assert duplicates == total, duplicates
        pad_log(rt, log_entries)
        started = time.perf_counter()
        report = verify_log(rt)
        verify_s = time.perf_counter() - started
        assert report.ok, report.problem
        result = {
            "backend": backend,
            "partitioned": is_partitioned(rt),
            "events": total,
            "batch": args.batch,
            "ingest_events_per_s": round(rate),
            "replay_events_per_s": round(replay_rate),
            "log_entries": report.entries,
            "verify_per_s": round(report.entries / verify_s),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_1min": round(os.getloadavg()[0], 2),
            "quick": args.quick,
        }
    finally:
        rt.close()
        scratch.drop(given, schema)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
