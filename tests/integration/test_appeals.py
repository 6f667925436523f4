"""Appeals: the checklist says exactly what is missing, and an incomplete appeal cannot be submitted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.files import pdf, png
from thawline.domain.appeals import AppealStatus, MaterialKind
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, decode_entry
from thawline.services import accounts, appeals, freezes
from thawline.services.appeals import IncompleteAppealError
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

HOLDER = Actor(ActorKind.HOLDER, "acc_1")
RULE = Actor(ActorKind.RULE, "high_frequency")


def _frozen(runtime: Runtime, category: ReasonCategory = ReasonCategory.HIGH_FREQUENCY) -> str:
    with UnitOfWork(runtime) as uow:
        accounts.register(uow, accounts.RegisterAccount("acc_1", "李雷", phone="13800138000"), RULE)
        made, _ = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                "acc_1",
                Restriction(FreezeScope.FULL),
                category,
                ("HF_10MIN",),
                SourceKind.RULE,
                "high_frequency",
                "rules §9",
                "42 payments in 10 min",
                "Many payments in a short time",
                rule_version=3,
                evidence=(
                    EvidenceRef("transaction", "T1"),
                    EvidenceRef("transaction", "T7"),
                    EvidenceRef("ip", "ip_1"),
                ),
            ),
            RULE,
        )
        uow.commit()
    return made.id


def _open(runtime: Runtime, freeze_id: str, explanation: str = "These were payroll payments.") -> str:
    with UnitOfWork(runtime) as uow:
        made, _created = appeals.open_appeal(
            uow,
            freeze_id,
            explanation=explanation,
            contact_channel="phone",
            contact_value="+86 138 0013 8000",
            actor=HOLDER,
        )
        uow.commit()
    return made.id


def _add(
    runtime: Runtime, appeal_id: str, kind: MaterialKind, data: bytes, txns: tuple[str, ...] = ()
) -> None:
    with UnitOfWork(runtime) as uow:
        appeals.add_material(uow, appeal_id, kind=kind, data=data, transaction_ids=txns, actor=HOLDER)
        uow.commit()


def _messages(runtime: Runtime, appeal_id: str, lang: str = "en") -> list[str]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [m.message(lang) for m in appeals.completeness(uow, appeal_id, lang).missing]


def test_the_checklist_names_each_missing_voucher_and_submission_waits_for_it(
    runtime: Runtime, clock: FakeClock
) -> None:
    appeal_id = _open(runtime, _frozen(runtime), explanation="")
    assert _messages(runtime, appeal_id) == [
        "the explanation is missing",
        "missing: a signed explanation letter",
        "voucher missing for transactions T1 and T7",
    ]
    _add(runtime, appeal_id, MaterialKind.EXPLANATION_LETTER, pdf("I pay my staff on the 25th"))
    _add(runtime, appeal_id, MaterialKind.TRANSACTION_VOUCHER, png(), ("T1",))
    assert _messages(runtime, appeal_id, "zh-CN")[-1] == "缺少以下交易的交易凭证：T7"
    with UnitOfWork(runtime) as uow, pytest.raises(IncompleteAppealError) as refused:
        appeals.submit(uow, appeal_id, HOLDER)
    assert [m.code for m in refused.value.missing] == ["explanation_missing", "voucher_missing"]
    with UnitOfWork(runtime, read_only=True) as uow:
        assert appeals.get(uow, appeal_id).status is AppealStatus.DRAFT


def test_a_complete_appeal_is_submitted_with_a_48_hour_first_response_deadline(
    runtime: Runtime, clock: FakeClock
) -> None:
    appeal_id = _open(runtime, _frozen(runtime))
    _add(runtime, appeal_id, MaterialKind.EXPLANATION_LETTER, "工资发放说明：每月25日。".encode())
    _add(runtime, appeal_id, MaterialKind.TRANSACTION_VOUCHER, pdf(), ("T1", "T7"))
    with UnitOfWork(runtime) as uow:
        submitted = appeals.submit(uow, appeal_id, HOLDER)
        uow.commit()
    assert submitted.status is AppealStatus.SUBMITTED
    assert submitted.first_response_due == clock.now() + timedelta(hours=48)
    with UnitOfWork(runtime, read_only=True) as uow:
        actions = [decode_entry(d)["action"] for _s, d, _c in uow.oplog.entries(account_id="acc_1")]
        (voucher,) = [
            m for m in appeals.materials(uow, appeal_id) if m.kind is MaterialKind.TRANSACTION_VOUCHER
        ]
        stored = runtime.blobs.get(voucher.sha256)
    assert actions[-5:] == [
        "appeal.opened",
        "appeal.material_added",
        "appeal.material_added",
        "appeal.submitted",
        "appeal.pre_reviewed",  # the machine's half of the dual review, in the same transaction
    ]
    assert stored == pdf()
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError):
        appeals.add_material(
            uow, appeal_id, kind=MaterialKind.OTHER, data=png(), transaction_ids=(), actor=HOLDER
        )


def test_one_open_appeal_per_freeze_and_withdrawal_frees_the_slot(runtime: Runtime) -> None:
    freeze_id = _frozen(runtime)
    first = _open(runtime, freeze_id)
    with pytest.raises(ConflictError, match="already has an open appeal"):
        _open(runtime, freeze_id, explanation="another appeal")
    with UnitOfWork(runtime) as uow:
        appeals.withdraw(uow, first, HOLDER)
        uow.commit()
    with UnitOfWork(runtime) as uow, pytest.raises(ConflictError, match="withdrawn"):
        appeals.withdraw(uow, first, HOLDER)
    assert _open(runtime, freeze_id) != first


def test_the_contact_phone_must_be_the_verified_one(runtime: Runtime) -> None:
    freeze_id = _frozen(runtime)
    with UnitOfWork(runtime) as uow, pytest.raises(InvalidInputError) as caught:
        appeals.open_appeal(
            uow,
            freeze_id,
            explanation="x",
            contact_channel="phone",
            contact_value="13900139000",
            actor=HOLDER,
        )
    assert caught.value.field == "contact.value"


def test_a_file_that_is_not_what_it_claims_is_refused_and_nothing_is_recorded(runtime: Runtime) -> None:
    appeal_id = _open(runtime, _frozen(runtime))
    with UnitOfWork(runtime, read_only=True) as uow:
        before = uow.oplog.count()
    with pytest.raises(InvalidInputError) as caught:
        _add(runtime, appeal_id, MaterialKind.BANK_STATEMENT, b"PK\x03\x04 not really a pdf")
    assert caught.value.field == "file"
    with pytest.raises(InvalidInputError, match="transactions"):
        _add(runtime, appeal_id, MaterialKind.TRANSACTION_VOUCHER, pdf())
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.count() == before
        assert appeals.materials(uow, appeal_id) == []


def test_kyc_freezes_are_lifted_by_the_holder_not_appealed(runtime: Runtime) -> None:
    freeze_id = _frozen(runtime, ReasonCategory.KYC_INCOMPLETE)
    with pytest.raises(ConflictError, match="finish_kyc"):
        _open(runtime, freeze_id)


def test_retried_requests_change_nothing(runtime: Runtime) -> None:
    freeze_id = _frozen(runtime)
    appeal_id = _open(runtime, freeze_id)
    assert _open(runtime, freeze_id) == appeal_id  # same form again: the same draft
    _add(runtime, appeal_id, MaterialKind.TRANSACTION_VOUCHER, pdf(), ("T1", "T7"))
    with UnitOfWork(runtime, read_only=True) as uow:
        entries = uow.oplog.count()
    _add(runtime, appeal_id, MaterialKind.TRANSACTION_VOUCHER, pdf(), ("T1", "T7"))
    with UnitOfWork(runtime, read_only=True) as uow:
        assert uow.oplog.count() == entries
        assert len(appeals.materials(uow, appeal_id)) == 1
    with pytest.raises(ConflictError, match="already has an open appeal"):
        _open(runtime, freeze_id, explanation="a different story")
