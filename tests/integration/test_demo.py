"""``thawline demo``'s month, played through the real services on both databases: every kind of case
happens, each step lands in the operation log at its own time, and the log verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select

from tests.conftest import make_settings
from thawline.adapters.db.schema import appeal, appeal_review, freeze, oplog_bundle, probation
from thawline.domain.clock import FakeClock
from thawline.services import demo, review
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log
from thawline.sim.story import CasePlanner, FreezeFacts, Story

DAYS = 12


def actions(rt: Runtime) -> set[str]:
    """Every action the log recorded (read from the stored entries, not from the tables)."""
    with UnitOfWork(rt, read_only=True) as uow:
        return {orjson.loads(data)["action"] for _seq, data, _chain in uow.oplog.entries()}


def test_a_small_demo_plays_every_kind_of_case_and_its_log_verifies(
    runtime: Runtime, clock: FakeClock
) -> None:
    end = clock.now() + timedelta(days=DAYS + 2, hours=5)
    plan = demo.DemoPlan(accounts=400, days=DAYS, seed=3, end=end, abuse_rate=0.08)
    result = demo.run(runtime, clock, plan)

    assert clock.now() >= end
    assert result.api_key.startswith("tlk_")
    assert {s.role.value for s in result.staff} == {
        "reviewer",
        "senior_reviewer",
        "risk_analyst",
        "auditor",
        "admin",
    }
    assert len({s.password for s in result.staff}) == 5
    with UnitOfWork(runtime, read_only=True) as uow:
        c = uow.conn
        released_after_appeal = c.execute(
            select(func.count())
            .select_from(appeal)
            .join(freeze, freeze.c.id == appeal.c.freeze_id)
            .join(probation, probation.c.freeze_id == freeze.c.id)
            .where(appeal.c.status == "approved", freeze.c.status == "released")
        ).scalar_one()
        voucher_rejections = c.execute(
            select(func.count())
            .select_from(appeal_review)
            .where(appeal_review.c.decision == "reject", appeal_review.c.reason_codes.like("voucher_%"))
        ).scalar_one()
        second_rounds = c.execute(
            select(func.count()).select_from(appeal).where(appeal.c.round == 2)
        ).scalar_one()
        expedited = c.execute(
            select(func.count()).select_from(appeal).where(appeal.c.expedited.is_(True))
        ).scalar_one()
        escalated = c.execute(
            select(func.count()).select_from(appeal).where(appeal.c.escalated_at.isnot(None))
        ).scalar_one()
        four_eyes = c.execute(
            select(func.count()).select_from(appeal).where(appeal.c.first_approver.isnot(None))
        ).scalar_one()
        open_cases = review.queue(uow, limit=1000)
        freeze_days = {d.date() for (d,) in c.execute(select(freeze.c.created_at)) if d is not None}
        first_ts, last_ts = c.execute(select(func.min(oplog_bundle.c.ts), func.max(oplog_bundle.c.ts))).one()
    assert released_after_appeal >= 1
    assert voucher_rejections >= 1
    assert second_rounds >= 1
    assert expedited >= 1
    assert escalated >= 1
    assert four_eyes >= 1
    assert {q.appeal.status.value for q in open_cases} & {"submitted", "in_review", "second_approval"}
    # Lived-in: freezes on many days of the window, and the log spanning it.
    assert len(freeze_days) >= DAYS // 2
    assert last_ts - first_ts >= timedelta(days=DAYS)

    done = actions(runtime)
    for action in (
        "appeal.submitted",
        "appeal.pre_reviewed",
        "appeal.expedited",
        "appeal.sla_breached",
        "appeal.first_approval",
        "appeal.rejected",
        "appeal.approved",
        "verification.sms_passed",
        "verification.face_passed",
        "freeze.released",
        "probation.started",
        "account.kyc_updated",
        "notification.delivered",
        "staff.created",
    ):
        assert action in done, action

    report = verify_log(runtime, workers=1)
    assert report.ok, report.problem


def test_the_same_seed_gives_the_same_case_mix() -> None:
    facts = [
        FreezeFacts(f"acc_{i}", cat, i % 3 != 0, i % 5 == 0, cat == "aml", cat == "high_frequency", False, h)
        for i, (cat, h) in enumerate(
            (("aml", 200.0), ("high_frequency", 150.0), ("abnormal_login", 30.0)) * 40
        )
    ]

    def plans(seed: int) -> list[Story]:
        planner = CasePlanner(seed)
        return [planner.plan(f) for f in facts]

    assert plans(7) == plans(7)
    assert plans(7) != plans(8)
    assert {Story.APPROVED, Story.REJECTED_VOUCHER, Story.EXPEDITED, Story.SLA_BREACH} <= set(plans(7))


def test_the_same_seed_and_end_build_the_same_demo(
    runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    end = clock.now() + timedelta(days=8, hours=3)
    plan = demo.DemoPlan(accounts=250, days=6, seed=11, end=end, abuse_rate=0.08)
    again = build_runtime(
        make_settings("sqlite:///" + str(tmp_path / "again.db"), tmp_path / "again"), clock=FakeClock()
    )

    def built(rt: Runtime, c: FakeClock) -> tuple[Any, ...]:
        result = demo.run(rt, c, plan)
        with UnitOfWork(rt, read_only=True) as uow:
            freezes = sorted(
                uow.conn.execute(
                    select(freeze.c.account_id, freeze.c.category, freeze.c.status, freeze.c.created_at)
                )
            )
            appeals = sorted(
                uow.conn.execute(
                    select(appeal.c.account_id, appeal.c.round, appeal.c.status, appeal.c.submitted_at)
                )
            )
        return (
            result.events,
            dict(result.stories),
            dict(result.outcomes),
            [tuple(r) for r in freezes],
            [tuple(r) for r in appeals],
        )

    try:
        first = built(runtime, clock)
        second = built(again, again.clock)  # type: ignore[arg-type]
    finally:
        again.close()
    assert first == second
    assert first[3]  # something was frozen
    assert first[4]  # and appealed
