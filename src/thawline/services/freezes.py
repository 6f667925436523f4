"""Freezing accounts, releasing freezes, and answering "may this account do this now?"."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, select, text, update

from thawline.adapters.db.schema import account
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain import authorization
from thawline.domain.authorization import Decision
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import (
    HIGH_SEVERITY,
    Freeze,
    FreezeScope,
    FreezeStatus,
    Operation,
    ReasonCategory,
    Restriction,
    SourceKind,
)
from thawline.oplog.entry import Actor, EvidenceRef, LogRecord, RuleRef, Subject
from thawline.services import accounts
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
        created_by=f"{actor.kind.value}:{actor.id}",
        created_at=now,
        review_by=cmd.review_by or now + DEFAULT_REVIEW_AFTER,
        expires_at=cmd.expires_at,
        evidence=tuple(f"{e.kind}:{e.id}" for e in cmd.evidence),
    )
    uow.conn.execute(insert(freeze_table).values(**_row(new), idempotency_key=cmd.idempotency_key))
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
            evidence=cmd.evidence,
            state_before={"account": before.value},
            state_after={"account": after.value, "freeze": new.state()},
            details={
                "category": new.category.value,
                "source": new.source.value,
                "review_by": new.review_by.isoformat(),
                **({"expires_at": new.expires_at.isoformat()} if new.expires_at else {}),
            },
            idempotency_key=cmd.idempotency_key,
        )
    )
    return new, True


def release(uow: UnitOfWork, freeze_id: str, actor: Actor, reason: str) -> Freeze:
    """Release one freeze directly (high-severity freezes need the reviewed, four-eyes path)."""
    current = get(uow, freeze_id)
    if current.category in HIGH_SEVERITY:
        raise ConflictError(
            f"freeze {freeze_id} is {current.category.value}: "
            "releasing it needs a reviewed appeal with four eyes"
        )
    if not reason.strip():
        raise InvalidInputError("a release reason is required", field="reason")
    now = uow.runtime.clock.now()
    binding = _freezes(uow, current.account_id, active_only=True)
    before = authorization.status(binding, now)
    released = current.move(FreezeStatus.RELEASED, by=f"{actor.kind.value}:{actor.id}", reason=reason, at=now)
    changed = uow.conn.execute(
        update(freeze_table)
        .where(freeze_table.c.id == freeze_id, freeze_table.c.status == FreezeStatus.ACTIVE.value)
        .values(status=released.status.value, ended_at=now, ended_by=released.ended_by, end_reason=reason)
    )
    if changed.rowcount != 1:  # another transaction ended it first
        raise ConflictError(f"freeze {freeze_id} is no longer active")
    uow.mark_changed()
    after = authorization.status([f for f in binding if f.id != freeze_id], now)
    uow.record(
        LogRecord(
            action="freeze.released",
            actor=actor,
            subject=Subject(account_id=current.account_id, freeze_id=freeze_id),
            state_before={"account": before.value, "freeze": current.state()},
            state_after={"account": after.value, "freeze": released.state()},
            details={"reason": reason},
        )
    )
    return released


# The gateway's hot path: one prepared statement for the account and its active freezes.
_AUTHORIZE = text(
    # "freeze" is a keyword in PostgreSQL, hence the quotes and the alias.
    'SELECT account.language AS holder_language, f.* FROM account LEFT JOIN "freeze" AS f '
    "ON f.account_id = account.id AND f.status = 'active' WHERE account.id = :account_id"
).columns(account.c.language.label("holder_language"), *freeze_table.c)


def authorize(uow: UnitOfWork, account_id: str, op: Operation) -> Decision:
    """May ``account_id`` do ``op`` now? One query: the account and its active freezes."""
    rows = uow.conn.execute(_AUTHORIZE, {"account_id": account_id}).all()
    if not rows:
        raise NotFoundError(f"account {account_id} is not registered")  # never an "allow"
    binding = [_freeze(r) for r in rows if r.id is not None]
    if not binding:
        return authorization.ALLOW
    return authorization.authorize(binding, op, uow.runtime.clock.now(), rows[0].holder_language)


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
