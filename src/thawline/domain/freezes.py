"""Freezes: first-class restrictions on an account, each with its scope, reason, source and deadlines.

Invariant: a freeze moves only along ``ALLOWED`` (active → released | expired), through
:meth:`Freeze.move`; what an account may do is derived from all of its active freezes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from thawline.domain.errors import ConflictError, InvalidInputError


class FreezeScope(StrEnum):
    """What a freeze blocks."""

    FULL = "full"
    DEBIT = "debit"
    CREDIT = "credit"
    AMOUNT_ABOVE = "amount_above"
    CHANNEL = "channel"
    COUNTERPARTY = "counterparty"


class ReasonCategory(StrEnum):
    """Why an account was frozen (the source document's triggers)."""

    ABNORMAL_LOGIN = "abnormal_login"
    HIGH_FREQUENCY = "high_frequency"
    AMOUNT_ANOMALY = "amount_anomaly"
    IP_DEVICE = "ip_device"
    BLACKLIST = "blacklist"
    BEHAVIOR = "behavior"
    LINKED_RISK = "linked_risk"
    KYC_INCOMPLETE = "kyc_incomplete"
    AML = "aml"
    REGULATOR = "regulator"
    MANUAL = "manual"


class SourceKind(StrEnum):
    """Who or what imposed a freeze."""

    RULE = "rule"
    REVIEWER = "reviewer"
    POLICY_RESCREEN = "policy_rescreen"
    REGULATOR_ORDER = "regulator_order"


class FreezeStatus(StrEnum):
    """Where a freeze is in its life."""

    ACTIVE = "active"
    RELEASED = "released"
    EXPIRED = "expired"


ALLOWED: dict[FreezeStatus, frozenset[FreezeStatus]] = {
    FreezeStatus.ACTIVE: frozenset({FreezeStatus.RELEASED, FreezeStatus.EXPIRED}),
    FreezeStatus.RELEASED: frozenset(),
    FreezeStatus.EXPIRED: frozenset(),
}

# Telling the holder why would tip them off (AML rules): they see a neutral text instead.
NO_TIPPING_OFF = frozenset({ReasonCategory.AML, ReasonCategory.REGULATOR})
# Releasing these needs a second, different approver (four eyes).
HIGH_SEVERITY = frozenset(
    {ReasonCategory.AML, ReasonCategory.BLACKLIST, ReasonCategory.LINKED_RISK, ReasonCategory.REGULATOR}
)

NEUTRAL_HOLDER_REASON = {
    "en": "Your account is restricted while we complete a routine compliance review.",
    "zh-CN": "您的账户因例行合规审查暂时受限，审查完成后将通知您。",
}


class Direction(StrEnum):
    """Money leaving (debit) or entering (credit) the account."""

    DEBIT = "debit"
    CREDIT = "credit"


@dataclass(frozen=True, slots=True)
class Restriction:
    """The scope of a freeze and its parameter (limit, channel or counterparty)."""

    scope: FreezeScope
    limit: Decimal | None = None
    currency: str | None = None
    channel: str | None = None
    counterparty: str | None = None

    def __post_init__(self) -> None:
        needs = {
            FreezeScope.AMOUNT_ABOVE: ("limit", self.limit is not None and self.currency is not None),
            FreezeScope.CHANNEL: ("channel", bool(self.channel)),
            FreezeScope.COUNTERPARTY: ("counterparty", bool(self.counterparty)),
        }
        if self.scope in needs and not needs[self.scope][1]:
            name = needs[self.scope][0]
            raise InvalidInputError(f"a '{self.scope}' freeze needs {name}", field=f"restriction.{name}")
        if self.limit is not None and self.limit < 0:
            raise InvalidInputError("limit must not be negative", field="restriction.limit")

    def blocks(self, op: Operation) -> bool:
        """True when this restriction forbids ``op``."""
        scope = self.scope
        if scope is FreezeScope.DEBIT or scope is FreezeScope.CREDIT:
            return op.direction.value == scope.value
        if scope is FreezeScope.AMOUNT_ABOVE:
            # A limit in another currency cannot be compared here: deny rather than guess.
            return op.currency != self.currency or op.amount > (self.limit or Decimal(0))
        if scope is FreezeScope.CHANNEL:
            return op.channel == self.channel
        if scope is FreezeScope.COUNTERPARTY:
            return op.counterparty == self.counterparty
        return True  # FULL

    def as_json(self) -> dict[str, str]:
        """JSON form (amounts as decimal strings)."""
        out = {"scope": self.scope.value}
        for name in ("currency", "channel", "counterparty"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.limit is not None:
            out["limit"] = str(self.limit)
        return out


@dataclass(frozen=True, slots=True)
class Operation:
    """Something an account wants to do now."""

    direction: Direction
    amount: Decimal
    currency: str
    channel: str | None = None
    counterparty: str | None = None


@dataclass(frozen=True, slots=True)
class Freeze:
    """One freeze on one account."""

    id: str
    account_id: str
    restriction: Restriction
    category: ReasonCategory
    reason_codes: tuple[str, ...]
    source: SourceKind
    source_ref: str  # rule id@version, reviewer id, policy id or regulator order number
    legal_basis: str
    internal_reason: str
    holder_reason: str
    created_by: str
    created_at: datetime
    review_by: datetime  # mandatory re-review date
    expires_at: datetime | None = None
    status: FreezeStatus = FreezeStatus.ACTIVE
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    evidence: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.review_by <= self.created_at:
            raise InvalidInputError("the re-review date must be after the freeze starts", field="review_by")
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise InvalidInputError("the expiry must be after the freeze starts", field="expires_at")

    def in_force(self, now: datetime) -> bool:
        """Active and not past its expiry."""
        return self.status is FreezeStatus.ACTIVE and (self.expires_at is None or now < self.expires_at)

    def holder_facing_reason(self, lang: str = "en") -> str:
        """What the holder is told: neutral for AML and regulator freezes (no tipping-off)."""
        if self.category in NO_TIPPING_OFF:
            return NEUTRAL_HOLDER_REASON.get(lang, NEUTRAL_HOLDER_REASON["en"])
        return self.holder_reason

    def move(self, to: FreezeStatus, *, by: str, reason: str, at: datetime) -> Freeze:
        """The one guarded transition; illegal moves raise ConflictError and change nothing."""
        if to not in ALLOWED[self.status]:
            raise ConflictError(f"freeze {self.id} is {self.status}; it cannot become {to}")
        return replace(self, status=to, ended_at=at, ended_by=by, end_reason=reason)

    def state(self) -> dict[str, str]:
        """The small state snapshot recorded before and after changes."""
        return {"status": self.status.value, **self.restriction.as_json()}
