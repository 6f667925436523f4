"""The VIP expedite channel: a few expedited appeals per calendar year, never spent twice."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import vip_expedite
from thawline.domain.appeals import OPEN, Appeal
from thawline.domain.errors import ConflictError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import accounts, appeals
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's expedite quota for one calendar year (UTC)."""

    account_id: str
    year: int
    allowed: int
    used: int

    @property
    def remaining(self) -> int:
        """Expedites left this year."""
        return max(self.allowed - self.used, 0)


def quota(uow: UnitOfWork, account_id: str) -> Quota:
    """The quota for the current year (zero allowed for non-VIP holders)."""
    view = accounts.get(uow, account_id)
    year = uow.runtime.clock.now().year
    used = uow.conn.execute(
        select(vip_expedite.c.used).where(
            vip_expedite.c.account_id == account_id, vip_expedite.c.year == year
        )
    ).scalar()
    allowed = uow.runtime.settings.vip_expedites_per_year if view.vip_tier > 0 else 0
    return Quota(account_id, year, allowed, int(used or 0))


def expedite(uow: UnitOfWork, appeal_id: str, actor: Actor) -> Quota:
    """Move an open appeal to the front of the queue, spending one of the year's expedites."""
    current: Appeal = appeals.get(uow, appeal_id)
    if current.status not in OPEN:
        raise ConflictError(f"appeal {appeal_id} is {current.status}; only open appeals can be expedited")
    before = quota(uow, current.account_id)
    if before.allowed == 0:
        raise ConflictError("the expedite channel is for VIP holders")
    marked = uow.conn.execute(
        update(appeal_table)
        .where(appeal_table.c.id == appeal_id, appeal_table.c.expedited.is_(False))
        .values(expedited=True, version=appeal_table.c.version + 1)
    )
    if marked.rowcount != 1:
        raise ConflictError(f"appeal {appeal_id} is already expedited")
    _ensure_row(uow, current.account_id, before.year)
    # The conditional UPDATE is the guard: two requests racing cannot both take the last expedite.
    spent = uow.conn.execute(
        update(vip_expedite)
        .where(
            vip_expedite.c.account_id == current.account_id,
            vip_expedite.c.year == before.year,
            vip_expedite.c.used < before.allowed,
        )
        .values(used=vip_expedite.c.used + 1)
    )
    if spent.rowcount != 1:
        raise ConflictError(f"all {before.allowed} expedites of {before.year} are used")
    uow.mark_changed()
    after = quota(uow, current.account_id)
    uow.record(
        LogRecord(
            action="appeal.expedited",
            actor=actor,
            subject=Subject(account_id=current.account_id, freeze_id=current.freeze_id, appeal_id=appeal_id),
            state_before={"expedited": False, "quota_used": after.used - 1},
            state_after={"expedited": True, "quota_used": after.used},
            details={"year": after.year, "allowed": after.allowed},
        )
    )
    return after


def _ensure_row(uow: UnitOfWork, account_id: str, year: int) -> None:
    exists = uow.conn.execute(
        select(vip_expedite.c.used).where(
            vip_expedite.c.account_id == account_id, vip_expedite.c.year == year
        )
    ).first()
    if exists is not None:
        return
    try:
        with uow.conn.begin_nested():  # a concurrent first expedite may insert the row first
            uow.conn.execute(insert(vip_expedite).values(account_id=account_id, year=year, used=0))
    except IntegrityError:
        pass
