"""Self-service release for low-risk causes: finishing KYC lifts a kyc_incomplete freeze, no reviewer."""

from __future__ import annotations

from sqlalchemy import update

from thawline.adapters.db.schema import account
from thawline.domain.errors import InvalidInputError
from thawline.domain.freezes import Freeze, FreezeStatus
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import accounts, freezes
from thawline.services.unit_of_work import UnitOfWork

# A freeze whose category's requirements say ``self_service = "finish_kyc"`` ends at this level.
KYC_RANK = {level: i for i, level in enumerate(accounts.KYC_LEVELS)}
RELEASING_LEVEL = "full"


def update_kyc(uow: UnitOfWork, account_id: str, level: str, actor: Actor) -> list[Freeze]:
    """Record the account's new KYC level; reaching full KYC releases its finish-KYC freezes.

    Only an actual change to full releases anything: repeating "full" is not a new KYC event.
    """
    if level not in KYC_RANK:
        raise InvalidInputError(
            f"kyc_level must be one of {', '.join(accounts.KYC_LEVELS)}", field="kyc_level"
        )
    view = accounts.get(uow, account_id)
    if level == view.kyc_level:
        return []  # nothing new happened: a repeated update releases nothing
    uow.conn.execute(update(account).where(account.c.id == account_id).values(kyc_level=level))
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="account.kyc_updated",
            actor=actor,
            subject=Subject(account_id=account_id),
            state_before={"kyc_level": view.kyc_level},
            state_after={"kyc_level": level},
        )
    )
    if level != RELEASING_LEVEL:
        return []
    matrix = uow.runtime.appeal_requirements
    return [
        freezes.end(
            uow,
            f,
            FreezeStatus.RELEASED,
            actor,
            "self-service: KYC completed",
            details={"self_service": True},
        )
        for f in freezes.list_freezes(uow, account_id, active_only=True)
        # A cause configured as high severity is never lifted without people, whatever the matrix says.
        if matrix.for_category(f.category).self_service == "finish_kyc"
        and f.category not in uow.runtime.high_severity
    ]
