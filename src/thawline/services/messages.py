"""What a notification says: template variables and webhook bodies, built from the recorded change.

Built inside the change's own transaction, so a message describes exactly the state that was
committed with it. Variables never carry personal identifiers: addresses are looked up from the
vault when the message is sent, and the templates greet the holder without a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from thawline.domain.appeals import Appeal, MaterialKind
from thawline.domain.freezes import Freeze
from thawline.i18n import t
from thawline.oplog.entry import LogRecord
from thawline.services import accounts, appeals, freezes
from thawline.services.unit_of_work import UnitOfWork


def when(at: datetime | None, lang: str) -> str | None:
    """A deadline as the holder reads it (UTC, minutes)."""
    if at is None:
        return None
    return at.strftime("%Y-%m-%d %H:%M UTC") if lang == "en" else at.strftime("%Y年%m月%d日 %H:%M（UTC）")


def scope_text(f: Freeze, lang: str) -> str:
    """What a freeze blocks, in words."""
    r = f.restriction
    return t(
        f"scope.{r.scope.value}",
        lang,
        amount=f"{r.limit:,.2f}" if r.limit is not None else "",
        currency=r.currency or "",
        channel=r.channel or "",
    )


def materials(uow: UnitOfWork, f: Freeze, lang: str) -> list[str]:
    """The materials an appeal against ``f`` needs, in the holder's words."""
    req = uow.runtime.appeal_requirements.for_category(f.category)
    kinds = list(req.materials)
    if req.voucher_per_flagged_transaction and appeals.flagged_transactions(f):
        kinds.append(MaterialKind.TRANSACTION_VOUCHER)
    return [t(f"material.{k.value}", lang) for k in dict.fromkeys(kinds)]


@dataclass(frozen=True, slots=True)
class _Context:
    uow: UnitOfWork
    record: LogRecord
    lang: str
    freeze: Freeze | None
    appeal: Appeal | None


Vars = dict[str, Any]


def _frozen(c: _Context) -> Vars | None:
    if c.freeze is None:
        return None
    req = c.uow.runtime.appeal_requirements.for_category(c.freeze.category)
    return {
        "freeze_id": c.freeze.id,
        "reason": c.freeze.holder_facing_reason(c.lang),
        "materials": materials(c.uow, c.freeze, c.lang),
        "self_service": req.self_service is not None,
        "review_by": when(c.freeze.review_by, c.lang),
        "scope_text": scope_text(c.freeze, c.lang),
    }


def _released(c: _Context) -> Vars | None:
    if c.freeze is None:
        return None
    others = freezes.list_freezes(c.uow, c.freeze.account_id, active_only=True)
    # Messages are built at commit, so a probation started by the same change is already stored.
    probation = accounts.get(c.uow, c.freeze.account_id).probation_until
    if probation is not None and probation <= c.uow.runtime.clock.now():
        probation = None
    return {
        "freeze_id": c.freeze.id,
        "probation_until": when(probation, c.lang),
        "still_restricted": any(x.id != c.freeze.id for x in others),
    }


def _in_review(c: _Context) -> Vars | None:
    # A reassignment of a case already in review is not news to the holder.
    before = (c.record.state_before or {}).get("status")
    return {} if before in ("submitted", "resubmitted") else None


def _received(c: _Context) -> Vars | None:
    a = c.appeal
    assert a is not None
    return {
        "round": a.round,
        "first_response_due": when(a.first_response_due, c.lang),
        "expedited": a.expedited,
    }


def _missing(c: _Context) -> Vars | None:
    a = c.appeal
    assert a is not None
    missing = [m.message(c.lang) for m in appeals.completeness(c.uow, a.id, c.lang).missing]
    if c.record.action == "appeal.opened" and not missing:
        return None
    out: Vars = {"missing": missing, "deadline": when(a.idle_expires_at, c.lang)}
    if c.record.action == "appeal.needs_more_info":
        out["note_codes"] = list(c.record.reason_codes)
    return out


def _rejected(c: _Context) -> Vars | None:
    a = c.appeal
    assert a is not None
    rounds = c.uow.runtime.appeal_requirements.rounds
    return {
        "reasons": [t(f"code.{code}", c.lang) for code in c.record.reason_codes],
        "rounds_left": max(0, rounds - a.round),
    }


def _steps_of(c: _Context) -> Vars | None:
    if c.freeze is None:
        return None
    req = c.uow.runtime.appeal_requirements.for_category(c.freeze.category)
    out: Vars = {"steps": [t(f"step.{s}", c.lang) for s in req.verifications]}
    if c.record.action == "verification.started":
        out["expires"] = None
    return out


def _late(c: _Context) -> Vars | None:
    a = c.appeal
    assert a is not None
    return {"first_response_due": when(a.first_response_due, c.lang)}


_BUILDERS: dict[str, tuple[bool, Callable[[_Context], Vars | None]]] = {
    # template: (needs an appeal, builder)
    "frozen": (False, _frozen),
    "restricted": (False, _frozen),
    "released": (False, _released),
    "probation_ended": (False, lambda _c: {}),
    "in_review": (True, _in_review),
    "appeal_received": (True, _received),
    "materials_missing": (True, _missing),
    "needs_more_info": (True, _missing),
    "rejected": (True, _rejected),
    "approved": (True, _steps_of),
    "verification_requested": (True, _steps_of),
    "sla_reminder": (True, _late),
    "verification_code": (True, lambda _c: {"minutes": 5}),
}


def holder_variables(uow: UnitOfWork, template: str, record: LogRecord, lang: str) -> Vars | None:
    """The variables of ``template`` for ``record``; None when this change needs no message after all."""
    s = record.subject
    account_id = s.account_id or ""
    needs_appeal, build = _BUILDERS[template]
    a = appeals.get(uow, s.appeal_id) if s.appeal_id else None
    if needs_appeal and a is None:
        return None
    f = freezes.get(uow, s.freeze_id) if s.freeze_id else None
    specific = build(_Context(uow, record, lang, f, a))
    if specific is None:
        return None
    base: Vars = {
        "account_id": account_id,
        "lang": lang,
        "portal_url": f"{uow.runtime.settings.portal_url.rstrip('/')}/accounts/{account_id}",
    }
    if a is not None:
        base["appeal_id"] = a.id
    return base | specific


def staff_variables(uow: UnitOfWork, template: str, record: LogRecord) -> dict[str, Any] | None:
    """Variables of a staff notice (in the staff language)."""
    s = record.subject
    if not s.appeal_id:
        return None
    a = appeals.get(uow, s.appeal_id)
    f = freezes.get(uow, a.freeze_id)
    lang = uow.runtime.settings.staff_language
    out: dict[str, Any] = {
        "account_id": a.account_id,
        "appeal_id": a.id,
        "freeze_id": a.freeze_id,
        "category": f.category.value,
        "lang": lang,
        "portal_url": f"{uow.runtime.settings.portal_url.rstrip('/')}/console/appeals/{a.id}",
        "first_response_due": when(a.first_response_due, lang) or "-",
    }
    if template == "staff_assigned":
        out["assigned_by"] = record.actor.ref
    elif template == "staff_sla_warning":
        due = a.first_response_due
        now = uow.runtime.clock.now()
        out["hours_left"] = 0 if due is None else max(0, int((due - now).total_seconds() // 3600))
    elif template == "staff_four_eyes_waiting":
        out["first_approver"] = a.first_approver or record.actor.ref
    return out


def webhook_data(uow: UnitOfWork, record: LogRecord, event_type: str) -> dict[str, Any]:
    """The ``data`` object of a webhook: identifiers, status and reasons, never personal data."""
    s = record.subject
    data: dict[str, Any] = {k: v for k, v in s.as_json().items() if k != "ref"}
    status = (record.state_after or {}).get("status")
    if status is not None:
        data["status"] = status
    if record.reason_codes:
        data["reason_codes"] = list(record.reason_codes)
    if event_type in ("account.frozen", "account.restricted") and s.freeze_id:
        f = freezes.get(uow, s.freeze_id)
        data |= {
            **f.restriction.as_json(),
            "category": f.category.value,
            "holder_reason": f.holder_facing_reason("en"),
            "review_by": f.review_by.isoformat(),
        }
    return data
