"""Human review of appeals: the queue, claiming and assigning cases, decisions, four eyes, conflicts."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import case, insert, select

from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import appeal_review, reviewer_conflict
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.appeals import QUEUED, Appeal, AppealStatus
from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.review import Decision, check_reason_codes, check_reviewer
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import accounts, appeals, conflicts, freezes, prereview, verification
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One case waiting for a reviewer."""

    appeal: Appeal
    category: str
    high_severity: bool
    breached: bool
    machine: Decision | None


def queue(
    uow: UnitOfWork,
    *,
    assignee: str | None = None,
    unassigned: bool = False,
    category: str | None = None,
    expedited: bool = False,
    limit: int = 100,
) -> list[QueueItem]:
    """Open cases: expedited first, then by first-response deadline (breached ones are the earliest);
    optionally only one freeze cause, or only expedited cases."""
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit must be 1-1000", field="limit")
    query = (
        select(appeal_table, freeze_table.c.category)
        .join(freeze_table, freeze_table.c.id == appeal_table.c.freeze_id)
        .where(appeal_table.c.status.in_([s.value for s in QUEUED]))
        .order_by(
            case((appeal_table.c.expedited.is_(True), 0), else_=1),
            appeal_table.c.first_response_due,
            appeal_table.c.id,
        )
        .limit(limit)
    )
    if assignee is not None:
        query = query.where(appeal_table.c.assignee == assignee)
    if unassigned:
        query = query.where(appeal_table.c.assignee.is_(None))
    if category is not None:
        query = query.where(freeze_table.c.category == category)
    if expedited:
        query = query.where(appeal_table.c.expedited.is_(True))
    now = uow.runtime.clock.now()
    out = []
    for row in uow.conn.execute(query):
        a = appeals.from_row(row)
        out.append(
            QueueItem(
                appeal=a,
                category=row.category,
                high_severity=row.category in {c.value for c in uow.runtime.high_severity},
                breached=a.first_responded_at is None
                and a.first_response_due is not None
                and a.first_response_due <= now,
                machine=prereview.latest(uow, a),
            )
        )
    return out


def _eligible(uow: UnitOfWork, a: Appeal, reviewer: str) -> None:
    frozen = freezes.get(uow, a.freeze_id)
    check_reviewer(
        reviewer=reviewer,
        freeze_created_by=frozen.created_by,
        conflicted=conflicts.conflicted(uow, reviewer, a.account_id),
        first_approver=a.first_approver,
        filed_by=a.created_by,
    )


def _take(uow: UnitOfWork, appeal_id: str, reviewer: str, actor: Actor, action: str) -> Appeal:
    current = appeals.get(uow, appeal_id)
    if current.status not in QUEUED:
        raise ConflictError(f"appeal {appeal_id} is {current.status}; there is no case to take")
    if current.assignee == reviewer:
        return current  # already theirs: a retry changes nothing
    if action == "appeal.claimed" and current.assignee is not None:
        raise ConflictError(f"appeal {appeal_id} is held by {current.assignee}")
    _eligible(uow, current, reviewer)
    now = uow.runtime.clock.now()
    status = (
        AppealStatus.IN_REVIEW
        if current.status in (AppealStatus.SUBMITTED, AppealStatus.RESUBMITTED)
        else current.status
    )
    moved = current.move(status, at=now) if status is not current.status else current
    # Claiming is the reviewer's first response; a lead's assignment is not.
    responded = current.first_responded_at or (now if action == "appeal.claimed" else None)
    after = replace(moved, assignee=reviewer, claimed_at=now, first_responded_at=responded)
    appeals.save(uow, current, after)
    uow.record(
        appeals.record(
            action,
            after,
            actor,
            current,
            {"assignee": reviewer, "previous_assignee": current.assignee},
        )
    )
    return after


def claim(uow: UnitOfWork, appeal_id: str, reviewer: Actor) -> Appeal:
    """A reviewer takes an unassigned case (its first response if none was made yet)."""
    return _take(uow, appeal_id, reviewer.ref, reviewer, "appeal.claimed")


def assign(uow: UnitOfWork, appeal_id: str, reviewer: str, lead: Actor) -> Appeal:
    """A lead gives a case to a reviewer (``kind:id``), taking it from whoever held it."""
    if not reviewer.startswith(conflicts.PREFIX) or len(reviewer) == len(conflicts.PREFIX):
        raise InvalidInputError("name the reviewer as 'reviewer:<key id>'", field="reviewer")
    return _take(uow, appeal_id, reviewer, lead, "appeal.assigned")


def unclaim(uow: UnitOfWork, appeal_id: str, actor: Actor, *, lead: bool = False) -> Appeal:
    """Put a case back in the queue (its holder, or a lead)."""
    current = appeals.get(uow, appeal_id)
    if current.assignee is None:
        raise ConflictError(f"appeal {appeal_id} is not assigned")
    if not lead and current.assignee != actor.ref:
        raise ConflictError(f"appeal {appeal_id} is held by {current.assignee}")
    after = replace(current, assignee=None, claimed_at=None)
    appeals.save(uow, current, after)
    uow.record(appeals.record("appeal.unclaimed", after, actor, current, {"previous": current.assignee}))
    return after


@dataclass(frozen=True, slots=True)
class Review:
    """One recorded opinion on an appeal: the machine's or a person's."""

    id: str
    reviewer: str
    kind: str
    decision: Decision
    reason_codes: tuple[str, ...]
    note: str
    confidence: Decimal | None
    findings: list[dict[str, Any]]
    agrees_with_machine: bool | None
    created_at: datetime


def decide(
    uow: UnitOfWork,
    appeal_id: str,
    decision: Decision,
    *,
    reason_codes: tuple[str, ...],
    note: str,
    reviewer: Actor,
) -> Appeal:
    """A reviewer decides a case they hold; high-severity approvals need a second, different reviewer."""
    check_reason_codes(decision, reason_codes)
    if len(note) > 5000:
        raise InvalidInputError("the note is longer than 5000 characters", field="note")
    current = appeals.get(uow, appeal_id)
    me = reviewer.ref
    if current.status not in QUEUED:
        raise ConflictError(f"appeal {appeal_id} is {current.status}; it cannot be decided")
    if current.assignee != me:  # a claim also moves a submitted case into review
        raise ConflictError(f"claim appeal {appeal_id} before deciding it")
    _eligible(uow, current, me)
    frozen = freezes.get(uow, current.freeze_id)
    now = uow.runtime.clock.now()
    four_eyes = frozen.category in uow.runtime.high_severity
    if decision is Decision.APPROVE and four_eyes and current.status is AppealStatus.IN_REVIEW:
        to = AppealStatus.SECOND_APPROVAL
    else:
        to = {
            Decision.APPROVE: AppealStatus.APPROVED,
            Decision.REJECT: AppealStatus.REJECTED,
            Decision.NEEDS_MORE_INFO: AppealStatus.NEEDS_MORE_INFO,
        }[decision]
    moved = current.move(to, at=now)
    after = replace(
        moved,
        assignee=None,
        claimed_at=None,
        first_responded_at=current.first_responded_at or now,
        first_approver=me if to is AppealStatus.SECOND_APPROVAL else current.first_approver,
        decided_at=now if to in (AppealStatus.APPROVED, AppealStatus.REJECTED) else None,
        idle_expires_at=now + appeals.idle_limit(uow) if to is AppealStatus.NEEDS_MORE_INFO else None,
    )
    appeals.save(uow, current, after)
    machine = prereview.latest(uow, current)
    agrees = None if machine is None else machine is decision
    uow.conn.execute(
        insert(appeal_review).values(
            id="rev_" + secrets.token_hex(8),
            appeal_id=appeal_id,
            reviewer=me,
            kind="human",
            decision=decision.value,
            reason_codes=" ".join(reason_codes),
            note=note,
            confidence=None,
            findings="[]",
            agrees_with_machine=agrees,
            created_at=now,
        )
    )
    action = "appeal.first_approval" if to is AppealStatus.SECOND_APPROVAL else f"appeal.{to.value}"
    details: dict[str, Any] = {
        "decision": decision.value,
        "machine_recommendation": None if machine is None else machine.value,
        "disagrees_with_machine": agrees is False,
        # The note may quote the holder; the log keeps only its fingerprint.
        "note_sha256": hashlib.sha256(note.encode()).hexdigest(),
    }
    if current.first_approver is not None:
        details["first_approver"] = current.first_approver
    uow.record(
        LogRecord(
            action=action,
            actor=reviewer,
            subject=Subject(account_id=after.account_id, freeze_id=after.freeze_id, appeal_id=appeal_id),
            reason_codes=reason_codes,
            state_before={"status": current.status.value},
            state_after={"status": after.status.value},
            details=details,
        )
    )
    if to is AppealStatus.APPROVED:
        verification.start(uow, after, frozen)
    return after


def reviews(uow: UnitOfWork, appeal_id: str) -> list[Review]:
    """Every opinion recorded on an appeal, oldest first."""
    appeals.get(uow, appeal_id)
    rows = uow.conn.execute(
        select(appeal_review)
        .where(appeal_review.c.appeal_id == appeal_id)
        .order_by(appeal_review.c.created_at, appeal_review.c.kind.desc(), appeal_review.c.id)
    )
    return [
        Review(
            id=r.id,
            reviewer=r.reviewer,
            kind=r.kind,
            decision=Decision(r.decision),
            reason_codes=tuple(r.reason_codes.split()),
            note=r.note,
            confidence=None if r.confidence is None else Decimal(str(r.confidence)),
            findings=orjson.loads(r.findings),
            agrees_with_machine=r.agrees_with_machine,
            created_at=r.created_at,
        )
        for r in rows
    ]


def declare_conflict(uow: UnitOfWork, reviewer: str, account_id: str, note: str, actor: Actor) -> bool:
    """Record that ``reviewer`` is linked to ``account_id`` and must not review it (False if known)."""
    if not reviewer.startswith(conflicts.PREFIX) or len(reviewer) == len(conflicts.PREFIX):
        raise InvalidInputError("name the reviewer as 'reviewer:<key id>'", field="reviewer")
    accounts.get(uow, account_id)
    if conflicts.conflicted(uow, reviewer, account_id):
        return False
    uow.conn.execute(
        insert(reviewer_conflict).values(
            reviewer=reviewer,
            account_id=account_id,
            note=note,
            created_by=actor.ref,
            created_at=uow.runtime.clock.now(),
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="reviewer.conflict_declared",
            actor=actor,
            subject=Subject(account_id=account_id, ref=reviewer),
            details={"note_sha256": hashlib.sha256(note.encode()).hexdigest()},
        )
    )
    return True
