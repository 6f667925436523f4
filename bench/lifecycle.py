"""Benchmark the freeze lifecycle: in-process authorisation latency and full lifecycle throughput.

    python bench/lifecycle.py [--quick] [--database-url URL]

Prints one JSON object. The population (1,000,000 accounts, 10,000 with an active freeze; a tenth
of that with --quick) is bulk-loaded with SQL, since only the measured operations matter here.

``cycles_per_s`` is the whole way back, through the service layer, one unit of work (one
transaction, its log entries inside) per command exactly as the HTTP API runs them: freeze →
open appeal → upload the explanation letter → submit (with the machine pre-review) → claim →
approve → send SMS code → check code → start face session → provider result → release into
probation. Ten commits and about twenty log entries per cycle.
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from thawline.adapters.db.schema import account, freeze, vault_subject
from thawline.config import Settings
from thawline.domain.appeals import MaterialKind
from thawline.domain.freezes import Direction, FreezeScope, Operation, ReasonCategory, Restriction, SourceKind
from thawline.domain.review import Decision
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, appeals, freezes, review, verification
from thawline.services.authorizer import Authorizer
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


def _targets(n_accounts: int, samples: int) -> list[str]:
    rng = random.Random(7)
    step = max(n_accounts // max(n_accounts // 100, 1), 1)
    # Half the checks hit frozen accounts (every step-th account is frozen), half random ones.
    return [
        f"acc_{rng.randrange(0, n_accounts, step)}" if i % 2 else f"acc_{rng.randrange(n_accounts)}"
        for i in range(samples)
    ]


def authorize_latencies(rt: Runtime, n_accounts: int, samples: int) -> list[float]:
    """Microseconds per check through the gateway's authoriser (kept-open autocommit connections)."""
    authorizer = Authorizer(rt)
    out = []
    try:
        for account_id in _targets(n_accounts, samples):
            started = time.perf_counter()
            authorizer.check(account_id, PAY)
            out.append((time.perf_counter() - started) * 1e6)
    finally:
        authorizer.close()
    return out


def authorize_uow_latencies(rt: Runtime, n_accounts: int, samples: int) -> list[float]:
    """Microseconds per check, each in its own read-only unit of work (the general read path)."""
    out = []
    for account_id in _targets(n_accounts, samples):
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


HOLDER = Actor(ActorKind.HOLDER, "bench_holder")
REVIEWER = Actor(ActorKind.REVIEWER, "rv_bench")
LETTER = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def lifecycle_cycles(rt: Runtime, cycles: int) -> tuple[float, dict[str, float]]:
    """Full cycles per second, and the mean milliseconds of each step."""
    with UnitOfWork(rt) as uow:
        accounts.register(
            uow,
            accounts.RegisterAccount("acc_life", "Bench Holder", phone="13800138000", language="en"),
            RULE,
        )
        uow.commit()
    cmd = freezes.FreezeAccount(
        "acc_life",
        Restriction(FreezeScope.FULL),
        ReasonCategory.MANUAL,
        ("MANUAL",),
        SourceKind.REVIEWER,
        "rv_other",
        "terms §4",
        "bench",
        "Your account is under review",
    )
    steps: dict[str, float] = {}

    @contextmanager
    def step(name: str) -> Iterator[UnitOfWork]:
        began = time.perf_counter()
        with UnitOfWork(rt) as uow:
            yield uow
            uow.commit()
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - began

    started = time.perf_counter()
    for _ in range(cycles):
        with step("freeze") as uow:
            made, _ = freezes.freeze_account(uow, cmd, RULE)
        with step("open_appeal") as uow:
            appeal, _ = appeals.open_appeal(
                uow, made.id, explanation="mine", contact_channel="in_site", contact_value=None, actor=HOLDER
            )
        with step("upload") as uow:
            appeals.add_material(
                uow,
                appeal.id,
                kind=MaterialKind.EXPLANATION_LETTER,
                data=LETTER,
                transaction_ids=(),
                actor=HOLDER,
            )
        with step("submit") as uow:
            appeals.submit(uow, appeal.id, HOLDER)
        with step("claim") as uow:
            review.claim(uow, appeal.id, REVIEWER)
        with step("approve") as uow:
            review.decide(
                uow, appeal.id, Decision.APPROVE, reason_codes=("false_positive",), note="", reviewer=REVIEWER
            )
        with step("send_code") as uow:
            verification.send_code(uow, appeal.id, HOLDER)
        code = rt.sms.messages("acc_life")[-1].text.split("code is ")[1][:6]  # type: ignore[attr-defined]
        with step("check_code") as uow:
            verification.check_code(uow, appeal.id, code, HOLDER)
        with step("face_start") as uow:
            face, _url = verification.start_face(uow, appeal.id, HOLDER)
        with step("face_result") as uow:
            verification.face_result(
                uow, face.face_session or "", passed=True, score=0.99, provider_ref="bench"
            )
    elapsed = time.perf_counter() - started
    return cycles / elapsed, {k: round(v / cycles * 1000, 3) for k, v in steps.items()}


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
        samples = 5_000 if args.quick else 20_000
        lat = sorted(authorize_latencies(rt, n_accounts, samples))
        lat_uow = sorted(authorize_uow_latencies(rt, n_accounts, samples // 4))
        cycles = freeze_release_cycles(rt, 200 if args.quick else 1_000)
        full, per_step = lifecycle_cycles(rt, 100 if args.quick else 500)
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
            "authorize_uow_p50_us": round(statistics.median(lat_uow), 1),
            "authorize_uow_p99_us": round(lat_uow[int(len(lat_uow) * 0.99) - 1], 1),
            "cycles_per_s": round(full, 1),
            "cycle_step_ms": per_step,
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
