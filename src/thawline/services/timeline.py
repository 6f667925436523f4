"""An account's timeline from the operation log: complete for staff, plain and filtered for the holder."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from thawline.domain.freezes import NO_TIPPING_OFF
from thawline.i18n import MESSAGES, t
from thawline.oplog.entry import decode_entry, parse_ts
from thawline.services import accounts, freezes
from thawline.services.unit_of_work import UnitOfWork

# What a holder may see of their own account's history; everything else (the machine's opinion,
# who holds the case, internal escalations and re-reviews) is staff-only.
HOLDER_ACTIONS = frozenset(
    {
        "account.registered",
        "account.frozen",
        "account.kyc_updated",
        "freeze.released",
        "freeze.expired",
        "appeal.opened",
        "appeal.material_added",
        "appeal.submitted",
        "appeal.resubmitted",
        "appeal.claimed",
        "appeal.needs_more_info",
        "appeal.approved",
        "appeal.rejected",
        "appeal.withdrawn",
        "appeal.closed",
        "verification.cancelled",
        "verification.face_reset",
        "appeal.expired",
        "appeal.expedited",
        "verification.code_sent",
        "verification.code_rejected",
        "verification.sms_passed",
        "verification.face_failed",
        "verification.face_passed",
        "verification.completed",
        "probation.started",
        "probation.ended",
    }
)


class Audience(StrEnum):
    """Who the timeline is for."""

    STAFF = "staff"
    HOLDER = "holder"


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One step in an account's history."""

    seq: int
    ts: datetime
    action: str
    summary: str
    freeze_id: str | None = None
    entry: dict[str, Any] = field(default_factory=dict)  # the full log entry, staff only


def timeline(
    uow: UnitOfWork, account_id: str, audience: Audience, lang: str | None = None
) -> list[TimelineItem]:
    """Everything the log holds about ``account_id``, in order."""
    account = accounts.get(uow, account_id)
    lang = lang or account.language
    holder_reasons = {f.id: f.holder_facing_reason(lang) for f in freezes.list_freezes(uow, account_id)}
    items = []
    for seq, data, _chain in uow.oplog.entries(account_id=account_id):
        entry = decode_entry(data)
        action = str(entry["action"])
        if audience is Audience.HOLDER and action not in HOLDER_ACTIONS:
            continue
        freeze_id = entry.get("subject", {}).get("freeze_id")
        items.append(
            TimelineItem(
                seq=seq,
                ts=parse_ts(str(entry["ts"])),
                action=action,
                summary=_summary(action, entry, holder_reasons.get(freeze_id, ""), audience, lang),
                freeze_id=freeze_id,
                entry=entry if audience is Audience.STAFF else {},
            )
        )
    return items


def _summary(action: str, entry: dict[str, Any], holder_reason: str, audience: Audience, lang: str) -> str:
    key = f"timeline.{action}"
    if audience is Audience.HOLDER:
        return t(key, lang, reason=holder_reason) if action == "account.frozen" else t(key, lang)
    details = entry.get("details") or {}
    category = details.get("category", "")
    if action == "account.frozen":
        neutral = category in {c.value for c in NO_TIPPING_OFF}
        reason = f"{category} ({', '.join(entry.get('reason_codes', []))})"
        return t(key, lang, reason=reason + (" — holder sees a neutral text" if neutral else ""))
    if key not in MESSAGES["en"]:
        return action
    text = t(key, lang)
    codes = entry.get("reason_codes") or []
    return f"{text} ({', '.join(codes)})" if codes else text
