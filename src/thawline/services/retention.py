"""Retention of the operation log: a minimum age (default 5 years) that legal holds extend.

Thawline never deletes log entries itself; the triggers refuse it. Retention answers "may this
range be archived and removed by an operator?", and the answer is no while it is younger than the
retention period or under a legal hold.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update

from thawline.adapters.db.schema import legal_hold, oplog_bundle
from thawline.domain.errors import ConflictError, NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold on one account's records, or on the whole log."""

    id: str
    account_id: str | None
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """How long the log keeps what it holds."""

    retention_days: int
    entries: int
    oldest_entry_at: datetime | None
    keep_until: datetime | None
    active_holds: list[Hold]
    eligible_before: datetime | None  # entries older than this are past retention; None while the log is held
    held_accounts: list[str]  # their entries stay, whatever their age


def place_hold(uow: UnitOfWork, account_id: str | None, reason: str, actor: Actor) -> Hold:
    """Place a legal hold (on an account, or the whole log when ``account_id`` is None)."""
    hold = Hold("lh_" + secrets.token_hex(6), account_id, reason, actor.id, uow.runtime.clock.now(), None)
    uow.conn.execute(
        insert(legal_hold).values(
            id=hold.id,
            account_id=account_id,
            reason=reason,
            created_by=actor.id,
            created_at=hold.created_at,
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="legal_hold.placed",
            actor=actor,
            subject=Subject(account_id=account_id, ref=f"legal_hold:{hold.id}"),
            state_after={"active": True},
        )
    )
    return hold


def release_hold(uow: UnitOfWork, hold_id: str, actor: Actor) -> None:
    """Release a legal hold; retention falls back to the configured period."""
    row = uow.conn.execute(select(legal_hold).where(legal_hold.c.id == hold_id)).first()
    if row is None:
        raise NotFoundError(f"legal hold {hold_id} does not exist")
    if row.released_at is not None:
        raise ConflictError(f"legal hold {hold_id} is already released")
    uow.conn.execute(
        update(legal_hold).where(legal_hold.c.id == hold_id).values(released_at=uow.runtime.clock.now())
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="legal_hold.released",
            actor=actor,
            subject=Subject(account_id=row.account_id, ref=f"legal_hold:{hold_id}"),
            state_before={"active": True},
            state_after={"active": False},
        )
    )


def holds(uow: UnitOfWork, *, active_only: bool = True) -> list[Hold]:
    """Legal holds, oldest first."""
    query = select(legal_hold).order_by(legal_hold.c.created_at)
    if active_only:
        query = query.where(legal_hold.c.released_at.is_(None))
    return [
        Hold(r.id, r.account_id, r.reason, r.created_by, r.created_at, r.released_at)
        for r in uow.conn.execute(query)
    ]


def status(uow: UnitOfWork) -> RetentionStatus:
    """Retention period, oldest entry, and the date before which entries are past retention."""
    days = uow.runtime.settings.retention_days
    count = uow.oplog.count()
    oldest = uow.conn.execute(select(func.min(oplog_bundle.c.ts))).scalar()
    now = uow.runtime.clock.now()
    active = holds(uow)
    whole_log_held = any(h.account_id is None for h in active)
    return RetentionStatus(
        retention_days=days,
        entries=int(count),
        oldest_entry_at=oldest,
        keep_until=None if oldest is None or whole_log_held else oldest + timedelta(days=days),
        active_holds=active,
        eligible_before=None if whole_log_held else now - timedelta(days=days),
        held_accounts=sorted({h.account_id for h in active if h.account_id is not None}),
    )
