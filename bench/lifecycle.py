"""Benchmark the freeze lifecycle: in-process authorisation latency and freeze/release throughput.

    python bench/lifecycle.py [--quick] [--database-url URL]

Prints one JSON object. The population (1,000,000 accounts, 10,000 with an active freeze; a tenth
of that with --quick) is bulk-loaded with SQL, since only the measured operations matter here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from thawline.adapters.db.schema import account, freeze, vault_subject
from thawline.config import Settings
from thawline.domain.freezes import Direction, FreezeScope, Operation, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, freezes
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork

PAY = Operation(Direction.DEBIT, Decimal("88.50"), "CNY", channel="card")
RULE = Actor(ActorKind.RULE, "bench_rule")


def populate(rt: Runtime, n_accounts: int, n_frozen: int) -> None:
    """Bulk-load accounts and active freezes (setup, not measured)."""
    now = rt.clock.now()
    chunk = 50_000
    with rt.engine.begin() as conn:
        for start in range(0, n_accounts, chunk):
            ids = range(start, min(start + chunk, n_accounts))
            conn.execute(
                insert(vault_subject),
                [{"id": f"ds_{i}", "wrapped_key": b"x", "created_at": now} for i in ids],
            )
            conn.execute(
                insert(account),
                [
                    {
                        "id": f"acc_{i}",
                        "integrator": "bench",
                        "holder_subject_id": f"ds_{i}",
                        "identity_refs": "{}",
                        "identity_digest": b"\0" * 32,
                        "kyc_level": "basic",
                        "vip_tier": 0,
                        "language": "zh-CN",
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
        step = max(n_accounts // n_frozen, 1)
        conn.execute(
            insert(freeze),
            [
                {
                    "id": f"frz_{i}",
                    "account_id": f"acc_{i}",
                    "scope": "full",
                    "category": "high_frequency",
                    "reason_codes": "HF",
                    "source": "rule",
                    "source_ref": "bench_rule",
                    "legal_basis": "bench",
                    "internal_reason": "bench",
                    "holder_reason": "bench",
                    "evidence": "",
                    "created_by": "rule:bench",
                    "created_at": now,
                    "review_by": now + timedelta(days=30),
                    "status": "active",
                }
                for i in range(0, n_accounts, step)[:n_frozen]
            ],
        )


def authorize_latencies(rt: Runtime, n_accounts: int, samples: int) -> list[float]:
    """Microseconds per check, each in its own read-only unit of work, as a gateway request would run."""
    rng = random.Random(7)
    step = max(n_accounts // max(n_accounts // 100, 1), 1)
    # Half the checks hit frozen accounts (every step-th account is frozen), half random ones.
    targets = [
        f"acc_{rng.randrange(0, n_accounts, step)}" if i % 2 else f"acc_{rng.randrange(n_accounts)}"
        for i in range(samples)
    ]
    out = []
    for account_id in targets:
        started = time.perf_counter()
        with UnitOfWork(rt, read_only=True) as uow:
            freezes.authorize(uow, account_id, PAY)
        out.append((time.perf_counter() - started) * 1e6)
    return out


def freeze_release_cycles(rt: Runtime, cycles: int) -> float:
    """Freeze then release through the service layer (two commits, two log entries) per second."""
    with UnitOfWork(rt) as uow:
        accounts.register(uow, accounts.RegisterAccount("acc_cycle", "Bench Holder", language="en"), RULE)
        uow.commit()
    cmd = freezes.FreezeAccount(
        "acc_cycle",
        Restriction(FreezeScope.FULL),
        ReasonCategory.HIGH_FREQUENCY,
        ("HF",),
        SourceKind.RULE,
        "bench_rule",
        "bench",
        "bench",
        "Unusually many payments",
        rule_version=1,
    )
    started = time.perf_counter()
    for _ in range(cycles):
        with UnitOfWork(rt) as uow:
            made, _created = freezes.freeze_account(uow, cmd, RULE)
            uow.commit()
        with UnitOfWork(rt) as uow:
            freezes.release(uow, made.id, Actor(ActorKind.REVIEWER, "rv_bench"), "cleared")
            uow.commit()
    return cycles / (time.perf_counter() - started)


def main() -> None:
    """Run and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    n_accounts, n_frozen = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="thawline-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'lifecycle.db'}"
    rt = build_runtime(Settings(database_url=url, data_dir=tmp / "data"))  # type: ignore[call-arg]
    try:
        started = time.perf_counter()
        populate(rt, n_accounts, n_frozen)
        load_s = time.perf_counter() - started
        lat = sorted(authorize_latencies(rt, n_accounts, 5_000 if args.quick else 20_000))
        cycles = freeze_release_cycles(rt, 200 if args.quick else 1_000)
    finally:
        rt.close()
    json.dump(
        {
            "backend": rt.engine.dialect.name,
            "accounts": n_accounts,
            "active_freezes": n_frozen,
            "authorize_p50_us": round(statistics.median(lat), 1),
            "authorize_p99_us": round(lat[int(len(lat) * 0.99) - 1], 1),
            "authorize_samples": len(lat),
            "freeze_release_cycles_per_s": round(cycles, 1),
            "population_load_s": round(load_s, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "quick": args.quick,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
