"""Staff sign-in and console sessions: the password and TOTP check, the lockout, sign-out.

A session token is 256 random bits in a cookie; only its SHA-256 is stored, so a database reader
cannot sign in as staff. Concurrent sign-ins cannot undercount failures or spend one TOTP code
twice: both are conditional updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, or_, select, update

from thawline.adapters.db.schema import staff_session, staff_user
from thawline.domain import staff as rules
from thawline.domain.errors import InvalidInputError, NotFoundError
from thawline.domain.staff import Permission
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import cookie_sessions, staff
from thawline.services.unit_of_work import UnitOfWork

SESSION_LIFETIME = timedelta(hours=8)
# Who acts when a sign-in fails: nobody has proved who they are yet.
CONSOLE = Actor(ActorKind.SYSTEM, "console")


@dataclass(frozen=True, slots=True)
class StaffSession:
    """A signed-in staff member: who, a CSRF token for forms, an end."""

    id: str
    user: staff.StaffUser
    csrf: str
    expires_at: datetime

    def may(self, permission: Permission) -> bool:
        """Whether the member's roles grant ``permission``."""
        return permission in self.user.permissions


def sign_in(uow: UnitOfWork, username: str, password: str, code: str = "") -> tuple[StaffSession, str] | None:
    """Check the password (and the TOTP code once enrolled); a session and its cookie token, or None.

    Every refusal looks the same: an unknown name, a disabled or locked account, a wrong password, a
    wrong, missing or spent code. A wrong password or code on a live account counts towards the
    lockout and is recorded, so commit the unit of work either way.
    """
    now = uow.runtime.clock.now()
    try:
        row = staff.find(uow, username)
    except (InvalidInputError, NotFoundError):
        staff.password_matches(None, password)  # the same time as for a known name
        return None
    password_ok = staff.password_matches(row.password_hash, password)
    if row.disabled_at is not None or rules.is_locked(row.locked_until, now):
        return None  # not counted: the lock runs its course whatever is tried
    step = staff.totp_step(uow, row, code) if password_ok and row.totp_secret is not None else None
    if not password_ok or (row.totp_secret is not None and step is None):
        _fail(uow, row, now)
        return None
    changes: dict[str, Any] = {"failed_count": 0, "locked_until": None, "last_sign_in_at": now}
    stronger = staff.rehashed(row.password_hash, password)
    if stronger is not None:
        changes["password_hash"] = stronger
    accept = update(staff_user).where(staff_user.c.id == row.id)
    if step is not None:
        changes["totp_last_step"] = step
        accept = accept.where(or_(staff_user.c.totp_last_step.is_(None), staff_user.c.totp_last_step < step))
    if uow.conn.execute(accept.values(**changes)).rowcount != 1:
        _fail(uow, row, now)  # a concurrent sign-in spent the same code first
        return None
    user = staff.user_of(uow.conn.execute(select(staff_user).where(staff_user.c.id == row.id)).one())
    opened = cookie_sessions.open_session(uow, staff_session, "ss_", SESSION_LIFETIME, user_id=user.id)
    session = StaffSession(opened.id, user, opened.csrf, opened.expires_at)
    uow.record(
        LogRecord(
            action="staff.signed_in",
            actor=user.actor,
            subject=Subject(ref=f"staff_session:{opened.id}"),
            details={"second_factor": step is not None},
        )
    )
    return session, opened.token


def _fail(uow: UnitOfWork, row: Row[Any], now: datetime) -> None:
    """Count a failure against the count it was read with; re-read and retry if another came first."""
    for _ in range(10):
        after = rules.after_failure(row.failed_count, now)
        counted = uow.conn.execute(
            update(staff_user)
            .where(staff_user.c.id == row.id, staff_user.c.failed_count == row.failed_count)
            .values(failed_count=after.failures, locked_until=after.locked_until)
        )
        if counted.rowcount == 1:
            break
        row = uow.conn.execute(select(staff_user).where(staff_user.c.id == row.id)).one()
        if rules.is_locked(row.locked_until, now):
            return  # a concurrent failure locked it: nothing more to count
    else:
        return
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="staff.sign_in_failed",
            actor=CONSOLE,
            subject=staff.subject(row.id),
            details={"failures_in_a_row": after.failures or rules.MAX_FAILURES},
        )
    )
    if after.locked_until is not None:
        uow.record(
            LogRecord(
                action="staff.locked_out",
                actor=CONSOLE,
                subject=staff.subject(row.id),
                state_after={"locked_until": after.locked_until.isoformat()},
            )
        )


def current(uow: UnitOfWork, token: str | None) -> StaffSession | None:
    """The live session a cookie names (its member not disabled), or None."""
    row = cookie_sessions.live_row(uow, staff_session, token)
    if row is None:
        return None
    user = staff.user_of(uow.conn.execute(select(staff_user).where(staff_user.c.id == row.user_id)).one())
    if user.disabled:
        return None
    return StaffSession(row.id, user, row.csrf, row.expires_at)


def sign_out(uow: UnitOfWork, session: StaffSession) -> None:
    """End the session (recorded)."""
    cookie_sessions.end(uow, staff_session, session.id)
    uow.record(
        LogRecord(
            action="staff.signed_out",
            actor=session.user.actor,
            subject=Subject(ref=f"staff_session:{session.id}"),
        )
    )
