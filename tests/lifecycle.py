"""Builders for the freeze → appeal → review → release lifecycle through the service layer."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from tests.files import pdf
from thawline.domain.appeals import MaterialKind
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.domain.review import REASON_CODES, Decision, FlaggedTransaction
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, appeals, freezes, review, verification
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

HOLDER = Actor(ActorKind.HOLDER, "holder")
CREATOR = Actor(ActorKind.REVIEWER, "rv_creator")
ALICE = Actor(ActorKind.REVIEWER, "rv_alice")
BOB = Actor(ActorKind.REVIEWER, "rv_bob")
PHONE = "13800138000"
T1_AT = datetime.fromisoformat("2025-12-31T09:00:00+00:00")


def register(
    runtime: Runtime, account_id: str = "acc_1", *, vip: int = 0, kyc: str = "basic", phone: str = PHONE
) -> None:
    """Register an account with a verified phone."""
    with UnitOfWork(runtime) as uow:
        accounts.register(
            uow,
            accounts.RegisterAccount(account_id, "韩梅梅", phone=phone, vip_tier=vip, kyc_level=kyc),
            CREATOR,
        )
        uow.commit()


def freeze(
    runtime: Runtime,
    account_id: str = "acc_1",
    category: ReasonCategory = ReasonCategory.MANUAL,
    *,
    by: Actor = CREATOR,
    expires_at: datetime | None = None,
    review_by: datetime | None = None,
    transactions: tuple[FlaggedTransaction, ...] = (),
) -> str:
    """Freeze an account fully; returns the freeze id."""
    with UnitOfWork(runtime) as uow:
        made, _ = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                account_id,
                Restriction(FreezeScope.FULL),
                category,
                ("CODE_1",),
                SourceKind.REVIEWER,
                by.id,
                "terms §4",
                "internal reason",
                "holder reason",
                expires_at=expires_at,
                review_by=review_by,
                transactions=transactions,
            ),
            by,
        )
        uow.commit()
    return made.id


def flagged_hf(runtime: Runtime, account_id: str = "acc_1") -> str:
    """A high-frequency freeze flagging T1 (CNY 88.50, order ORD-1)."""
    return freeze(
        runtime,
        account_id,
        ReasonCategory.HIGH_FREQUENCY,
        transactions=(FlaggedTransaction("T1", Decimal("88.50"), "CNY", T1_AT, "ORD-1"),),
    )


def submit_appeal(runtime: Runtime, freeze_id: str, *, voucher: appeals.VoucherData | None = None) -> str:
    """Open an appeal with every material its category needs and submit it."""
    with UnitOfWork(runtime) as uow:
        made, _ = appeals.open_appeal(
            uow,
            freeze_id,
            explanation="These were my own payments.",
            contact_channel="phone",
            contact_value=PHONE,
            actor=HOLDER,
        )
        check = appeals.completeness(uow, made.id)
        for kind in check.required_materials:
            ids = check.flagged_transactions if kind is MaterialKind.TRANSACTION_VOUCHER else ()
            appeals.add_material(
                uow,
                made.id,
                kind=kind,
                data=pdf(kind.value),
                transaction_ids=ids,
                actor=HOLDER,
                declared=voucher if kind is MaterialKind.TRANSACTION_VOUCHER else None,
            )
        appeals.submit(uow, made.id, HOLDER)
        uow.commit()
    return made.id


def claim(runtime: Runtime, appeal_id: str, who: Actor) -> None:
    """``who`` claims the case."""
    with UnitOfWork(runtime) as uow:
        review.claim(uow, appeal_id, who)
        uow.commit()


def decide(
    runtime: Runtime, appeal_id: str, who: Actor, decision: Decision = Decision.APPROVE, code: str = ""
) -> None:
    """``who`` decides a case they hold."""
    codes = (code or sorted(REASON_CODES[decision])[0],)
    with UnitOfWork(runtime) as uow:
        review.decide(uow, appeal_id, decision, reason_codes=codes, note="checked", reviewer=who)
        uow.commit()


def last_code(runtime: Runtime, account_id: str = "acc_1") -> str:
    """The newest code the local SMS carrier delivered to the account."""
    text = runtime.sms.messages(account_id)[-1].text  # type: ignore[attr-defined]
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def pass_sms(runtime: Runtime, appeal_id: str) -> None:
    """Request a code and enter it."""
    with UnitOfWork(runtime) as uow:
        verification.send_code(uow, appeal_id, HOLDER)
        uow.commit()
    with UnitOfWork(runtime) as uow:
        assert verification.check_code(uow, appeal_id, last_code(runtime), HOLDER).passed
        uow.commit()


def pass_face(runtime: Runtime, appeal_id: str, *, passed: bool = True) -> None:
    """Start a face session and deliver the provider's result."""
    with UnitOfWork(runtime) as uow:
        view, _url = verification.start_face(uow, appeal_id, HOLDER)
        uow.commit()
    assert view.face_session
    with UnitOfWork(runtime) as uow:
        verification.face_result(uow, view.face_session, passed=passed, score=0.97, provider_ref="local")
        uow.commit()
