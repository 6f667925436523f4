"""Staff of the console: members with roles, argon2id password hashes and an optional TOTP second
factor. Signing in and the sessions it opens are in ``staff_sessions``.

The log names staff by id (``st_…``), never by username, and never holds a password or a secret.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, select, update

from thawline.adapters.db.schema import staff_session, staff_user
from thawline.domain import staff as rules
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from thawline.domain.staff import Permission, Role
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.vault import derive_keys, open_secret, seal_secret

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory profile (t=3, 64 MiB, p=4)


@cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def password_matches(stored: str | None, password: str) -> bool:
    """Check a password against its argon2 hash; with no hash (an unknown name), spend the same time."""
    try:
        return _hasher.verify(stored or _decoy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def rehashed(stored: str, password: str) -> str | None:
    """A new hash when ``stored`` was made with weaker parameters than today's, else None."""
    return _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None


@dataclass(frozen=True, slots=True)
class StaffUser:
    """A staff member as the console sees them (never their password hash or TOTP secret)."""

    id: str
    username: str
    roles: tuple[Role, ...]
    totp_enrolled: bool
    disabled: bool
    created_at: datetime
    last_sign_in_at: datetime | None
    locked_until: datetime | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        """What the roles permit."""
        return rules.permissions(self.roles)

    @property
    def actor(self) -> Actor:
        """How the log and the review service name this person."""
        return Actor(ActorKind.REVIEWER, self.id)


def user_of(row: Row[Any]) -> StaffUser:
    """The member a ``staff_user`` row describes."""
    return StaffUser(
        id=row.id,
        username=row.username,
        roles=rules.parse_roles(row.roles.split()),
        totp_enrolled=row.totp_secret is not None,
        disabled=row.disabled_at is not None,
        created_at=row.created_at,
        last_sign_in_at=row.last_sign_in_at,
        locked_until=row.locked_until,
    )


def subject(user_id: str) -> Subject:
    """How log entries name a staff member as their subject."""
    return Subject(ref=f"staff:{user_id}")


def find(uow: UnitOfWork, username: str) -> Row[Any]:
    """A member's row by username (NotFoundError; InvalidInputError for a malformed name)."""
    row = uow.conn.execute(
        select(staff_user).where(staff_user.c.username == rules.normalise_username(username))
    ).first()
    if row is None:
        raise NotFoundError(f"no staff member is called {username!r}")
    return row


def create_user(uow: UnitOfWork, username: str, roles: list[str], password: str, actor: Actor) -> StaffUser:
    """Create a staff member with an argon2id password hash (recorded, without the username)."""
    name = rules.normalise_username(username)
    granted = rules.parse_roles(roles)
    rules.check_password(password, name)
    if uow.conn.execute(select(staff_user.c.id).where(staff_user.c.username == name)).first():
        raise ConflictError(f"a staff member is already called {name!r}")
    user_id = "st_" + secrets.token_hex(8)
    uow.conn.execute(
        staff_user.insert().values(
            id=user_id,
            username=name,
            password_hash=_hasher.hash(password),
            roles=" ".join(granted),
            failed_count=0,
            created_by=actor.ref,
            created_at=uow.runtime.clock.now(),
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="staff.created",
            actor=actor,
            subject=subject(user_id),
            state_after={"roles": list(granted), "disabled": False},
        )
    )
    return get(uow, name)


def get(uow: UnitOfWork, username: str) -> StaffUser:
    """A staff member by username."""
    return user_of(find(uow, username))


def list_users(uow: UnitOfWork) -> list[StaffUser]:
    """Every staff member, by username."""
    return [user_of(r) for r in uow.conn.execute(select(staff_user).order_by(staff_user.c.username))]


def display_names(uow: UnitOfWork) -> dict[str, str]:
    """Usernames by how cases, reviews and reports name staff ('reviewer:st_…'), for staff pages only
    (the log and exports keep the id)."""
    return {u.actor.ref: u.username for u in list_users(uow)}


def disable(uow: UnitOfWork, username: str, actor: Actor) -> StaffUser:
    """Disable a staff member: no more sign-ins, and their open sessions end now (recorded)."""
    row = find(uow, username)
    if row.disabled_at is not None:
        raise ConflictError(f"{row.username!r} is already disabled")
    if actor.id == row.id:
        raise PermissionDeniedError("you cannot disable yourself; ask another admin")
    now = uow.runtime.clock.now()
    uow.conn.execute(update(staff_user).where(staff_user.c.id == row.id).values(disabled_at=now))
    _end_sessions(uow, row.id)
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="staff.disabled",
            actor=actor,
            subject=subject(row.id),
            state_before={"disabled": False},
            state_after={"disabled": True},
        )
    )
    return get(uow, row.username)


def _end_sessions(uow: UnitOfWork, user_id: str) -> None:
    uow.conn.execute(
        update(staff_session)
        .where(staff_session.c.user_id == user_id, staff_session.c.ended_at.is_(None))
        .values(ended_at=uow.runtime.clock.now())
    )


def _change(
    uow: UnitOfWork, row: Row[Any], action: str, actor: Actor, *, before: Any, after: Any, **values: Any
) -> StaffUser:
    """Update one member's row and record ``action`` with the before and after state."""
    uow.conn.execute(update(staff_user).where(staff_user.c.id == row.id).values(**values))
    uow.mark_changed()
    uow.record(
        LogRecord(action=action, actor=actor, subject=subject(row.id), state_before=before, state_after=after)
    )
    return get(uow, row.username)


def set_roles(uow: UnitOfWork, username: str, roles: list[str], actor: Actor) -> StaffUser:
    """Replace a member's roles; an admin cannot take away their own admin role (nobody would be left
    to give it back)."""
    row = find(uow, username)
    granted = rules.parse_roles(roles)
    current = rules.parse_roles(row.roles.split())
    if granted == current:
        raise ConflictError(f"{row.username!r} already has exactly these roles")
    if actor.id == row.id and Role.ADMIN in current and Role.ADMIN not in granted:
        raise PermissionDeniedError("you cannot remove your own admin role; ask another admin")
    before, after = {"roles": list(current)}, {"roles": list(granted)}
    return _change(
        uow, row, "staff.roles_changed", actor, before=before, after=after, roles=" ".join(granted)
    )


def enable(uow: UnitOfWork, username: str, actor: Actor) -> StaffUser:
    """Let a disabled member sign in again."""
    row = find(uow, username)
    if row.disabled_at is None:
        raise ConflictError(f"{row.username!r} is not disabled")
    before, after = {"disabled": True}, {"disabled": False}
    return _change(
        uow, row, "staff.enabled", actor, before=before, after=after, disabled_at=None, failed_count=0
    )


def unlock(uow: UnitOfWork, username: str, actor: Actor) -> StaffUser:
    """End a sign-in lockout now (after repeated wrong passwords) and reset the failure count."""
    row = find(uow, username)
    now = uow.runtime.clock.now()
    if row.locked_until is None or row.locked_until <= now:
        raise ConflictError(f"{row.username!r} is not locked out")
    before, after = {"locked": True}, {"locked": False}
    return _change(
        uow, row, "staff.unlocked", actor, before=before, after=after, locked_until=None, failed_count=0
    )


def set_password(uow: UnitOfWork, username: str, password: str, actor: Actor) -> StaffUser:
    """Give a member a new password (policy checked); their open sessions end."""
    row = find(uow, username)
    rules.check_password(password, row.username)
    _end_sessions(uow, row.id)
    values = {"password_hash": _hasher.hash(password), "failed_count": 0, "locked_until": None}
    return _change(uow, row, "staff.password_set", actor, before=None, after=None, **values)


def change_own_password(uow: UnitOfWork, user: StaffUser, current: str, new: str) -> StaffUser:
    """A member changes their own password: the current one must match; their other sessions end."""
    row = find(uow, user.username)
    if not password_matches(row.password_hash, current):
        raise PermissionDeniedError("the current password is not right")
    if current == new:
        raise InvalidInputError("choose a password different from the current one", field="password")
    return set_password(uow, user.username, new, user.actor)


OFFER_LIFETIME = timedelta(minutes=10)


def _offer_context(user_id: str) -> str:
    return f"staff_totp_offer:{user_id}"


def totp_offer(uow: UnitOfWork, user: StaffUser) -> tuple[str, str, str]:
    """A new TOTP secret offered to ``user``: (otpauth URI, base32 secret, sealed offer). Nothing is
    stored until :func:`accept_totp` sees a code from it; the sealed offer expires after 10 minutes."""
    secret = secrets.token_bytes(rules.TOTP_SECRET_BYTES)
    issued = int(uow.runtime.clock.now().timestamp()).to_bytes(8, "big")
    keys = derive_keys(uow.runtime.vault_master_key)
    sealed = seal_secret(keys, issued + secret, _offer_context(user.id))
    b32 = base64.b32encode(secret).decode().rstrip("=")
    return rules.otpauth_uri(secret, user.username), b32, base64.urlsafe_b64encode(sealed).decode()


def accept_totp(uow: UnitOfWork, user: StaffUser, offer: str, code: str) -> StaffUser:
    """Enrol the offered secret once ``code`` (from the member's app) matches it; recorded."""
    keys = derive_keys(uow.runtime.vault_master_key)
    try:
        opened = open_secret(keys, base64.urlsafe_b64decode(offer.encode()), _offer_context(user.id))
    except (ConflictError, ValueError):
        raise InvalidInputError("this enrolment form is not valid; start again", field="offer") from None
    issued, secret = datetime.fromtimestamp(int.from_bytes(opened[:8], "big"), UTC), opened[8:]
    now = uow.runtime.clock.now()
    if now - issued > OFFER_LIFETIME:
        raise InvalidInputError("this enrolment form has expired; start again", field="offer")
    step = rules.verify_totp(secret, code, now, None)
    if step is None:
        raise InvalidInputError("the code does not match; check the app's time and try again", field="code")
    row = find(uow, user.username)
    values = {"totp_secret": seal_secret(keys, secret, _totp_context(row.id)), "totp_last_step": step}
    before, after = {"totp": row.totp_secret is not None}, {"totp": True}
    return _change(uow, row, "staff.totp_enrolled", user.actor, before=before, after=after, **values)


def _totp_context(user_id: str) -> str:
    return f"staff_totp:{user_id}"


def totp_step(uow: UnitOfWork, row: Row[Any], code: str) -> int | None:
    """The time step of a valid, unused TOTP code for the member in ``row``, or None."""
    keys = derive_keys(uow.runtime.vault_master_key)
    secret = open_secret(keys, bytes(row.totp_secret), _totp_context(row.id))
    return rules.verify_totp(secret, code, uow.runtime.clock.now(), row.totp_last_step)


def enrol_totp(uow: UnitOfWork, username: str, actor: Actor) -> tuple[StaffUser, str]:
    """Give a staff member a new TOTP secret (sealed); returns the otpauth URI to show them once."""
    row = find(uow, username)
    secret = secrets.token_bytes(rules.TOTP_SECRET_BYTES)
    keys = derive_keys(uow.runtime.vault_master_key)
    uow.conn.execute(
        update(staff_user)
        .where(staff_user.c.id == row.id)
        .values(totp_secret=seal_secret(keys, secret, _totp_context(row.id)), totp_last_step=None)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="staff.totp_enrolled",
            actor=actor,
            subject=subject(row.id),
            state_before={"totp": row.totp_secret is not None},
            state_after={"totp": True},
        )
    )
    return get(uow, row.username), rules.otpauth_uri(secret, row.username)
