"""Second verification after an approved appeal (SMS code, face match), then release into probation."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, insert, or_, select, update

from thawline.adapters.db.schema import account as account_table
from thawline.adapters.db.schema import probation, release_verification
from thawline.domain import otp
from thawline.domain.appeals import Appeal
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import Freeze, FreezeStatus
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import accounts, freezes, vault
from thawline.services.unit_of_work import UnitOfWork

SYSTEM = Actor(ActorKind.SYSTEM, "second_verification")
STEPS = ("sms_code", "face")
MAX_FACE_FAILURES = 3


@dataclass(frozen=True, slots=True)
class Verification:
    """Where the second verification of an approved appeal stands."""

    appeal_id: str
    freeze_id: str
    account_id: str
    required: tuple[str, ...]
    status: str
    sms_verified: bool
    face_verified: bool
    code_expires_at: datetime | None
    attempts_left: int
    resend_after: datetime | None
    face_session: str | None
    completed_at: datetime | None

    @property
    def done(self) -> frozenset[str]:
        """The steps passed so far."""
        return frozenset(s for s, ok in (("sms_code", self.sms_verified), ("face", self.face_verified)) if ok)


def _subject(row: Row[Any] | Verification) -> Subject:
    return Subject(account_id=row.account_id, freeze_id=row.freeze_id, appeal_id=row.appeal_id)


def start(uow: UnitOfWork, approved: Appeal, frozen: Freeze) -> None:
    """Open the second verification of an approved appeal; with no steps required, release at once."""
    category = uow.runtime.appeal_requirements.for_category(frozen.category)
    required = tuple(s for s in STEPS if s in category.verifications)
    now = uow.runtime.clock.now()
    uow.conn.execute(
        insert(release_verification).values(
            appeal_id=approved.id,
            freeze_id=frozen.id,
            account_id=frozen.account_id,
            required=" ".join(required),
            status="pending",
            otp_attempts=0,
            otp_sends=0,
            face_failures=0,
            created_at=now,
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="verification.started",
            actor=SYSTEM,
            subject=Subject(account_id=frozen.account_id, freeze_id=frozen.id, appeal_id=approved.id),
            details={"required": list(required)},
        )
    )
    _complete_if_done(uow, _row(uow, approved.id))


def _row(uow: UnitOfWork, appeal_id: str, *, for_update: bool = False) -> Row[Any]:
    query = select(release_verification).where(release_verification.c.appeal_id == appeal_id)
    if for_update:
        query = query.with_for_update()
    row = uow.conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"appeal {appeal_id} has no second verification (is it approved?)")
    return row


def get(uow: UnitOfWork, appeal_id: str) -> Verification:
    """The verification of an approved appeal."""
    return _view(uow, _row(uow, appeal_id))


def _view(uow: UnitOfWork, r: Row[Any]) -> Verification:
    wait = otp.resend_wait(uow.runtime.clock.now(), r.otp_sent_at, r.otp_window_start, r.otp_sends)
    return Verification(
        appeal_id=r.appeal_id,
        freeze_id=r.freeze_id,
        account_id=r.account_id,
        required=tuple(r.required.split()),
        status=r.status,
        sms_verified=r.sms_verified_at is not None,
        face_verified=r.face_verified_at is not None,
        code_expires_at=r.otp_expires_at,
        attempts_left=max(otp.MAX_ATTEMPTS - r.otp_attempts, 0) if r.otp_hash is not None else 0,
        resend_after=None if wait is None else uow.runtime.clock.now() + wait,
        face_session=r.face_session,
        completed_at=r.completed_at,
    )


def _pending(uow: UnitOfWork, appeal_id: str, step: str) -> Row[Any]:
    r = _row(uow, appeal_id, for_update=True)
    if r.status != "pending":
        raise ConflictError(f"the second verification of appeal {appeal_id} is {r.status}")
    if step not in r.required.split():
        raise ConflictError(f"this release does not need the '{step}' step")
    return r


def send_code(uow: UnitOfWork, appeal_id: str, actor: Actor) -> Verification:
    """Send a fresh six-digit code to the holder's verified phone (throttled)."""
    r = _pending(uow, appeal_id, "sms_code")
    if r.sms_verified_at is not None:
        raise ConflictError("the SMS code step is already passed")
    now = uow.runtime.clock.now()
    wait = otp.resend_wait(now, r.otp_sent_at, r.otp_window_start, r.otp_sends)
    if wait is not None:
        raise ConflictError(f"a code was sent recently; try again in {math.ceil(wait.total_seconds())} s")
    view = accounts.get(uow, r.account_id)
    phone_refs = view.identity_refs.get("phone", [])
    phone = vault.reveal(uow, phone_refs[0]) if phone_refs else None
    if phone is None:
        raise ConflictError("the account has no verified phone to send a code to")
    code = otp.new_code()
    keys = vault.derive_keys(uow.runtime.vault_master_key)
    new_window = r.otp_window_start is None or now >= r.otp_window_start + otp.SEND_WINDOW
    _change(
        uow,
        r,
        "verification.code_sent",
        actor,
        {
            "otp_hash": otp.code_hash(keys.otp_key, appeal_id, code),
            "otp_expires_at": now + otp.LIFETIME,
            "otp_attempts": 0,
            "otp_sent_at": now,
            "otp_sends": 1 if new_window else r.otp_sends + 1,
            "otp_window_start": now if new_window else r.otp_window_start,
        },
        details={"expires_at": (now + otp.LIFETIME).isoformat(), "channel": "sms"},
    )
    # The code travels sealed in the outbox row this commit writes, and is sent right after COMMIT:
    # only once its hash is stored does the holder get it.
    uow.notification_secrets["verification.code_sent"] = {"code": code}
    return _view(uow, _row(uow, appeal_id))


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """The outcome of presenting a code; a wrong code is recorded, so the caller commits either way."""

    passed: bool
    attempts_left: int
    verification: Verification


def check_code(uow: UnitOfWork, appeal_id: str, code: str, actor: Actor) -> CodeCheck:
    """Check a presented code; wrong codes count against the five attempts (commit the result)."""
    if not (len(code) == otp.DIGITS and code.isdigit()):
        raise InvalidInputError("the code is six digits", field="code")
    r = _pending(uow, appeal_id, "sms_code")
    if r.sms_verified_at is not None:
        return CodeCheck(True, 0, _view(uow, r))  # a retry after success
    now = uow.runtime.clock.now()
    if r.otp_hash is None:
        raise ConflictError("no code has been sent; request one first")
    if r.otp_attempts >= otp.MAX_ATTEMPTS:
        raise ConflictError("too many wrong codes; request a new one")
    if r.otp_expires_at is None or now >= r.otp_expires_at:
        raise ConflictError("the code has expired; request a new one")
    keys = vault.derive_keys(uow.runtime.vault_master_key)
    if not otp.matches(keys.otp_key, appeal_id, code, r.otp_hash):
        attempts = r.otp_attempts + 1
        _change(
            uow,
            r,
            "verification.code_rejected",
            actor,
            {"otp_attempts": attempts},
            details={"attempts": attempts, "max_attempts": otp.MAX_ATTEMPTS},
        )
        return CodeCheck(False, otp.MAX_ATTEMPTS - attempts, _view(uow, _row(uow, appeal_id)))
    _change(
        uow,
        r,
        "verification.sms_passed",
        actor,
        {"sms_verified_at": now, "otp_hash": None, "otp_expires_at": None},
    )
    _complete_if_done(uow, _row(uow, appeal_id))
    return CodeCheck(True, 0, _view(uow, _row(uow, appeal_id)))


def start_face(uow: UnitOfWork, appeal_id: str, actor: Actor) -> tuple[Verification, str]:
    """Open a face-verification session with the provider; returns where the holder goes."""
    r = _pending(uow, appeal_id, "face")
    if r.face_verified_at is not None:
        raise ConflictError("the face step is already passed")
    if r.face_failures >= MAX_FACE_FAILURES:
        raise ConflictError("face verification failed too often; contact a reviewer")
    session_id = "fs_" + secrets.token_hex(16)
    started = uow.runtime.face.start(session_id=session_id, account_id=r.account_id)
    _change(
        uow,
        r,
        "verification.face_started",
        actor,
        {"face_session": session_id, "face_started_at": uow.runtime.clock.now()},
        details={"session": session_id},
    )
    return _view(uow, _row(uow, appeal_id)), started.url


def reset_face(uow: UnitOfWork, appeal_id: str, lead: Actor, reason: str) -> Verification:
    """A review lead gives a holder who failed the face check too often new attempts (recorded)."""
    if not reason.strip():
        raise InvalidInputError("a reset needs a reason", field="reason")
    r = _pending(uow, appeal_id, "face")
    if r.face_failures == 0:
        raise ConflictError("there are no failed face checks to reset")
    _change(
        uow,
        r,
        "verification.face_reset",
        lead,
        {"face_failures": 0, "face_session": None},
        state_before={"face_failures": r.face_failures},
        state_after={"face_failures": 0},
        details={"reason_sha256": hashlib.sha256(reason.encode()).hexdigest()},
    )
    return _view(uow, _row(uow, appeal_id))


def face_result(
    uow: UnitOfWork, session_id: str, *, passed: bool, score: float, provider_ref: str
) -> Verification:
    """The provider's (already authenticated) result for a session; a repeated callback changes nothing."""
    rv = release_verification.c
    r = uow.conn.execute(
        select(release_verification)
        .where(or_(rv.face_session == session_id, rv.face_failed_session == session_id))
        .with_for_update()
    ).first()
    if r is None:
        raise NotFoundError(f"face session {session_id} is unknown or superseded")
    if r.face_session != session_id or r.face_verified_at is not None or r.status != "pending":
        return _view(uow, r)  # the provider retried a delivered callback: nothing changes
    provider = Actor(ActorKind.SYSTEM, "face_provider")
    details = {"session": session_id, "score": f"{score:.4f}", "provider_ref": provider_ref}
    now = uow.runtime.clock.now()
    if not passed:
        failed = {
            "face_failures": r.face_failures + 1,
            "face_session": None,
            "face_failed_session": session_id,
        }
        _change(uow, r, "verification.face_failed", provider, failed, details=details)
        return _view(uow, _row(uow, r.appeal_id))
    _change(uow, r, "verification.face_passed", provider, {"face_verified_at": now}, details=details)
    _complete_if_done(uow, _row(uow, r.appeal_id))
    return _view(uow, _row(uow, r.appeal_id))


def _change(
    uow: UnitOfWork, r: Row[Any], action: str, actor: Actor, values: dict[str, Any], **entry: Any
) -> None:
    """Change the verification row and record it: the one way a step of it moves."""
    uow.conn.execute(
        update(release_verification).where(release_verification.c.appeal_id == r.appeal_id).values(**values)
    )
    uow.mark_changed()
    uow.record(LogRecord(action=action, actor=actor, subject=_subject(r), **entry))


def _complete_if_done(uow: UnitOfWork, r: Row[Any]) -> None:
    view = _view(uow, r)
    if view.status != "pending" or not set(view.required) <= view.done:
        return
    now = uow.runtime.clock.now()
    uow.conn.execute(
        update(release_verification)
        .where(release_verification.c.appeal_id == r.appeal_id, release_verification.c.status == "pending")
        .values(status="completed", completed_at=now)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="verification.completed",
            actor=SYSTEM,
            subject=_subject(r),
            details={"steps": list(view.required)},
        )
    )
    frozen = freezes.get(uow, r.freeze_id)
    if frozen.status is not FreezeStatus.ACTIVE:
        return  # it expired meanwhile: nothing left to release
    freezes.end(
        uow,
        frozen,
        FreezeStatus.RELEASED,
        SYSTEM,
        "appeal approved and second verification passed",
        details={"appeal_id": r.appeal_id},
    )
    start_probation(uow, frozen)


def start_probation(uow: UnitOfWork, released: Freeze) -> None:
    """After a reviewed release, deny large transactions for the probation period."""
    hours = uow.runtime.settings.probation_hours
    if hours <= 0:
        return
    now = uow.runtime.clock.now()
    ends = now + timedelta(hours=hours)
    lock_account(uow, released.account_id)  # probation_until is recomputed under the account's lock
    uow.conn.execute(
        insert(probation).values(
            id="prb_" + secrets.token_hex(8),
            account_id=released.account_id,
            freeze_id=released.id,
            starts_at=now,
            ends_at=ends,
        )
    )
    until = uow.conn.execute(
        select(func.max(probation.c.ends_at)).where(
            probation.c.account_id == released.account_id, probation.c.ended_at.is_(None)
        )
    ).scalar_one()
    uow.conn.execute(
        update(account_table).where(account_table.c.id == released.account_id).values(probation_until=until)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="probation.started",
            actor=SYSTEM,
            subject=Subject(account_id=released.account_id, freeze_id=released.id),
            details={
                "ends_at": ends.isoformat(),
                "large_amount_limits": {c: str(v) for c, v in uow.runtime.settings.large_amounts.items()},
            },
        )
    )


def lock_account(uow: UnitOfWork, account_id: str) -> None:
    """Lock the account row (PostgreSQL; SQLite writers are serialised already) before changing probation."""
    uow.conn.execute(select(account_table.c.id).where(account_table.c.id == account_id).with_for_update())
