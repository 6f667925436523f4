"""Freezing accounts, releasing freezes, and answering "may this account do this now?"."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, select, text, update

from thawline.adapters.db.schema import account, freeze_transaction, release_verification
from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain import authorization
from thawline.domain.appeals import OPEN, AppealStatus
from thawline.domain.authorization import Decision
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import (
    Freeze,
    FreezeScope,
    FreezeStatus,
    Operation,
    ReasonCategory,
    Restriction,
    SourceKind,
)
from thawline.domain.review import FlaggedTransaction, check_reviewer
from thawline.oplog.entry import Actor, EvidenceRef, LogRecord, RuleRef, Subject
from thawline.services import accounts, conflicts
from thawline.services.unit_of_work import UnitOfWork

DEFAULT_REVIEW_AFTER = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class FreezeAccount:
    """Command: put a freeze on an account."""

    account_id: str
    restriction: Restriction
    category: ReasonCategory
    reason_codes: tuple[str, ...]
    source: SourceKind
    source_ref: str
    legal_basis: str
    internal_reason: str
    holder_reason: str
    evidence: tuple[EvidenceRef, ...] = ()
    review_by: datetime | None = None
    expires_at: datetime | None = None
    rule_version: int | None = None
    idempotency_key: str | None = None
    transactions: tuple[FlaggedTransaction, ...] = ()  # what the source knew of flagged transactions
    details: dict[str, Any] | None = None  # e.g. a rule's feature values and condition, for the log


def _freezes(uow: UnitOfWork, account_id: str, *, active_only: bool) -> list[Freeze]:
    query = select(freeze_table).where(freeze_table.c.account_id == account_id)
    if active_only:
        query = query.where(freeze_table.c.status == FreezeStatus.ACTIVE.value)
    return [
        _freeze(r) for r in uow.conn.execute(query.order_by(freeze_table.c.created_at, freeze_table.c.id))
    ]


def list_freezes(uow: UnitOfWork, account_id: str, *, active_only: bool = False) -> list[Freeze]:
    """An account's freezes, oldest first."""
    accounts.get(uow, account_id)
    return _freezes(uow, account_id, active_only=active_only)


def get(uow: UnitOfWork, freeze_id: str) -> Freeze:
    """One freeze, or NotFoundError."""
    row = uow.conn.execute(select(freeze_table).where(freeze_table.c.id == freeze_id)).first()
    if row is None:
        raise NotFoundError(f"freeze {freeze_id} does not exist")
    return _freeze(row)


def freeze_account(uow: UnitOfWork, cmd: FreezeAccount, actor: Actor) -> tuple[Freeze, bool]:
    """Freeze an account; a replay with the same idempotency key returns the first freeze (created=False)."""
    if cmd.idempotency_key is not None:
        row = uow.conn.execute(
            select(freeze_table).where(freeze_table.c.idempotency_key == cmd.idempotency_key)
        ).first()
        if row is not None:
            if row.account_id != cmd.account_id:
                raise ConflictError("this idempotency key was used for another account")
            return _freeze(row), False
    if not cmd.reason_codes:
        raise InvalidInputError("at least one reason code is required", field="reason_codes")
    if cmd.source is SourceKind.RULE and cmd.rule_version is None:
        raise InvalidInputError("a rule freeze needs the rule version", field="rule_version")
    accounts.get(uow, cmd.account_id)
    evidence = cmd.evidence + tuple(
        EvidenceRef("transaction", t.id)
        for t in cmd.transactions
        if EvidenceRef("transaction", t.id) not in cmd.evidence
    )
    now = uow.runtime.clock.now()
    binding = _freezes(uow, cmd.account_id, active_only=True)
    before = authorization.status(binding, now)
    new = Freeze(
        id="frz_" + secrets.token_hex(8),
        account_id=cmd.account_id,
        restriction=cmd.restriction,
        category=cmd.category,
        reason_codes=cmd.reason_codes,
        source=cmd.source,
        source_ref=cmd.source_ref,
        legal_basis=cmd.legal_basis,
        internal_reason=cmd.internal_reason,
        holder_reason=cmd.holder_reason,
        created_by=actor.ref,
        created_at=now,
        review_by=cmd.review_by or now + DEFAULT_REVIEW_AFTER,
        expires_at=cmd.expires_at,
        evidence=tuple(f"{e.kind}:{e.id}" for e in evidence),
    )
    uow.conn.execute(insert(freeze_table).values(**_row(new), idempotency_key=cmd.idempotency_key))
    if cmd.transactions:
        uow.conn.execute(
            insert(freeze_transaction),
            [
                {
                    "freeze_id": new.id,
                    "transaction_id": t.id,
                    "amount": t.amount,
                    "currency": t.currency,
                    "occurred_at": t.occurred_at,
                    "order_ref": t.order_ref,
                }
                for t in cmd.transactions
            ],
        )
    uow.mark_changed()
    after = authorization.status([*binding, new], now)
    uow.record(
        LogRecord(
            action="account.frozen",
            actor=actor,
            subject=Subject(account_id=cmd.account_id, freeze_id=new.id),
            reason_codes=cmd.reason_codes,
            rule=RuleRef(cmd.source_ref, cmd.rule_version)
            if cmd.source is SourceKind.RULE and cmd.rule_version is not None
            else None,
            evidence=evidence,
            state_before={"account": before.value},
            state_after={"account": after.value, "freeze": new.state()},
            details={
                "category": new.category.value,
                "source": new.source.value,
                "review_by": new.review_by.isoformat(),
                **({"expires_at": new.expires_at.isoformat()} if new.expires_at else {}),
                **(cmd.details or {}),
            },
            idempotency_key=cmd.idempotency_key,
        )
    )
    return new, True


def release(uow: UnitOfWork, freeze_id: str, actor: Actor, reason: str) -> Freeze:
    """Release one freeze directly (high-severity freezes need the reviewed, four-eyes path)."""
    current = get(uow, freeze_id)
    if current.category in uow.runtime.high_severity:
        raise ConflictError(
            f"freeze {freeze_id} is {current.category.value}: "
            "releasing it needs a reviewed appeal with four eyes"
        )
    if not reason.strip():
        raise InvalidInputError("a release reason is required", field="reason")
    return end(uow, current, FreezeStatus.RELEASED, actor, reason)


def end(
    uow: UnitOfWork,
    current: Freeze,
    to: FreezeStatus,
    actor: Actor,
    reason: str,
    *,
    details: dict[str, Any] | None = None,
) -> Freeze:
    """End an active freeze (released or expired) and record it; the one place a freeze ends."""
    now = uow.runtime.clock.now()
    binding = _freezes(uow, current.account_id, active_only=True)
    before = authorization.status(binding, now)
    ended = current.move(to, by=actor.ref, reason=reason, at=now)
    changed = uow.conn.execute(
        update(freeze_table)
        .where(freeze_table.c.id == current.id, freeze_table.c.status == FreezeStatus.ACTIVE.value)
        .values(status=ended.status.value, ended_at=now, ended_by=ended.ended_by, end_reason=reason)
    )
    if changed.rowcount != 1:  # another transaction ended it first
        raise ConflictError(f"freeze {current.id} is no longer active")
    uow.mark_changed()
    after = authorization.status([f for f in binding if f.id != current.id], now)
    _close_the_way_back(uow, current, actor)
    uow.record(
        LogRecord(
            action=f"freeze.{to.value}",
            actor=actor,
            subject=Subject(account_id=current.account_id, freeze_id=current.id),
            state_before={"account": before.value, "freeze": current.state()},
            state_after={"account": after.value, "freeze": ended.state()},
            details={"reason": reason, **(details or {})},
        )
    )
    return ended


def _close_the_way_back(uow: UnitOfWork, ended: Freeze, actor: Actor) -> None:
    """A freeze that ends by another path closes its open appeal and any pending second verification."""
    subject = {"account_id": ended.account_id, "freeze_id": ended.id}
    open_appeals = uow.conn.execute(
        select(appeal_table.c.id, appeal_table.c.status, appeal_table.c.version).where(
            appeal_table.c.freeze_id == ended.id, appeal_table.c.status.in_([s.value for s in OPEN])
        )
    ).all()
    for a in open_appeals:
        closed = uow.conn.execute(
            update(appeal_table)
            .where(appeal_table.c.id == a.id, appeal_table.c.version == a.version)
            .values(
                status=AppealStatus.WITHDRAWN.value,
                version=a.version + 1,
                assignee=None,
                claimed_at=None,
                idle_expires_at=None,
            )
        )
        if closed.rowcount != 1:
            raise ConflictError(f"appeal {a.id} changed meanwhile; reload and retry")
        uow.record(
            LogRecord(
                action="appeal.closed",
                actor=actor,
                subject=Subject(**subject, appeal_id=a.id),
                state_before={"status": a.status},
                state_after={"status": AppealStatus.WITHDRAWN.value},
                details={"reason": "the freeze ended"},
            )
        )
    pending = uow.conn.execute(
        select(release_verification.c.appeal_id).where(
            release_verification.c.freeze_id == ended.id, release_verification.c.status == "pending"
        )
    ).all()
    for v in pending:
        uow.conn.execute(
            update(release_verification)
            .where(release_verification.c.appeal_id == v.appeal_id)
            .values(status="cancelled", otp_hash=None, otp_expires_at=None)
        )
        uow.record(
            LogRecord(
                action="verification.cancelled",
                actor=actor,
                subject=Subject(**subject, appeal_id=v.appeal_id),
                details={"reason": "the freeze ended"},
            )
        )


def rereview(
    uow: UnitOfWork, freeze_id: str, *, keep: bool, next_review_by: datetime | None, note: str, actor: Actor
) -> Freeze:
    """A reviewer re-examines a freeze: keep it until a new re-review date, or (once due) release it.

    The reviewer must be eligible as for an appeal: not the freeze's creator, not linked to the account.
    """
    current = get(uow, freeze_id)
    if current.status is not FreezeStatus.ACTIVE:
        raise ConflictError(f"freeze {freeze_id} is {current.status}; there is nothing to re-review")
    if not note.strip():
        raise InvalidInputError("a re-review needs a note", field="note")
    me = actor.ref
    check_reviewer(
        reviewer=me,
        freeze_created_by=current.created_by,
        conflicted=conflicts.conflicted(uow, me, current.account_id),
    )
    now = uow.runtime.clock.now()
    if not keep:
        if current.category in uow.runtime.high_severity:
            raise ConflictError(
                f"freeze {freeze_id} is {current.category.value}: release it through a four-eyes review"
            )
        if current.review_by > now:
            raise ConflictError(
                f"freeze {freeze_id} is not due for re-review until {current.review_by.isoformat()}"
            )
        return end(
            uow, current, FreezeStatus.RELEASED, actor, "re-review: " + note, details={"rereview": True}
        )
    if next_review_by is None or next_review_by <= now:
        raise InvalidInputError("keeping a freeze needs a future re-review date", field="next_review_by")
    kept = uow.conn.execute(
        update(freeze_table)
        .where(freeze_table.c.id == freeze_id, freeze_table.c.status == FreezeStatus.ACTIVE.value)
        .values(review_by=next_review_by, rereview_flagged_at=None)
    )
    if kept.rowcount != 1:  # ended meanwhile
        raise ConflictError(f"freeze {freeze_id} is no longer active")
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="freeze.rereviewed",
            actor=actor,
            subject=Subject(account_id=current.account_id, freeze_id=freeze_id),
            state_before={"review_by": current.review_by.isoformat()},
            state_after={"review_by": next_review_by.isoformat()},
            details={"kept": True},
        )
    )
    return get(uow, freeze_id)


def flagged(uow: UnitOfWork, freeze_id: str) -> list[FlaggedTransaction]:
    """What the freeze's source recorded about its flagged transactions."""
    rows = uow.conn.execute(
        select(freeze_transaction)
        .where(freeze_transaction.c.freeze_id == freeze_id)
        .order_by(freeze_transaction.c.transaction_id)
    )
    return [
        FlaggedTransaction(
            r.transaction_id,
            None if r.amount is None else Decimal(str(r.amount)),
            r.currency,
            r.occurred_at,
            r.order_ref,
        )
        for r in rows
    ]


# The gateway's hot path: one prepared statement for the account and its active freezes.
AUTHORIZE_QUERY = text(
    # "freeze" is a keyword in PostgreSQL, hence the quotes and the alias.
    "SELECT account.language AS holder_language, account.probation_until AS probation_until, f.* "
    'FROM account LEFT JOIN "freeze" AS f '
    "ON f.account_id = account.id AND f.status = 'active' WHERE account.id = :account_id"
).columns(
    account.c.language.label("holder_language"),
    account.c.probation_until.label("probation_until"),
    *freeze_table.c,
)


def authorize(uow: UnitOfWork, account_id: str, op: Operation) -> Decision:
    """May ``account_id`` do ``op`` now? One query: the account, its probation and its active freezes."""
    rows = uow.conn.execute(AUTHORIZE_QUERY, {"account_id": account_id}).all()
    return decide(rows, account_id, op, uow.runtime.clock.now(), uow.runtime.settings.large_amounts)


def decide(
    rows: Sequence[Row[Any]], account_id: str, op: Operation, now: datetime, limits: dict[str, Decimal]
) -> Decision:
    """The decision from the rows of :data:`AUTHORIZE_QUERY` (no rows: the account is unknown)."""
    if not rows:
        raise NotFoundError(f"account {account_id} is not registered")  # never an "allow"
    first = rows[0]
    binding = [_freeze(r) for r in rows if r.id is not None]
    decision = (
        authorization.authorize(binding, op, now, first.holder_language) if binding else authorization.ALLOW
    )
    if decision.allowed and first.probation_until is not None:
        return authorization.probation(op, now, first.probation_until, limits, first.holder_language)
    return decision


def _row(f: Freeze) -> dict[str, Any]:
    r = f.restriction
    return {
        "id": f.id,
        "account_id": f.account_id,
        "scope": r.scope.value,
        "limit_amount": r.limit,
        "currency": r.currency,
        "channel": r.channel,
        "counterparty": r.counterparty,
        "category": f.category.value,
        "reason_codes": " ".join(f.reason_codes),
        "source": f.source.value,
        "source_ref": f.source_ref,
        "legal_basis": f.legal_basis,
        "internal_reason": f.internal_reason,
        "holder_reason": f.holder_reason,
        "evidence": " ".join(f.evidence),
        "created_by": f.created_by,
        "created_at": f.created_at,
        "review_by": f.review_by,
        "expires_at": f.expires_at,
        "status": f.status.value,
        "ended_at": f.ended_at,
        "ended_by": f.ended_by,
        "end_reason": f.end_reason,
    }


def _freeze(r: Row[Any]) -> Freeze:
    limit = r.limit_amount
    return Freeze(
        id=r.id,
        account_id=r.account_id,
        restriction=Restriction(
            FreezeScope(r.scope),
            limit=None if limit is None else Decimal(str(limit)),
            currency=r.currency,
            channel=r.channel,
            counterparty=r.counterparty,
        ),
        category=ReasonCategory(r.category),
        reason_codes=tuple(r.reason_codes.split()),
        source=SourceKind(r.source),
        source_ref=r.source_ref,
        legal_basis=r.legal_basis,
        internal_reason=r.internal_reason,
        holder_reason=r.holder_reason,
        created_by=r.created_by,
        created_at=r.created_at,
        review_by=r.review_by,
        expires_at=r.expires_at,
        status=FreezeStatus(r.status),
        ended_at=r.ended_at,
        ended_by=r.ended_by,
        end_reason=r.end_reason,
        evidence=tuple(r.evidence.split()),
    )
