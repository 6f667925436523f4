"""Timers with a controllable clock: SLA breach, lapsed appeals, freeze expiry and re-review, probation end.

Every timer is a stored deadline; running the scheduler twice, or two schedulers at once, changes
each item once and records it once.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from tests import lifecycle as lc
from thawline.domain.appeals import AppealStatus
from thawline.domain.clock import FakeClock
from thawline.domain.freezes import FreezeStatus
from thawline.oplog.entry import decode_entry
from thawline.services import accounts, appeals, freezes, inbox, review, scheduler
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

NOTHING = {
    "sla_breached": 0,
    "sla_warnings": 0,
    "appeals_expired": 0,
    "freezes_expired": 0,
    "rereviews_due": 0,
    "probations_ended": 0,
}


def _actions(runtime: Runtime, account_id: str = "acc_1") -> list[str]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries(account_id=account_id)]


def test_an_unanswered_appeal_warns_staff_at_36_hours_and_is_escalated_once_after_48(
    runtime: Runtime, clock: FakeClock
) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    clock.advance(timedelta(hours=35, minutes=59))
    assert scheduler.run_due(runtime) == NOTHING
    clock.advance(timedelta(minutes=1))
    assert scheduler.run_due(runtime) == {**NOTHING, "sla_warnings": 1}
    clock.advance(timedelta(hours=11, minutes=59))
    assert scheduler.run_due(runtime) == NOTHING
    clock.advance(timedelta(minutes=1))
    assert scheduler.run_due(runtime) == {**NOTHING, "sla_breached": 1}
    assert scheduler.run_due(runtime) == NOTHING
    with UnitOfWork(runtime, read_only=True) as uow:
        a = appeals.get(uow, appeal_id)
        (item,) = review.queue(uow)
    assert a.escalated_at == clock.now()
    assert item.breached
    assert _actions(runtime).count("appeal.sla_breached") == 1
    assert _actions(runtime).count("appeal.sla_warning") == 1
    with UnitOfWork(runtime, read_only=True) as uow:
        notices = inbox.notices(uow, ["role:reviewers", "role:leads"])
    assert [m.template for m in notices] == ["staff_sla_breached", "staff_sla_warning"]


def test_a_claimed_appeal_is_not_escalated(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    clock.advance(timedelta(hours=2))
    lc.claim(runtime, appeal_id, lc.ALICE)
    clock.advance(timedelta(hours=72))
    assert scheduler.run_due(runtime)["sla_breached"] == 0


def test_idle_drafts_lapse_and_do_not_use_up_an_appeal_round(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime)
    with UnitOfWork(runtime) as uow:
        draft, _ = appeals.open_appeal(
            uow, freeze_id, explanation="x", contact_channel="in_site", contact_value=None, actor=lc.HOLDER
        )
        uow.commit()
    clock.advance(timedelta(days=14))
    assert scheduler.run_due(runtime)["appeals_expired"] == 1
    with UnitOfWork(runtime, read_only=True) as uow:
        assert appeals.get(uow, draft.id).status is AppealStatus.EXPIRED
    second = lc.submit_appeal(runtime, freeze_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert appeals.get(uow, second).round == 1


def test_freezes_expire_and_re_review_dates_are_flagged(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime)
    now = clock.now()
    expiring = lc.freeze(runtime, expires_at=now + timedelta(days=3))
    kept = lc.freeze(runtime, review_by=now + timedelta(days=1))
    clock.advance(timedelta(days=1))
    assert scheduler.run_due(runtime) == {**NOTHING, "rereviews_due": 1}
    with UnitOfWork(runtime) as uow:
        freezes.rereview(
            uow,
            kept,
            keep=True,
            next_review_by=clock.now() + timedelta(days=30),
            note="still risky",
            actor=lc.ALICE,
        )
        uow.commit()
    clock.advance(timedelta(days=2))
    assert scheduler.run_due(runtime) == {**NOTHING, "freezes_expired": 1}
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, expiring).status is FreezeStatus.EXPIRED
        assert freezes.get(uow, kept).review_by == clock.now() + timedelta(days=28)
    assert _actions(runtime)[-3:] == ["freeze.rereview_due", "freeze.rereviewed", "freeze.expired"]


def test_probation_ends_on_time(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    lc.pass_sms(runtime, appeal_id)
    lc.pass_face(runtime, appeal_id)
    clock.advance(timedelta(hours=23))
    assert scheduler.run_due(runtime)["probations_ended"] == 0
    clock.advance(timedelta(hours=1))
    assert scheduler.run_due(runtime)["probations_ended"] == 1
    with UnitOfWork(runtime, read_only=True) as uow:
        assert accounts.get(uow, "acc_1").probation_until is None
    assert _actions(runtime)[-1] == "probation.ended"


def test_two_schedulers_at_once_handle_each_item_once(runtime: Runtime, clock: FakeClock) -> None:
    for n in range(12):
        lc.register(runtime, f"acc_{n}")
        lc.submit_appeal(runtime, lc.freeze(runtime, f"acc_{n}", expires_at=clock.now() + timedelta(days=5)))
    clock.advance(timedelta(days=5))
    barrier = threading.Barrier(3)
    results: list[dict[str, int]] = []

    def run() -> None:
        barrier.wait()
        results.append(scheduler.run_due(runtime))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = Counter[str]()
    for r in results:
        totals.update(r)
    assert totals["sla_breached"] == 12
    assert totals["freezes_expired"] == 12
    with UnitOfWork(runtime, read_only=True) as uow:
        every = Counter(str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries())
    assert every["appeal.sla_breached"] == 12
    assert every["freeze.expired"] == 12
    assert verify_log(runtime).ok
