"""Appeals against a freeze: open, add materials, check completeness, submit, withdraw."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert, select, update

from thawline.adapters.db.schema import appeal as appeal_table
from thawline.adapters.db.schema import appeal_material
from thawline.domain import identity
from thawline.domain.appeals import (
    EDITABLE,
    GUIDANCE,
    OPEN,
    Appeal,
    AppealStatus,
    Material,
    MaterialKind,
    Missing,
    missing_items,
)
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.freezes import Freeze, FreezeStatus
from thawline.domain.review import DeclaredVoucher
from thawline.oplog.entry import Actor, EvidenceRef, LogRecord, Subject
from thawline.services import accounts, freezes, prereview, vault
from thawline.services.unit_of_work import UnitOfWork

CONTACT_CHANNELS = ("phone", "in_site")


class IncompleteAppealError(InvalidInputError):
    """Submission refused: the appeal still lacks something; ``missing`` says exactly what."""

    def __init__(self, missing: list[Missing]) -> None:
        super().__init__(
            "the appeal is incomplete: " + "; ".join(m.message() for m in missing), field="materials"
        )
        self.missing = missing


@dataclass(frozen=True, slots=True)
class Completeness:
    """The checklist of an appeal."""

    complete: bool
    missing: list[Missing]
    required_materials: tuple[MaterialKind, ...]
    flagged_transactions: tuple[str, ...]
    verifications_before_release: tuple[str, ...]
    guidance: list[str]


def flagged_transactions(f: Freeze) -> tuple[str, ...]:
    """The transactions a freeze's evidence points at."""
    return tuple(ref.split(":", 1)[1] for ref in f.evidence if ref.startswith("transaction:"))


def open_appeal(
    uow: UnitOfWork,
    freeze_id: str,
    *,
    explanation: str,
    contact_channel: str,
    contact_value: str | None,
    actor: Actor,
) -> tuple[Appeal, bool]:
    """Start a draft appeal against an active freeze (a new round after a rejection, up to the limit).

    Repeating the same request while its draft is open returns that draft and records nothing.
    """
    frozen = freezes.get(uow, freeze_id)
    if frozen.status is not FreezeStatus.ACTIVE:
        raise ConflictError(f"freeze {freeze_id} is {frozen.status}; there is nothing to appeal")
    req = uow.runtime.appeal_requirements.for_category(frozen.category)
    if req.self_service is not None:
        raise ConflictError(f"this freeze is lifted by the holder ({req.self_service}), not by an appeal")
    _check_contact(uow, frozen.account_id, contact_channel, contact_value)
    earlier = list(uow.conn.execute(select(appeal_table).where(appeal_table.c.freeze_id == freeze_id)))
    for r in earlier:
        if AppealStatus(r.status) not in OPEN:
            continue
        if (r.status, r.explanation, r.contact_channel) == (
            AppealStatus.DRAFT.value,
            explanation,
            contact_channel,
        ):
            return from_row(r), False  # a client retrying the same request: hand back its draft
        raise ConflictError(f"freeze {freeze_id} already has an open appeal")
    if any(r.status == AppealStatus.APPROVED.value for r in earlier):
        raise ConflictError(f"an appeal against freeze {freeze_id} was approved; finish second verification")
    rejected = sum(1 for r in earlier if r.status == AppealStatus.REJECTED.value)
    rounds = uow.runtime.appeal_requirements.rounds
    if rejected >= rounds:
        raise ConflictError(f"freeze {freeze_id} has had {rejected} rejected appeals; the decision is final")
    made = Appeal(
        id="apl_" + secrets.token_hex(8),
        freeze_id=freeze_id,
        account_id=frozen.account_id,
        round=rejected + 1,
        status=AppealStatus.DRAFT,
        explanation=explanation,
        contact_channel=contact_channel,
        created_by=actor.ref,
        created_at=uow.runtime.clock.now(),
        idle_expires_at=uow.runtime.clock.now() + idle_limit(uow),
    )
    uow.conn.execute(insert(appeal_table).values(**_row(made)))
    uow.mark_changed()
    uow.record(record("appeal.opened", made, actor, None, {"round": made.round}))
    return made, True


def idle_limit(uow: UnitOfWork) -> timedelta:
    """How long a draft or a needs-more-info appeal may sit untouched before it lapses."""
    return timedelta(days=uow.runtime.settings.appeal_idle_days)


@dataclass(frozen=True, slots=True)
class VoucherData:
    """What the holder says a voucher shows (all optional; the pre-review compares what is given)."""

    order_ref: str | None = None
    amount: Decimal | None = None
    occurred_at: datetime | None = None


def _check_contact(uow: UnitOfWork, account_id: str, channel: str, value: str | None) -> None:
    """The contact channel must be one the holder has verified (the phone on file), or in-site messages."""
    if channel not in CONTACT_CHANNELS:
        raise InvalidInputError(
            f"contact channel must be one of {', '.join(CONTACT_CHANNELS)}", field="contact.channel"
        )
    if channel == "in_site":
        return
    if not value:
        raise InvalidInputError("the phone number is required", field="contact.value")
    subject = accounts.get(uow, account_id).holder_subject_id
    matches = vault.find(uow, "phone", identity.phone(value, field="contact.value"))
    if not any(s == subject for _v, s in matches):
        raise InvalidInputError(
            "this phone number is not the verified one on the account", field="contact.value"
        )


def add_material(
    uow: UnitOfWork,
    appeal_id: str,
    *,
    kind: MaterialKind,
    data: bytes,
    transaction_ids: tuple[str, ...],
    actor: Actor,
    declared: VoucherData | None = None,
) -> Material:
    """Store an upload (type checked by content, content-addressed) and attach it to a draft appeal."""
    current = get(uow, appeal_id)
    if current.status not in EDITABLE:
        raise ConflictError(f"appeal {appeal_id} is {current.status}; materials can no longer be added")
    if transaction_ids and kind is not MaterialKind.TRANSACTION_VOUCHER:
        raise InvalidInputError("only transaction vouchers name transactions", field="transaction_ids")
    if kind is MaterialKind.TRANSACTION_VOUCHER and not transaction_ids:
        raise InvalidInputError("a voucher must name the transactions it proves", field="transaction_ids")
    if declared is not None and kind is not MaterialKind.TRANSACTION_VOUCHER:
        raise InvalidInputError("only vouchers declare an order, amount or time", field="order_ref")
    if declared is not None and declared.amount is not None and declared.amount < 0:
        raise InvalidInputError("the amount must not be negative", field="amount")
    stored = uow.runtime.blobs.put(data)  # content-addressed: a rollback leaves at most an unreferenced file
    for existing in materials(uow, appeal_id):
        if (existing.kind, existing.sha256, existing.transaction_ids) == (
            kind,
            stored.sha256,
            transaction_ids,
        ):
            return existing  # the same upload again (a client retry): nothing new to record
    material = Material(
        "mat_" + secrets.token_hex(8), kind, stored.sha256, stored.media_type, stored.size, transaction_ids
    )
    uow.conn.execute(
        insert(appeal_material).values(
            id=material.id,
            appeal_id=appeal_id,
            kind=kind.value,
            sha256=stored.sha256,
            media_type=stored.media_type,
            size=stored.size,
            transaction_ids=" ".join(transaction_ids),
            created_at=uow.runtime.clock.now(),
            declared_order_ref=declared.order_ref if declared else None,
            declared_amount=declared.amount if declared else None,
            declared_at=declared.occurred_at if declared else None,
        )
    )
    uow.mark_changed()
    # Working on an appeal keeps it alive: the idle deadline restarts with each upload.
    save(uow, current, replace(current, idle_expires_at=uow.runtime.clock.now() + idle_limit(uow)))
    uow.record(
        LogRecord(
            action="appeal.material_added",
            actor=actor,
            subject=Subject(account_id=current.account_id, freeze_id=current.freeze_id, appeal_id=appeal_id),
            evidence=(
                EvidenceRef("document", f"sha256:{stored.sha256}"),
                *(EvidenceRef("transaction", t) for t in transaction_ids),
            ),
            details={"kind": kind.value, "media_type": stored.media_type, "size": stored.size},
        )
    )
    return material


def materials(uow: UnitOfWork, appeal_id: str) -> list[Material]:
    """An appeal's materials, by upload time."""
    rows = uow.conn.execute(
        select(appeal_material)
        .where(appeal_material.c.appeal_id == appeal_id)
        .order_by(appeal_material.c.created_at, appeal_material.c.id)
    )
    return [
        Material(r.id, MaterialKind(r.kind), r.sha256, r.media_type, r.size, tuple(r.transaction_ids.split()))
        for r in rows
    ]


def declared_vouchers(uow: UnitOfWork, appeal_id: str) -> list[DeclaredVoucher]:
    """The vouchers of an appeal with what the holder declared about each."""
    rows = uow.conn.execute(
        select(appeal_material).where(
            appeal_material.c.appeal_id == appeal_id,
            appeal_material.c.kind == MaterialKind.TRANSACTION_VOUCHER.value,
        )
    )
    return [
        DeclaredVoucher(
            tuple(r.transaction_ids.split()),
            r.declared_order_ref,
            None if r.declared_amount is None else Decimal(str(r.declared_amount)),
            r.declared_at,
        )
        for r in rows
    ]


def completeness(uow: UnitOfWork, appeal_id: str, lang: str = "en") -> Completeness:
    """What the appeal still needs, callable at any time before submitting."""
    current = get(uow, appeal_id)
    frozen = freezes.get(uow, current.freeze_id)
    req = uow.runtime.appeal_requirements.for_category(frozen.category)
    flagged = flagged_transactions(frozen) if req.voucher_per_flagged_transaction else ()
    missing = missing_items(req, flagged, materials(uow, appeal_id), current.explanation)
    return Completeness(
        complete=not missing,
        missing=missing,
        required_materials=req.materials + ((MaterialKind.TRANSACTION_VOUCHER,) if flagged else ()),
        flagged_transactions=flagged,
        verifications_before_release=req.verifications,
        guidance=GUIDANCE.get(lang, GUIDANCE["en"]),
    )


def submit(uow: UnitOfWork, appeal_id: str, actor: Actor) -> Appeal:
    """Submit (or resubmit) a complete appeal; the first-response deadline starts now."""
    current = get(uow, appeal_id)
    target = (
        AppealStatus.RESUBMITTED if current.status is AppealStatus.NEEDS_MORE_INFO else AppealStatus.SUBMITTED
    )
    check = completeness(uow, appeal_id)
    if not check.complete:
        raise IncompleteAppealError(check.missing)
    moved = current.move(
        target, at=uow.runtime.clock.now(), first_response=uow.runtime.appeal_requirements.first_response
    )
    save(uow, current, moved)
    uow.record(
        record(
            f"appeal.{target.value}",
            moved,
            actor,
            current,
            {
                "first_response_due": moved.first_response_due.isoformat()
                if moved.first_response_due
                else None
            },
        )
    )
    frozen = freezes.get(uow, moved.freeze_id)
    prereview.run(
        uow,
        moved,
        frozen,
        vouchers=declared_vouchers(uow, appeal_id),
        filed_by_holder_side=actor.kind.value in ("holder", "integrator"),
        contact_verified=True,  # open_appeal accepted only a verified contact
    )
    return moved


def withdraw(uow: UnitOfWork, appeal_id: str, actor: Actor) -> Appeal:
    """The holder withdraws the appeal."""
    current = get(uow, appeal_id)
    moved = replace(current.move(AppealStatus.WITHDRAWN, at=uow.runtime.clock.now()), assignee=None)
    save(uow, current, moved)
    uow.record(record("appeal.withdrawn", moved, actor, current, None))
    return moved


def get(uow: UnitOfWork, appeal_id: str) -> Appeal:
    """One appeal, or NotFoundError."""
    row = uow.conn.execute(select(appeal_table).where(appeal_table.c.id == appeal_id)).first()
    if row is None:
        raise NotFoundError(f"appeal {appeal_id} does not exist")
    return from_row(row)


_MUTABLE = (
    "submitted_at",
    "first_response_due",
    "assignee",
    "claimed_at",
    "first_responded_at",
    "escalated_at",
    "first_approver",
    "decided_at",
    "idle_expires_at",
)


def save(uow: UnitOfWork, before: Appeal, after: Appeal) -> None:
    """Write ``after`` if the stored appeal is still ``before`` (same version); else 409, nothing changed."""
    changed = uow.conn.execute(
        update(appeal_table)
        .where(appeal_table.c.id == before.id, appeal_table.c.version == before.version)
        .values(
            status=after.status.value,
            version=before.version + 1,
            **{name: getattr(after, name) for name in _MUTABLE},
        )
    )
    if changed.rowcount != 1:  # a concurrent command moved it first
        raise ConflictError(f"appeal {before.id} changed meanwhile; reload and retry")
    uow.mark_changed()


def record(
    action: str, a: Appeal, actor: Actor, before: Appeal | None, details: dict[str, Any] | None
) -> LogRecord:
    return LogRecord(
        action=action,
        actor=actor,
        subject=Subject(account_id=a.account_id, freeze_id=a.freeze_id, appeal_id=a.id),
        state_before=None if before is None else {"status": before.status.value},
        state_after={"status": a.status.value},
        details=details,
    )


def _row(a: Appeal) -> dict[str, Any]:
    return {
        "id": a.id,
        "freeze_id": a.freeze_id,
        "account_id": a.account_id,
        "round": a.round,
        "status": a.status.value,
        "explanation": a.explanation,
        "contact_channel": a.contact_channel,
        "created_by": a.created_by,
        "created_at": a.created_at,
        "submitted_at": a.submitted_at,
        "first_response_due": a.first_response_due,
        "idle_expires_at": a.idle_expires_at,
    }


def from_row(r: Row[Any]) -> Appeal:
    return Appeal(
        id=r.id,
        freeze_id=r.freeze_id,
        account_id=r.account_id,
        round=r.round,
        status=AppealStatus(r.status),
        explanation=r.explanation,
        contact_channel=r.contact_channel,
        created_by=r.created_by,
        created_at=r.created_at,
        submitted_at=r.submitted_at,
        first_response_due=r.first_response_due,
        expedited=bool(r.expedited),
        assignee=r.assignee,
        claimed_at=r.claimed_at,
        first_responded_at=r.first_responded_at,
        escalated_at=r.escalated_at,
        first_approver=r.first_approver,
        decided_at=r.decided_at,
        idle_expires_at=r.idle_expires_at,
        version=r.version,
    )
