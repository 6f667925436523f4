"""The holder's in-site messages (站内信) with read receipts, staff notices, and notification preferences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from thawline.adapters.db.schema import inbox_message, notification_preference, staff_notice
from thawline.domain import notifications as n
from thawline.domain.errors import NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import accounts
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Message:
    """One in-site message or staff notice."""

    id: str
    template: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    source_seq: int | None
    mandatory: bool = True
    appeal_id: str | None = None
    account_id: str | None = None


def _message(r: Row[Any]) -> Message:
    m = r._mapping
    return Message(
        id=r.id,
        template=r.template,
        title=r.title,
        body=r.body,
        created_at=r.created_at,
        read_at=r.read_at,
        source_seq=r.source_seq,
        mandatory=bool(m.get("mandatory", True)),
        appeal_id=m.get("appeal_id"),
        account_id=m.get("account_id"),
    )


def messages(
    uow: UnitOfWork, account_id: str, *, unread_only: bool = False, limit: int = 50
) -> list[Message]:
    """The holder's messages, newest first."""
    accounts.get(uow, account_id)
    t = inbox_message
    query = select(t).where(t.c.account_id == account_id).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
    if unread_only:
        query = query.where(t.c.read_at.is_(None))
    return [_message(r) for r in uow.conn.execute(query)]


def unread_count(uow: UnitOfWork, account_id: str) -> int:
    """How many of the holder's messages are unread."""
    t = inbox_message
    query = select(func.count()).select_from(t).where(t.c.account_id == account_id, t.c.read_at.is_(None))
    return int(uow.conn.execute(query).scalar_one())


def mark_read(uow: UnitOfWork, account_id: str, message_id: str, actor: Actor) -> Message:
    """Record that the holder read a message (a read receipt); reading it again changes nothing."""
    t = inbox_message
    row = uow.conn.execute(select(t).where(t.c.id == message_id, t.c.account_id == account_id)).first()
    if row is None:
        raise NotFoundError(f"message {message_id} is not in account {account_id}'s inbox")
    if row.read_at is not None:
        return _message(row)
    now = uow.runtime.clock.now()
    uow.conn.execute(update(t).where(t.c.id == message_id, t.c.read_at.is_(None)).values(read_at=now))
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="inbox.read",
            actor=actor,
            subject=Subject(account_id=account_id, ref=f"inbox:{message_id}"),
            details={"template": row.template, "source_seq": row.source_seq},
        )
    )
    return _message(uow.conn.execute(select(t).where(t.c.id == message_id)).one())


def notices(
    uow: UnitOfWork, recipients: list[str], *, unread_only: bool = False, limit: int = 50
) -> list[Message]:
    """Staff notices addressed to any of ``recipients`` (a reviewer and their roles), newest first."""
    t = staff_notice
    query = (
        select(t).where(t.c.recipient.in_(recipients)).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
    )
    if unread_only:
        query = query.where(t.c.read_at.is_(None))
    return [_message(r) for r in uow.conn.execute(query)]


def mark_notice_read(uow: UnitOfWork, notice_id: str, recipients: list[str], actor: Actor) -> Message:
    """Acknowledge a staff notice."""
    t = staff_notice
    row = uow.conn.execute(select(t).where(t.c.id == notice_id, t.c.recipient.in_(recipients))).first()
    if row is None:
        raise NotFoundError(f"notice {notice_id} is not addressed to you")
    if row.read_at is None:
        uow.conn.execute(update(t).where(t.c.id == notice_id).values(read_at=uow.runtime.clock.now()))
        uow.mark_changed()
        uow.record(
            LogRecord(
                action="staff_notice.read",
                actor=actor,
                subject=Subject(
                    account_id=row.account_id, appeal_id=row.appeal_id, ref=f"notice:{notice_id}"
                ),
            )
        )
    return _message(uow.conn.execute(select(t).where(t.c.id == notice_id)).one())


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the holder chose. Mandatory notices (freeze, decision, release, codes) ignore opt-outs."""

    email_opt_out: bool = False
    sms_opt_out: bool = False
    quiet_hours: n.QuietHours | None = None


def preferences(uow: UnitOfWork, account_id: str) -> Preferences:
    """The holder's notification preferences (defaults when never set)."""
    accounts.get(uow, account_id)
    r = uow.conn.execute(
        select(notification_preference).where(notification_preference.c.account_id == account_id)
    ).first()
    if r is None:
        return Preferences()
    quiet = None
    if r.quiet_start is not None and r.quiet_end is not None:
        quiet = n.QuietHours(r.quiet_start, r.quiet_end, r.time_zone)
    return Preferences(bool(r.email_opt_out), bool(r.sms_opt_out), quiet)


def set_preferences(uow: UnitOfWork, account_id: str, prefs: Preferences, actor: Actor) -> Preferences:
    """Store the holder's choices (recorded); an unchanged submission changes nothing."""
    before = preferences(uow, account_id)
    if before == prefs:
        return before
    q = prefs.quiet_hours
    values = {
        "email_opt_out": prefs.email_opt_out,
        "sms_opt_out": prefs.sms_opt_out,
        "quiet_start": q.start if q else None,
        "quiet_end": q.end if q else None,
        "time_zone": q.zone if q else "UTC",
        "updated_at": uow.runtime.clock.now(),
    }
    t = notification_preference
    exists = uow.conn.execute(select(t.c.account_id).where(t.c.account_id == account_id)).first()
    if exists is None:
        uow.conn.execute(insert(t).values(account_id=account_id, **values))
    else:
        uow.conn.execute(update(t).where(t.c.account_id == account_id).values(**values))
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="notification.preferences_changed",
            actor=actor,
            subject=Subject(account_id=account_id),
            state_after={
                "email_opt_out": prefs.email_opt_out,
                "sms_opt_out": prefs.sms_opt_out,
                "quiet_hours": None
                if q is None
                else f"{q.start // 60:02d}:{q.start % 60:02d}-{q.end // 60:02d}:{q.end % 60:02d} {q.zone}",
            },
        )
    )
    return prefs
