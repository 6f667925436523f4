"""Browser sessions behind a cookie, shared by the holder portal and the staff console.

The cookie carries 256 random bits; only their SHA-256 is stored, so a database reader cannot
sign in as anyone. Each session has its own CSRF token for forms and a fixed end.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Table, select, update

from thawline.services.unit_of_work import UnitOfWork


def digest(token: str) -> bytes:
    """What is stored of a bearer token."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Opened:
    """A new session: its id, CSRF token and end, and the cookie token (never stored)."""

    id: str
    csrf: str
    expires_at: datetime
    token: str


def open_session(uow: UnitOfWork, table: Table, prefix: str, lifetime: timedelta, **owner: Any) -> Opened:
    """Insert a session row into ``table`` (owner columns given by name); the caller records it."""
    now = uow.runtime.clock.now()
    opened = Opened(
        prefix + secrets.token_hex(8), secrets.token_urlsafe(24), now + lifetime, secrets.token_urlsafe(32)
    )
    uow.conn.execute(
        table.insert().values(
            id=opened.id,
            token_hash=digest(opened.token),
            csrf=opened.csrf,
            created_at=now,
            expires_at=opened.expires_at,
            **owner,
        )
    )
    uow.mark_changed()
    return opened


def live_row(uow: UnitOfWork, table: Table, token: str | None) -> Row[Any] | None:
    """The session row a cookie names, if it has not ended or expired."""
    if not token:
        return None
    row = uow.conn.execute(select(table).where(table.c.token_hash == digest(token))).first()
    if row is None or row.ended_at is not None or row.expires_at <= uow.runtime.clock.now():
        return None
    return row


def end(uow: UnitOfWork, table: Table, session_id: str) -> None:
    """End a session (the caller records it)."""
    uow.conn.execute(
        update(table)
        .where(table.c.id == session_id, table.c.ended_at.is_(None))
        .values(ended_at=uow.runtime.clock.now())
    )
    uow.mark_changed()
