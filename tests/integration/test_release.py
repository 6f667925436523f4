"""Second verification (SMS code, face), release into probation, and self-service KYC release."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests import lifecycle as lc
from thawline.adapters.db.schema import release_verification
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.freezes import Direction, FreezeStatus, Operation, ReasonCategory
from thawline.oplog.entry import decode_entry
from thawline.services import freezes, selfservice, timeline, verification
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log


def _approved(runtime: Runtime, category: ReasonCategory = ReasonCategory.MANUAL) -> tuple[str, str]:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime, category=category)
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    return freeze_id, appeal_id


def _actions(runtime: Runtime) -> list[str]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries(account_id="acc_1")]


def _send(runtime: Runtime, appeal_id: str) -> None:
    with UnitOfWork(runtime) as uow:
        verification.send_code(uow, appeal_id, lc.HOLDER)
        uow.commit()


def _check(runtime: Runtime, appeal_id: str, code: str) -> verification.CodeCheck:
    with UnitOfWork(runtime) as uow:
        result = verification.check_code(uow, appeal_id, code, lc.HOLDER)
        uow.commit()
    return result


def _authorize(runtime: Runtime, amount: str, currency: str = "CNY") -> str:
    with UnitOfWork(runtime, read_only=True) as uow:
        return freezes.authorize(uow, "acc_1", Operation(Direction.DEBIT, Decimal(amount), currency)).code


def test_release_after_sms_and_face_then_probation_denies_large_transactions(
    runtime: Runtime, clock: FakeClock
) -> None:
    freeze_id, appeal_id = _approved(runtime)
    assert _authorize(runtime, "1") == "frozen"
    lc.pass_sms(runtime, appeal_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, freeze_id).status is FreezeStatus.ACTIVE  # face still missing
    lc.pass_face(runtime, appeal_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, freeze_id).status is FreezeStatus.RELEASED
        assert verification.get(uow, appeal_id).status == "completed"
    assert _authorize(runtime, "50000") == "allowed"
    assert _authorize(runtime, "50000.01") == "probation"
    assert _authorize(runtime, "10", "JPY") == "probation"  # no limit known for JPY: denied, not guessed
    assert _actions(runtime)[-4:] == [
        "verification.face_passed",
        "verification.completed",
        "freeze.released",
        "probation.started",
    ]
    clock.advance(timedelta(hours=24))
    assert _authorize(runtime, "80000") == "allowed"  # the deadline itself is authoritative
    assert verify_log(runtime).ok


def test_the_code_is_stored_hashed_expires_and_allows_five_attempts(
    runtime: Runtime, clock: FakeClock
) -> None:
    _freeze_id, appeal_id = _approved(runtime)
    _send(runtime, appeal_id)
    code = lc.last_code(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        row = uow.conn.execute(select(release_verification)).one()
    assert code.encode() not in bytes(row.otp_hash)
    assert len(bytes(row.otp_hash)) == 32
    assert code not in str(_actions(runtime))
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        result = _check(runtime, appeal_id, wrong)
        assert (result.passed, result.attempts_left) == (False, left)
    assert _actions(runtime).count("verification.code_rejected") == 5
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="too many"):
        verification.check_code(uow, appeal_id, code, lc.HOLDER)  # even the right code is dead now
    clock.advance(timedelta(seconds=61))
    _send(runtime, appeal_id)
    clock.advance(timedelta(minutes=5))
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="expired"):
        verification.check_code(uow, appeal_id, lc.last_code(runtime), lc.HOLDER)
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError) as bad:
        verification.check_code(uow, appeal_id, "12ab56", lc.HOLDER)
    assert bad.value.field == "code"


def test_resends_are_throttled(runtime: Runtime, clock: FakeClock) -> None:
    _freeze_id, appeal_id = _approved(runtime)
    _send(runtime, appeal_id)
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="try again in 60 s"):
        verification.send_code(uow, appeal_id, lc.HOLDER)
    for _ in range(4):
        clock.advance(timedelta(seconds=60))
        _send(runtime, appeal_id)
    clock.advance(timedelta(seconds=60))
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="recently"):
        verification.send_code(uow, appeal_id, lc.HOLDER)  # five codes in this hour already
    clock.advance(timedelta(hours=1))
    _send(runtime, appeal_id)
    assert len(runtime.sms.messages("acc_1")) == 6  # type: ignore[attr-defined]
    assert "+86138****8000" in runtime.settings.sms_outbox_file.read_text()
    assert "13800138000" not in runtime.settings.sms_outbox_file.read_text()


def test_a_failed_face_match_is_recorded_and_a_replayed_result_changes_nothing(runtime: Runtime) -> None:
    freeze_id, appeal_id = _approved(runtime)
    with UnitOfWork(runtime) as uow:
        failing, _url = verification.start_face(uow, appeal_id, lc.HOLDER)
        uow.commit()
    for _ in range(2):  # the provider delivers the failure twice
        with UnitOfWork(runtime) as uow:
            verification.face_result(
                uow, failing.face_session or "", passed=False, score=0.2, provider_ref="p0"
            )
            uow.commit()
    with UnitOfWork(runtime, read_only=True) as uow:
        view = verification.get(uow, appeal_id)
    assert (view.face_verified, view.face_session) == (False, None)
    lc.pass_sms(runtime, appeal_id)
    with UnitOfWork(runtime) as uow:
        started, _url = verification.start_face(uow, appeal_id, lc.HOLDER)
        uow.commit()
    session = started.face_session
    assert session
    for _ in range(2):
        with UnitOfWork(runtime) as uow:
            verification.face_result(uow, session, passed=True, score=0.99, provider_ref="p1")
            uow.commit()
    actions = _actions(runtime)
    assert actions.count("verification.face_failed") == 1
    assert actions.count("verification.face_passed") == 1
    assert actions.count("freeze.released") == 1
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, freeze_id).status is FreezeStatus.RELEASED
        with pytest.raises(ConflictError):
            verification.send_code(uow, appeal_id, lc.HOLDER)


def test_completing_kyc_releases_a_kyc_freeze_without_a_reviewer(runtime: Runtime) -> None:
    lc.register(runtime)
    kyc = lc.freeze(runtime, category=ReasonCategory.KYC_INCOMPLETE)
    other = lc.freeze(runtime, category=ReasonCategory.MANUAL)
    with UnitOfWork(runtime) as uow:
        assert selfservice.update_kyc(uow, "acc_1", "basic", lc.HOLDER) == []
        uow.commit()
    with UnitOfWork(runtime) as uow:
        released = selfservice.update_kyc(uow, "acc_1", "full", lc.HOLDER)
        uow.commit()
    assert [f.id for f in released] == [kyc]
    with UnitOfWork(runtime, read_only=True) as uow:
        assert freezes.get(uow, other).status is FreezeStatus.ACTIVE
    assert _actions(runtime)[-2:] == ["account.kyc_updated", "freeze.released"]
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError):
        selfservice.update_kyc(uow, "acc_1", "platinum", lc.HOLDER)


def test_the_holder_timeline_tells_the_way_back_plainly_and_hides_internal_steps(runtime: Runtime) -> None:
    lc.register(runtime)
    freeze_id = lc.freeze(runtime, category=ReasonCategory.AML)
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    lc.claim(runtime, appeal_id, lc.BOB)
    lc.decide(runtime, appeal_id, lc.BOB)
    lc.pass_sms(runtime, appeal_id)
    lc.pass_face(runtime, appeal_id)
    with UnitOfWork(runtime, read_only=True) as uow:
        holder = timeline.timeline(uow, "acc_1", timeline.Audience.HOLDER, "zh-CN")
        staff = timeline.timeline(uow, "acc_1", timeline.Audience.STAFF, "en")
    shown = [i.action for i in holder]
    assert "appeal.pre_reviewed" not in shown
    assert "appeal.first_approval" not in shown
    assert shown[-4:] == [
        "verification.face_passed",
        "verification.completed",
        "freeze.released",
        "probation.started",
    ]
    assert holder[1].summary == "账户受限：您的账户因例行合规审查暂时受限，审查完成后将通知您。"
    assert "internal reason" not in str([i.summary for i in holder])
    assert all(i.entry == {} for i in holder)
    staff_text = {i.action: i.summary for i in staff}
    assert staff_text["appeal.first_approval"] == "First of two approvals given (evidence_sufficient)"
    assert staff_text["appeal.pre_reviewed"].startswith("Machine pre-review recorded")
