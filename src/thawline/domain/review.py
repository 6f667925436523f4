"""Reviewing appeals: decisions and their reason codes, the machine pre-review, and four eyes.

The machine pre-review is the first half of a dual review: it checks what a machine can check
(completeness, the vouchers against the flagged transactions, the identity of who filed, a fresh
look at the account's risk) and recommends a decision with a confidence and its reasons. People
decide; where they differ from the machine, the disagreement is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from thawline.domain.errors import ConflictError, InvalidInputError, PermissionDeniedError


class Decision(StrEnum):
    """What a reviewer decides about an appeal."""

    APPROVE = "approve"
    REJECT = "reject"
    NEEDS_MORE_INFO = "needs_more_info"


# The reason codes a decision may carry. Analytics group failed appeals by them.
REASON_CODES: dict[Decision, frozenset[str]] = {
    Decision.APPROVE: frozenset(
        {"evidence_sufficient", "false_positive", "rule_misfire", "identity_confirmed", "risk_resolved"}
    ),
    Decision.REJECT: frozenset(
        {
            "voucher_mismatch",
            "voucher_unreadable",
            "identity_mismatch",
            "insufficient_evidence",
            "risk_confirmed",
            "forged_material",
            "regulatory_hold",
        }
    ),
    Decision.NEEDS_MORE_INFO: frozenset(
        {"voucher_unclear", "voucher_missing", "statement_needed", "explanation_unclear", "id_unclear"}
    ),
}


def check_reason_codes(decision: Decision, codes: tuple[str, ...]) -> None:
    """At least one code, each one known for ``decision``."""
    if not codes:
        raise InvalidInputError("a decision needs at least one reason code", field="reason_codes")
    unknown = sorted(set(codes) - REASON_CODES[decision])
    if unknown:
        known = ", ".join(sorted(REASON_CODES[decision]))
        raise InvalidInputError(
            f"unknown reason codes for '{decision}': {', '.join(unknown)} (known: {known})",
            field="reason_codes",
        )


@dataclass(frozen=True, slots=True)
class FlaggedTransaction:
    """What the freeze's source recorded about one flagged transaction."""

    id: str
    amount: Decimal | None = None
    currency: str | None = None
    occurred_at: datetime | None = None
    order_ref: str | None = None


@dataclass(frozen=True, slots=True)
class DeclaredVoucher:
    """What the holder says one voucher shows."""

    transaction_ids: tuple[str, ...]
    order_ref: str | None = None
    amount: Decimal | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One check of the pre-review and its outcome: ``ok``, ``warn`` or ``fail``."""

    check: str
    outcome: str
    detail: str

    def as_json(self) -> dict[str, str]:
        """JSON form."""
        return {"check": self.check, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class PreReview:
    """The machine's opinion: a recommendation, how sure it is, and why."""

    recommendation: Decision
    confidence: Decimal
    reason_codes: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default=())


# A voucher's time may differ from the recorded one by time zones and settlement delay.
VOUCHER_TIME_TOLERANCE = timedelta(hours=24)


def check_vouchers(flagged: list[FlaggedTransaction], vouchers: list[DeclaredVoucher]) -> list[Finding]:
    """Compare declared voucher data with the flagged transactions (order number, amount, time)."""
    known = {t.id: t for t in flagged}
    out = []
    for v in vouchers:
        label = "+".join(v.transaction_ids)
        facts = [known[t] for t in v.transaction_ids if t in known]
        if not facts:
            out.append(Finding("voucher", "warn", f"{label}: no recorded data to compare with"))
            continue
        if v.order_ref is None and v.amount is None and v.occurred_at is None:
            out.append(Finding("voucher", "warn", f"{label}: the voucher's data was not declared"))
            continue
        problems = []
        if v.amount is not None and all(f.amount is not None for f in facts):
            recorded = sum((f.amount or Decimal(0) for f in facts), Decimal(0))
            if recorded != v.amount:
                problems.append(f"amount {_money(v.amount)} ≠ recorded {_money(recorded)}")
        one = facts[0] if len(facts) == 1 else FlaggedTransaction("")
        if v.order_ref is not None and one.order_ref is not None and v.order_ref.strip() != one.order_ref:
            problems.append(f"order {v.order_ref} ≠ recorded {one.order_ref}")
        if (
            v.occurred_at is not None
            and one.occurred_at is not None
            and abs(v.occurred_at - one.occurred_at) > VOUCHER_TIME_TOLERANCE
        ):
            problems.append("time differs from the recorded one by more than 24 h")
        if problems:
            out.append(Finding("voucher", "fail", f"{label}: " + "; ".join(problems)))
        else:
            out.append(Finding("voucher", "ok", f"{label}: matches the recorded transaction"))
    return out


def _money(amount: Decimal) -> str:
    """88.500000 → 88.50; more precise amounts keep their digits."""
    cents = amount.quantize(Decimal("0.01"))
    return str(cents) if cents == amount else format(amount.normalize(), "f")


def recommend(
    *,
    complete: bool,
    voucher_findings: list[Finding],
    filed_by_holder_side: bool,
    contact_verified: bool,
    other_active_freezes: int,
    high_severity: bool,
) -> PreReview:
    """Combine the checks into a recommendation with a confidence between 0 and 1."""
    findings = [
        Finding("completeness", "ok" if complete else "fail", "all required materials present"),
        *voucher_findings,
        Finding(
            "identity",
            "ok" if filed_by_holder_side and contact_verified else "warn",
            "filed by the holder or their integrator, contact verified"
            if filed_by_holder_side and contact_verified
            else "contact not verified on the account",
        ),
        Finding(
            "fresh_risk",
            "warn" if other_active_freezes else "ok",
            f"{other_active_freezes} other active freeze(s) on the account",
        ),
    ]
    if high_severity:
        findings.append(Finding("severity", "warn", "high-severity freeze: people decide, with four eyes"))
    fails = [f for f in findings if f.outcome == "fail"]
    warns = [f for f in findings if f.outcome == "warn"]
    if any(f.check == "voucher" for f in fails):
        return PreReview(
            Decision.REJECT, _confidence(0.9, len(warns)), ("voucher_mismatch",), tuple(findings)
        )
    if fails:
        return PreReview(
            Decision.NEEDS_MORE_INFO, _confidence(0.7, len(warns)), ("voucher_missing",), tuple(findings)
        )
    undeclared = any(f.check == "voucher" and f.outcome == "warn" for f in findings)
    if undeclared:
        return PreReview(
            Decision.NEEDS_MORE_INFO, _confidence(0.6, len(warns) - 1), ("voucher_unclear",), tuple(findings)
        )
    base = 0.55 if high_severity else 0.95
    return PreReview(
        Decision.APPROVE, _confidence(base, len(warns)), ("evidence_sufficient",), tuple(findings)
    )


def _confidence(base: float, warnings: int) -> Decimal:
    value = max(base - 0.1 * max(warnings, 0), 0.05)
    return Decimal(str(round(value, 3)))


def actor_id(ref: str) -> str:
    """The id part of a ``kind:id`` reference."""
    return ref.split(":", 1)[-1]


def check_reviewer(
    *,
    reviewer: str,
    freeze_created_by: str,
    conflicted: bool,
    first_approver: str | None = None,
    filed_by: str | None = None,
) -> None:
    """Who may decide: never the freeze's creator or the appeal's filer, never a linked reviewer, never
    the same approver twice. Identities compare by id, whatever kind they acted as."""
    if conflicted:
        raise PermissionDeniedError("you are linked to this account and may not review it")
    if actor_id(reviewer) == actor_id(freeze_created_by):
        raise ConflictError("whoever created the freeze may not review it")
    if filed_by is not None and actor_id(reviewer) == actor_id(filed_by):
        raise ConflictError("whoever filed the appeal may not review it")
    if first_approver is not None and actor_id(first_approver) == actor_id(reviewer):
        raise ConflictError("four eyes: the second approval must come from a different reviewer")
