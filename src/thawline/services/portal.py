"""The holder portal's way in: one-time links issued through the integrator's API, and the sessions they open.

A link is good once and for ``LINK_LIFETIME``; entering it opens a session bound to that one account
(the holder sees nothing else). Tokens are 256 random bits; only their SHA-256 is stored, so a
database reader cannot sign in as a holder.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import portal_link, portal_session
from thawline.domain.appeals import Appeal
from thawline.domain.errors import PermissionDeniedError
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import accounts, appeals, cookie_sessions
from thawline.services.unit_of_work import UnitOfWork

LINK_LIFETIME = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class PortalSession:
    """A signed-in holder: one account, a CSRF token for forms, an end."""

    id: str
    account_id: str
    csrf: str
    expires_at: datetime


def issue_link(uow: UnitOfWork, account_id: str, actor: Actor) -> tuple[str, str, datetime]:
    """A one-time entry link for the account's holder: (link id, token, expiry). Recorded."""
    accounts.get(uow, account_id)
    now = uow.runtime.clock.now()
    link_id, token = "pl_" + secrets.token_hex(8), secrets.token_urlsafe(32)
    expires = now + LINK_LIFETIME
    uow.conn.execute(
        portal_link.insert().values(
            id=link_id,
            account_id=account_id,
            token_hash=cookie_sessions.digest(token),
            issued_by=actor.ref,
            created_at=now,
            expires_at=expires,
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="portal.link_issued",
            actor=actor,
            subject=Subject(account_id=account_id, ref=f"portal_link:{link_id}"),
            details={"expires_at": expires.isoformat()},
        )
    )
    return link_id, token, expires


def enter(uow: UnitOfWork, token: str) -> tuple[PortalSession, str]:
    """Spend a link: a new session and its cookie token. Unknown, used or expired links are refused alike."""
    now = uow.runtime.clock.now()
    row = uow.conn.execute(
        select(portal_link).where(portal_link.c.token_hash == cookie_sessions.digest(token))
    ).first()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise PermissionDeniedError("this link is not valid any more; ask the app for a new one")
    spent = uow.conn.execute(
        update(portal_link)
        .where(portal_link.c.id == row.id, portal_link.c.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # two tabs raced for the same link: only one gets in
        raise PermissionDeniedError("this link is not valid any more; ask the app for a new one")
    opened = cookie_sessions.open_session(
        uow, portal_session, "ps_", SESSION_LIFETIME, account_id=row.account_id
    )
    session = PortalSession(opened.id, row.account_id, opened.csrf, opened.expires_at)
    uow.record(
        LogRecord(
            action="portal.signed_in",
            actor=Actor(ActorKind.HOLDER, row.account_id),
            subject=Subject(account_id=row.account_id, ref=f"portal_session:{opened.id}"),
            details={"link_id": row.id},
        )
    )
    return session, opened.token


def current(uow: UnitOfWork, session_token: str | None) -> PortalSession | None:
    """The live session a cookie names, or None."""
    row = cookie_sessions.live_row(uow, portal_session, session_token)
    if row is None:
        return None
    return PortalSession(row.id, row.account_id, row.csrf, row.expires_at)


def sign_out(uow: UnitOfWork, session: PortalSession) -> None:
    """End the session (recorded)."""
    cookie_sessions.end(uow, portal_session, session.id)
    uow.record(
        LogRecord(
            action="portal.signed_out",
            actor=Actor(ActorKind.HOLDER, session.account_id),
            subject=Subject(account_id=session.account_id, ref=f"portal_session:{session.id}"),
        )
    )


def latest_appeal(uow: UnitOfWork, freeze_id: str) -> Appeal | None:
    """The newest appeal against a freeze (any status), or None."""
    row = uow.conn.execute(
        select(appeal_table)
        .where(appeal_table.c.freeze_id == freeze_id)
        .order_by(appeal_table.c.round.desc(), appeal_table.c.created_at.desc())
        .limit(1)
    ).first()
    return None if row is None else appeals.from_row(row)
