"""Regression tests from the lifecycle review: each one reproduced a defect before its fix."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests import lifecycle as lc
from tests.files import pdf
from thawline.adapters.db.schema import account, probation
from thawline.domain.appeals import AppealStatus
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, PermissionDeniedError
from thawline.domain.freezes import FreezeStatus
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import appeals, freezes, review, scheduler, selfservice, verification
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def _release_into_probation(runtime: Runtime, freeze_id: str) -> str:
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    lc.pass_sms(runtime, appeal_id)
    lc.pass_face(runtime, appeal_id)
    return appeal_id


def test_whoever_filed_an_appeal_may_not_review_it_under_another_kind(runtime: Runtime) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime)
    filer = Actor(ActorKind.INTEGRATOR, "ak_same")
    with UnitOfWork(runtime) as uow:
        made, _ = appeals.open_appeal(
            uow, freeze_id, explanation="mine", contact_channel="in_site", contact_value=None, actor=filer
        )
        for kind in appeals.completeness(uow, made.id).required_materials:
            appeals.add_material(
                uow, made.id, kind=kind, data=pdf(kind.value), transaction_ids=(), actor=filer
            )
        appeals.submit(uow, made.id, filer)
        uow.commit()
    with pytest.raises(ConflictError, match="filed the appeal"):
        lc.claim(runtime, made.id, Actor(ActorKind.REVIEWER, "ak_same"))


def test_a_rereview_release_needs_an_eligible_reviewer_and_a_due_date(
    runtime: Runtime, clock: FakeClock
) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime, review_by=clock.now() + timedelta(days=2))
    with UnitOfWork(runtime) as uow:
        review.declare_conflict(uow, "reviewer:rv_alice", "acc_1", "her brother", lc.CREATOR)
        uow.commit()
    clock.advance(timedelta(days=3))
    for who, refused in ((lc.ALICE, PermissionDeniedError), (lc.CREATOR, ConflictError)):
        with UnitOfWork(runtime) as uow, pytest.raises(refused):
            freezes.rereview(uow, freeze_id, keep=False, next_review_by=None, note="ok", actor=who)
    with UnitOfWork(runtime) as uow:
        kept = freezes.rereview(
            uow,
            freeze_id,
            keep=True,
            next_review_by=clock.now() + timedelta(days=5),
            note="watch",
            actor=lc.BOB,
        )
        uow.commit()
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="not due"):
        freezes.rereview(uow, freeze_id, keep=False, next_review_by=None, note="ok", actor=lc.BOB)
    assert kept.status is FreezeStatus.ACTIVE


def test_a_freeze_ending_by_another_path_closes_its_appeal_and_verification(runtime: Runtime) -> None:
    lc.register(runtime)
    queued = lc.submit_appeal(runtime, lc.freeze(runtime))
    approved_freeze = lc.freeze(runtime)
    approved = lc.submit_appeal(runtime, approved_freeze)
    lc.claim(runtime, approved, lc.ALICE)
    lc.decide(runtime, approved, lc.ALICE)
    with UnitOfWork(runtime, read_only=True) as uow:
        first = appeals.get(uow, queued).freeze_id
    for freeze_id in (first, approved_freeze):
        with UnitOfWork(runtime) as uow:
            freezes.release(uow, freeze_id, lc.BOB, "cleared by phone call")
            uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert appeals.get(uow, queued).status is AppealStatus.WITHDRAWN
        assert review.queue(uow) == []
        assert verification.get(uow, approved).status == "cancelled"
        actions = [str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries(account_id="acc_1")]
    assert actions.count("appeal.closed") == 1
    assert actions.count("verification.cancelled") == 1


def test_three_failed_face_checks_can_be_reset_by_a_lead(runtime: Runtime) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime)
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    for _ in range(3):
        lc.pass_face(runtime, appeal_id, passed=False)
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="too often"):
        verification.start_face(uow, appeal_id, lc.HOLDER)
    with UnitOfWork(runtime) as uow:
        verification.reset_face(uow, appeal_id, lc.BOB, "holder came to the branch")
        uow.commit()
    lc.pass_sms(runtime, appeal_id)
    lc.pass_face(runtime, appeal_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, freeze_id).status is FreezeStatus.RELEASED


def test_repeating_full_kyc_releases_nothing(runtime: Runtime) -> None:
    lc.register(runtime, kyc="full")
    kyc_freeze = lc.freeze(runtime, category=lc.ReasonCategory.KYC_INCOMPLETE)
    with UnitOfWork(runtime) as uow:
        assert selfservice.update_kyc(uow, "acc_1", "full", lc.HOLDER) == []
        uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, kyc_freeze).status is FreezeStatus.ACTIVE


def test_a_probation_starting_while_an_old_one_ends_is_not_lost(runtime: Runtime, clock: FakeClock) -> None:
    """Ending an old probation and starting a new one at once must leave probation_until set."""
    lc.register(runtime)
    _release_into_probation(runtime, lc.freeze(runtime))
    clock.advance(timedelta(hours=25))
    second = lc.freeze(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        old = uow.conn.execute(select(probation.c.id)).scalar_one()
        frozen = freezes.get(uow, second)
    starting = UnitOfWork(runtime).__enter__()
    verification.start_probation(starting, frozen)  # not committed yet
    done: dict[str, bool] = {}

    def end_old() -> None:
        with UnitOfWork(runtime) as uow:
            done["ok"] = scheduler._end_probation(uow, old)
            uow.commit()

    thread = threading.Thread(target=end_old)
    thread.start()
    time.sleep(0.5)
    starting.commit()
    starting.__exit__(None, None, None)
    thread.join()
    with UnitOfWork(runtime, read_only=True) as uow:
        until = uow.conn.execute(select(account.c.probation_until)).scalar_one()
        live = (
            uow.conn.execute(select(probation.c.ends_at).where(probation.c.ended_at.is_(None)))
            .scalars()
            .all()
        )
    assert done["ok"]
    assert live == [until]
