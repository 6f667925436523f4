"""The machine pre-review: the first half of the dual review, run when an appeal is (re)submitted."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from sqlalchemy import func, insert, select

from thawline.adapters.db.schema import appeal_review
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.appeals import Appeal
from thawline.domain.freezes import Freeze, FreezeStatus
from thawline.domain.review import Decision, DeclaredVoucher, PreReview, check_vouchers, recommend
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import freezes
from thawline.services.unit_of_work import UnitOfWork

MACHINE = Actor(ActorKind.SYSTEM, "pre_review")
MACHINE_REF = MACHINE.ref


def run(
    uow: UnitOfWork,
    appeal: Appeal,
    frozen: Freeze,
    *,
    vouchers: list[DeclaredVoucher],
    filed_by_holder_side: bool,
    contact_verified: bool,
) -> PreReview:
    """Check what a machine can check, record its opinion, and return it."""
    others = uow.conn.execute(
        select(func.count())
        .select_from(freeze_table)
        .where(
            freeze_table.c.account_id == appeal.account_id,
            freeze_table.c.status == FreezeStatus.ACTIVE.value,
            freeze_table.c.id != frozen.id,
        )
    ).scalar_one()
    opinion = recommend(
        complete=True,  # submit refuses incomplete appeals before we get here
        voucher_findings=check_vouchers(freezes.flagged(uow, frozen.id), vouchers),
        filed_by_holder_side=filed_by_holder_side,
        contact_verified=contact_verified,
        other_active_freezes=int(others),
        high_severity=frozen.category in uow.runtime.high_severity,
    )
    findings: list[dict[str, Any]] = [f.as_json() for f in opinion.findings]
    uow.conn.execute(
        insert(appeal_review).values(
            id="rev_" + secrets.token_hex(8),
            appeal_id=appeal.id,
            reviewer=MACHINE_REF,
            kind="machine",
            decision=opinion.recommendation.value,
            reason_codes=" ".join(opinion.reason_codes),
            note="",
            confidence=opinion.confidence,
            findings=orjson.dumps(findings).decode(),
            agrees_with_machine=None,
            created_at=uow.runtime.clock.now(),
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="appeal.pre_reviewed",
            actor=MACHINE,
            subject=Subject(account_id=appeal.account_id, freeze_id=appeal.freeze_id, appeal_id=appeal.id),
            reason_codes=opinion.reason_codes,
            details={
                "recommendation": opinion.recommendation.value,
                "confidence": str(opinion.confidence),
                "findings": findings,
            },
        )
    )
    return opinion


def latest(uow: UnitOfWork, appeal: Appeal) -> Decision | None:
    """The machine's recommendation on the appeal's current submission, if any."""
    query = select(appeal_review.c.decision).where(
        appeal_review.c.appeal_id == appeal.id, appeal_review.c.kind == "machine"
    )
    if appeal.submitted_at is not None:
        query = query.where(appeal_review.c.created_at >= appeal.submitted_at)
    row = uow.conn.execute(
        query.order_by(appeal_review.c.created_at.desc(), appeal_review.c.id.desc()).limit(1)
    ).first()
    return None if row is None else Decision(row.decision)
