"""Re-screening: a new policy or list entry reaches accounts that sent nothing new; resumable, once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from tests import lifecycle as lc
from thawline.adapters.db.schema import rescreen_job, rule_suppression
from thawline.domain.events import Transaction
from thawline.domain.freezes import FreezeStatus
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import engine, freezes, lists, rescreen
from thawline.services import freezes as freeze_service
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")


def _structuring(runtime: Runtime, account_id: str) -> list[Transaction]:
    t0 = runtime.clock.now()
    return [
        Transaction(
            id=f"{account_id}-s{i}",
            account_id=account_id,
            occurred_at=t0 + timedelta(hours=6 * i),
            transaction_id=f"{account_id}-ts{i}",
            amount=Decimal("46500"),
            currency="CNY",
            direction="credit",
        )
        for i in range(2)
    ]


def test_a_stricter_policy_and_a_new_blocklist_entry_freeze_on_rescreen_once(runtime: Runtime) -> None:
    for n in range(5):
        lc.register(runtime, f"acc_{n}", kyc="full")
    engine.RiskEngine(runtime).ingest(
        _structuring(runtime, "acc_2"), GATEWAY
    )  # two near-threshold credits: allowed
    stricter = engine.default_ruleset_text().replace("near_threshold_7d >= 3", "near_threshold_7d >= 2")
    with UnitOfWork(runtime) as uow:
        engine.load_ruleset(uow, stricter, GATEWAY, note="AML policy 2026-11")
        lists.import_csv(
            uow, "kind,value,reason\nphone,13800138000,regulator notice\n", "block", GATEWAY, "n.csv"
        )
        uow.commit()
    job = rescreen.start(runtime, "AML policy 2026-11", GATEWAY)
    assert job.total == 5
    seen = []
    done = rescreen.run(runtime, job.id, chunk=2, progress=lambda j: seen.append(j.processed))
    assert seen == [2, 4, 5]
    assert (done.status, done.processed) == ("finished", 5)
    with UnitOfWork(runtime, read_only=True) as uow:
        refs = {a: sorted(f.source_ref for f in freezes.list_freezes(uow, a)) for a in ("acc_0", "acc_2")}
        actions = [str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries()]
    # Every test account has the same phone: all are on the blocklist; acc_2 also hits structuring.
    assert refs == {"acc_0": ["rescreen:blocklist"], "acc_2": ["rescreen:blocklist", "rescreen:structuring"]}
    assert done.flagged == 6
    assert actions.count("rescreen.progressed") == 3
    assert actions[-1] == "rescreen.finished"
    again = rescreen.start(runtime, "again", GATEWAY)
    assert rescreen.run(runtime, again.id).flagged == 0  # nothing twice


def test_a_job_resumes_from_its_cursor(runtime: Runtime) -> None:
    for n in range(3):
        lc.register(runtime, f"acc_{n}", kyc="full")
    job = rescreen.start(runtime, "lists", GATEWAY)
    assert rescreen.start(runtime, "second", GATEWAY).id == job.id  # one job at a time
    with UnitOfWork(runtime) as uow:
        uow.conn.execute(update(rescreen_job).values(cursor="acc_1", processed=2))  # as if stopped after 2
        uow.commit()
    assert rescreen.run(runtime, job.id).processed == 3


def test_rescreen_does_not_refreeze_what_was_released_or_suppressed(runtime: Runtime) -> None:
    lc.register(runtime, "acc_1", kyc="full")
    lc.register(runtime, "acc_2", kyc="full", phone="13800138002")
    stricter = engine.default_ruleset_text().replace("near_threshold_7d >= 3", "near_threshold_7d >= 2")
    with UnitOfWork(runtime) as uow:
        engine.load_ruleset(uow, stricter, GATEWAY)
        uow.commit()
    gateway = engine.RiskEngine(runtime)
    gateway.ingest(_structuring(runtime, "acc_1") + _structuring(runtime, "acc_2"), GATEWAY)
    with UnitOfWork(runtime) as uow:
        (made,) = freeze_service.list_freezes(uow, "acc_1", active_only=True)
        freeze_service.end(uow, made, FreezeStatus.RELEASED, lc.ALICE, "appeal approved")
        (other,) = freeze_service.list_freezes(uow, "acc_2", active_only=True)
        freeze_service.end(uow, other, FreezeStatus.RELEASED, lc.ALICE, "known payroll pattern")
        uow.conn.execute(
            rule_suppression.insert().values(
                account_id="acc_2", rule_id="structuring", until=runtime.clock.now() + timedelta(days=30),
                reason="payroll", created_by="t", created_at=runtime.clock.now(),
            )
        )  # fmt: skip
        uow.commit()
    job = rescreen.start(runtime, "after appeals", GATEWAY)
    done = rescreen.run(runtime, job.id)
    with UnitOfWork(runtime, read_only=True) as uow:
        made = [
            (f.account_id, f.source_ref)
            for a in ("acc_1", "acc_2")
            for f in freeze_service.list_freezes(uow, a, active_only=True)
        ]
    assert (done.flagged, made) == (0, [])
