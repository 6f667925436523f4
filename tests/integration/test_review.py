"""Review: queue order, claims, decisions with reason codes, the machine's opinion, four eyes."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from tests import lifecycle as lc
from thawline.domain.appeals import AppealStatus
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError, PermissionDeniedError
from thawline.domain.freezes import FreezeStatus, ReasonCategory
from thawline.domain.review import Decision
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import appeals, expedite, freezes, review, verification
from thawline.services.appeals import VoucherData
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log


def _count(runtime: Runtime) -> int:
    with UnitOfWork(runtime, read_only=True) as uow:
        return uow.oplog.count()


def _appeal(runtime: Runtime, appeal_id: str) -> appeals.Appeal:
    with UnitOfWork(runtime, read_only=True) as uow:
        return appeals.get(uow, appeal_id)


def test_the_queue_puts_expedited_cases_first_then_the_earliest_deadline(
    runtime: Runtime, clock: FakeClock
) -> None:
    ids = []
    for n in range(3):
        lc.register(runtime, f"acc_{n}", vip=1)
        ids.append(lc.submit_appeal(runtime, lc.freeze(runtime, f"acc_{n}")))
        clock.advance(timedelta(minutes=10))
    with UnitOfWork(runtime) as uow:
        expedite.expedite(uow, ids[2], lc.HOLDER)
        uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        order = [item.appeal.id for item in review.queue(uow)]
    assert order == [ids[2], ids[0], ids[1]]


def test_the_machine_pre_review_checks_vouchers_against_the_flagged_transactions(runtime: Runtime) -> None:
    lc.register(runtime)
    good = lc.submit_appeal(
        runtime,
        lc.flagged_hf(runtime),
        voucher=VoucherData("ORD-1", Decimal("88.50"), lc.T1_AT + timedelta(minutes=3)),
    )
    lc.register(runtime, "acc_2")
    bad = lc.submit_appeal(
        runtime, lc.flagged_hf(runtime, "acc_2"), voucher=VoucherData("ORD-9", Decimal("880.50"), None)
    )
    with UnitOfWork(runtime, read_only=True) as uow:
        (machine_good,) = review.reviews(uow, good)
        (machine_bad,) = review.reviews(uow, bad)
    assert (machine_good.kind, machine_good.decision) == ("machine", Decision.APPROVE)
    assert machine_good.confidence is not None
    assert machine_good.confidence > Decimal("0.8")
    assert machine_bad.decision is Decision.REJECT
    (voucher,) = [f for f in machine_bad.findings if f["check"] == "voucher"]
    assert voucher["outcome"] == "fail"
    assert "amount 880.50 ≠ recorded 88.50" in voucher["detail"]
    assert "order ORD-9 ≠ recorded ORD-1" in voucher["detail"]


def test_a_person_disagreeing_with_the_machine_is_recorded(runtime: Runtime) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(
        runtime, lc.flagged_hf(runtime), voucher=VoucherData("ORD-1", Decimal("88.5"), None)
    )
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE, Decision.REJECT, "insufficient_evidence")
    with UnitOfWork(runtime, read_only=True) as uow:
        machine, human = review.reviews(uow, appeal_id)
        last = decode_entry(list(uow.oplog.entries(account_id="acc_1"))[-1][1])
    assert (machine.decision, human.decision) == (Decision.APPROVE, Decision.REJECT)
    assert human.agrees_with_machine is False
    assert last["action"] == "appeal.rejected"
    assert last["details"]["disagrees_with_machine"] is True
    assert last["details"]["machine_recommendation"] == "approve"
    assert "checked" not in str(last)  # the note stays out of the log; only its fingerprint is there


def test_claim_assign_and_unclaim(runtime: Runtime) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    lc.claim(runtime, appeal_id, lc.ALICE)
    a = _appeal(runtime, appeal_id)
    assert (a.status, a.assignee) == (AppealStatus.IN_REVIEW, "reviewer:rv_alice")
    assert a.first_responded_at is not None
    before = _count(runtime)
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="held by reviewer:rv_alice"):
        review.claim(uow, appeal_id, lc.BOB)
    with UnitOfWork(runtime) as uow:  # claiming again is a harmless retry
        review.claim(uow, appeal_id, lc.ALICE)
        uow.commit()
    assert _count(runtime) == before
    with UnitOfWork(runtime) as uow:
        review.assign(uow, appeal_id, "reviewer:rv_bob", lc.CREATOR)
        uow.commit()
    assert _appeal(runtime, appeal_id).assignee == "reviewer:rv_bob"
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError):
        review.unclaim(uow, appeal_id, lc.ALICE)
    with UnitOfWork(runtime) as uow:
        review.unclaim(uow, appeal_id, lc.BOB)
        uow.commit()
    assert _appeal(runtime, appeal_id).assignee is None


def test_deciding_needs_the_case_and_a_known_reason_code(runtime: Runtime) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    before = _count(runtime)
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="claim"):
        review.decide(
            uow, appeal_id, Decision.APPROVE, reason_codes=("false_positive",), note="", reviewer=lc.ALICE
        )
    lc.claim(runtime, appeal_id, lc.ALICE)
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError) as bad:
        review.decide(
            uow, appeal_id, Decision.APPROVE, reason_codes=("risk_confirmed",), note="", reviewer=lc.ALICE
        )
    assert bad.value.field == "reason_codes"
    assert _count(runtime) == before + 1  # only the claim


def test_the_freeze_creator_and_linked_reviewers_may_not_review(runtime: Runtime) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="created the freeze"):
        review.claim(uow, appeal_id, lc.CREATOR)
    with UnitOfWork(runtime) as uow:
        assert review.declare_conflict(uow, "reviewer:rv_alice", "acc_1", "her brother's account", lc.CREATOR)
        uow.commit()
    with UnitOfWork(runtime) as uow, pytest.raises(PermissionDeniedError):
        review.claim(uow, appeal_id, lc.ALICE)
    with UnitOfWork(runtime) as uow, pytest.raises(PermissionDeniedError):
        review.assign(uow, appeal_id, "reviewer:rv_alice", lc.CREATOR)


def test_a_high_severity_release_needs_two_different_approvers(runtime: Runtime) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime, category=ReasonCategory.AML)
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    a = _appeal(runtime, appeal_id)
    assert (a.status, a.first_approver, a.assignee) == (
        AppealStatus.SECOND_APPROVAL,
        "reviewer:rv_alice",
        None,
    )
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="four eyes"):
        review.claim(uow, appeal_id, lc.ALICE)
    lc.claim(runtime, appeal_id, lc.BOB)
    lc.decide(runtime, appeal_id, lc.BOB)
    assert _appeal(runtime, appeal_id).status is AppealStatus.APPROVED
    with UnitOfWork(runtime, read_only=True) as uow:
        assert verification.get(uow, appeal_id).status == "pending"
        assert freezes.get(uow, freeze_id).status is FreezeStatus.ACTIVE  # second verification first


def test_two_approvals_racing_end_in_one_decision(runtime: Runtime) -> None:
    """Two reviewers try to give the second approval at once: exactly one wins, one entry is written."""
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime, category=ReasonCategory.BLACKLIST))
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    racers = [Actor(ActorKind.REVIEWER, f"rv_{n}") for n in range(4)]
    # Each racer claims the unassigned case and decides in one transaction; the guarded UPDATE on
    # (status, assignee) lets exactly one through.
    barrier = threading.Barrier(len(racers))
    outcomes: list[str] = []

    def race(who: Actor) -> None:
        barrier.wait()
        try:
            with UnitOfWork(runtime) as uow:
                review.claim(uow, appeal_id, who)
                review.decide(
                    uow, appeal_id, Decision.APPROVE, reason_codes=("false_positive",), note="", reviewer=who
                )
                uow.commit()
            outcomes.append("won")
        except ConflictError:
            outcomes.append("lost")

    threads = [threading.Thread(target=race, args=(who,)) for who in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 3 + ["won"]
    with UnitOfWork(runtime, read_only=True) as uow:
        actions = [decode_entry(d)["action"] for _s, d, _c in uow.oplog.entries(account_id="acc_1")]
        humans = [r for r in review.reviews(uow, appeal_id) if r.kind == "human"]
    assert actions.count("appeal.approved") == 1
    assert actions.count("verification.started") == 1
    assert len(humans) == 2
    assert verify_log(runtime).ok


def test_needs_more_info_then_resubmission_reruns_the_pre_review(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime)
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime))
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE, Decision.NEEDS_MORE_INFO, "explanation_unclear")
    a = _appeal(runtime, appeal_id)
    assert a.status is AppealStatus.NEEDS_MORE_INFO
    assert a.idle_expires_at is not None
    clock.advance(timedelta(hours=1))
    with UnitOfWork(runtime) as uow:
        again = appeals.submit(uow, appeal_id, lc.HOLDER)
        uow.commit()
    assert again.status is AppealStatus.RESUBMITTED
    assert again.first_response_due == clock.now() + timedelta(hours=48)
    with UnitOfWork(runtime, read_only=True) as uow:
        kinds = [r.kind for r in review.reviews(uow, appeal_id)]
        (item,) = review.queue(uow)
    assert kinds == ["machine", "human", "machine"]
    assert (item.appeal.id, item.machine) == (appeal_id, Decision.APPROVE)


def test_a_rejected_appeal_may_be_followed_by_a_second_one_then_the_decision_is_final(
    runtime: Runtime,
) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime)
    for round_ in (1, 2):
        appeal_id = lc.submit_appeal(runtime, freeze_id)
        assert _appeal(runtime, appeal_id).round == round_
        lc.claim(runtime, appeal_id, lc.ALICE)
        lc.decide(runtime, appeal_id, lc.ALICE, Decision.REJECT, "insufficient_evidence")
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="final"):
        appeals.open_appeal(
            uow,
            freeze_id,
            explanation="again",
            contact_channel="in_site",
            contact_value=None,
            actor=lc.HOLDER,
        )
