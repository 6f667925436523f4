"""May this account do this now? Derived from every freeze in force on the account."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from thawline.domain.freezes import Freeze, FreezeScope, Operation


class AccountStatus(StrEnum):
    """What an account's freezes add up to."""

    ACTIVE = "active"
    RESTRICTED = "restricted"  # some freezes in force, none of them full
    FROZEN = "frozen"  # a full freeze in force


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny, and if denied which freeze blocks and what the holder is told."""

    allowed: bool
    code: str  # "allowed", "frozen" or "probation"
    freeze_id: str | None = None
    category: str | None = None
    holder_reason: str | None = None


ALLOW = Decision(allowed=True, code="allowed")


def in_force(freezes: Iterable[Freeze], now: datetime) -> list[Freeze]:
    """The freezes that bind now, the broadest and oldest first."""
    active = [f for f in freezes if f.in_force(now)]
    return sorted(active, key=lambda f: (f.restriction.scope is not FreezeScope.FULL, f.created_at, f.id))


def status(freezes: Iterable[Freeze], now: datetime) -> AccountStatus:
    """The account's status as its freezes define it."""
    binding = in_force(freezes, now)
    if not binding:
        return AccountStatus.ACTIVE
    if binding[0].restriction.scope is FreezeScope.FULL:
        return AccountStatus.FROZEN
    return AccountStatus.RESTRICTED


def authorize(freezes: Iterable[Freeze], op: Operation, now: datetime, lang: str = "en") -> Decision:
    """Allow ``op`` unless a freeze in force blocks it; the first blocking freeze is named."""
    for freeze in in_force(freezes, now):
        if freeze.restriction.blocks(op):
            return Decision(
                allowed=False,
                code="frozen",
                freeze_id=freeze.id,
                category=freeze.category.value,
                holder_reason=freeze.holder_facing_reason(lang),
            )
    return ALLOW


PROBATION_REASON = {
    "en": "Your account was recently unfrozen: large transactions are paused until {until} UTC.",
    "zh-CN": "您的账户刚解除冻结：{until}（UTC）前暂不支持大额交易。",
}


def probation(
    op: Operation, now: datetime, until: datetime, limits: dict[str, Decimal], lang: str = "en"
) -> Decision:
    """During probation, deny transactions above the large-amount limit of their currency.

    A currency without a configured limit cannot be compared: it is denied rather than guessed.
    """
    if now >= until:
        return ALLOW
    limit = limits.get(op.currency)
    if limit is not None and op.amount <= limit:
        return ALLOW
    text = PROBATION_REASON.get(lang, PROBATION_REASON["en"])
    return Decision(
        allowed=False,
        code="probation",
        category="probation",
        holder_reason=text.format(until=until.strftime("%Y-%m-%d %H:%M")),
    )
