"""Appeals: a holder's case against one freeze, with the materials its reason calls for.

Invariant: an appeal moves only along ``ALLOWED`` through :meth:`Appeal.move`, and it can only be
submitted when :func:`missing_items` finds nothing missing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from thawline.domain.errors import ConflictError, InvalidInputError
from thawline.domain.freezes import ReasonCategory
from thawline.i18n import t


class MaterialKind(StrEnum):
    """What a piece of material is."""

    ID_DOCUMENT = "id_document"
    TRANSACTION_VOUCHER = "transaction_voucher"
    BANK_STATEMENT = "bank_statement"
    EXPLANATION_LETTER = "explanation_letter"
    BUSINESS_LICENSE = "business_license"
    SOURCE_OF_FUNDS = "source_of_funds"
    OTHER = "other"


class AppealStatus(StrEnum):
    """Where an appeal is."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    SECOND_APPROVAL = "second_approval"  # four eyes: approved once, waiting for a second reviewer
    NEEDS_MORE_INFO = "needs_more_info"
    RESUBMITTED = "resubmitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"  # a draft or a needs-more-info appeal left idle past its deadline


S = AppealStatus
ALLOWED: dict[AppealStatus, frozenset[AppealStatus]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.WITHDRAWN, S.EXPIRED}),
    S.SUBMITTED: frozenset({S.IN_REVIEW, S.WITHDRAWN}),
    S.IN_REVIEW: frozenset({S.APPROVED, S.SECOND_APPROVAL, S.REJECTED, S.NEEDS_MORE_INFO, S.WITHDRAWN}),
    S.SECOND_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.NEEDS_MORE_INFO, S.WITHDRAWN}),
    S.NEEDS_MORE_INFO: frozenset({S.RESUBMITTED, S.WITHDRAWN, S.EXPIRED}),
    S.RESUBMITTED: frozenset({S.IN_REVIEW, S.WITHDRAWN}),
    S.APPROVED: frozenset(),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.EXPIRED: frozenset(),
}
OPEN = frozenset(s for s, nxt in ALLOWED.items() if nxt)
EDITABLE = frozenset({S.DRAFT, S.NEEDS_MORE_INFO})
# Waiting for a reviewer: what the review queue shows.
QUEUED = frozenset({S.SUBMITTED, S.RESUBMITTED, S.IN_REVIEW, S.SECOND_APPROVAL})
# Closed without a decision on the merits: they do not count as a rejected round.
LAPSED = frozenset({S.WITHDRAWN, S.EXPIRED})

# Shown with every checklist: an appeal must not itself look like the behaviour that froze the account.
GUIDANCE = {
    "en": [
        "Appeal from a phone or computer and a network you normally use; a new device behind a VPN or proxy"
        " can trigger another restriction.",
        "Do not change your phone number, bank card or password while the appeal is open.",
        "Send clear photos or PDFs; every flagged transaction needs its own voucher (order screenshot or"
        " bank record).",
    ],
    "zh-CN": [
        "请使用常用的手机或电脑及常用网络提交申诉；通过 VPN 或代理使用新设备可能再次触发限制。",
        "申诉处理期间请勿更换手机号、银行卡或密码。",
        "请上传清晰的照片或 PDF；每一笔被标记的交易都需要对应的交易凭证（订单截图或银行流水）。",
    ],
}


@dataclass(frozen=True, slots=True)
class CategoryRequirements:
    """What one reason category needs."""

    materials: tuple[MaterialKind, ...] = ()
    voucher_per_flagged_transaction: bool = False
    verifications: tuple[str, ...] = ()
    self_service: str | None = None


@dataclass(frozen=True, slots=True)
class RequirementsMatrix:
    """The requirements matrix (a TOML file), with appeal rounds and the first-response deadline."""

    categories: dict[ReasonCategory, CategoryRequirements]
    rounds: int = 2
    first_response: timedelta = timedelta(hours=48)

    @classmethod
    def from_toml(cls, text: str) -> RequirementsMatrix:
        """Parse and check a matrix: every category present, only known keys and kinds."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"appeal requirements: not valid TOML ({exc})") from exc
        raw: dict[str, Any] = doc.get("categories", {})
        unknown = set(raw) - {c.value for c in ReasonCategory}
        missing = {c.value for c in ReasonCategory} - set(raw)
        if unknown or missing:
            raise ValueError(f"appeal requirements: unknown {sorted(unknown)}, missing {sorted(missing)}")
        categories = {}
        for name, spec in raw.items():
            extra = set(spec) - {
                "materials",
                "voucher_per_flagged_transaction",
                "verifications",
                "self_service",
            }
            if extra:
                raise ValueError(f"appeal requirements: {name} has unknown keys {sorted(extra)}")
            try:
                materials = tuple(MaterialKind(m) for m in spec.get("materials", []))
            except ValueError as exc:
                raise ValueError(f"appeal requirements: {name}: {exc}") from exc
            categories[ReasonCategory(name)] = CategoryRequirements(
                materials=materials,
                voucher_per_flagged_transaction=bool(spec.get("voucher_per_flagged_transaction", False)),
                verifications=tuple(spec.get("verifications", [])),
                self_service=spec.get("self_service"),
            )
        rounds = int(doc.get("rounds", 2))
        if rounds < 1:
            raise ValueError("appeal requirements: rounds must be at least 1")
        return cls(categories, rounds, timedelta(hours=float(doc.get("first_response_hours", 48))))

    def for_category(self, category: ReasonCategory) -> CategoryRequirements:
        """The requirements of one category."""
        return self.categories[category]


@dataclass(frozen=True, slots=True)
class Material:
    """One uploaded piece of material, stored by content hash."""

    id: str
    kind: MaterialKind
    sha256: str
    media_type: str
    size: int
    transaction_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Missing:
    """One thing an appeal still lacks."""

    code: str  # "explanation_missing", "material_missing" or "voucher_missing"
    kind: MaterialKind | None = None
    transaction_ids: tuple[str, ...] = ()

    def message(self, lang: str = "en") -> str:
        """The holder-facing sentence, e.g. 'voucher missing for transactions T1 and T7'."""
        zh = lang == "zh-CN"
        if self.code == "explanation_missing":
            return "请填写申诉说明" if zh else "the explanation is missing"
        if self.code == "voucher_missing":
            ids = "、".join(self.transaction_ids) if zh else _and(self.transaction_ids)
            return f"缺少以下交易的交易凭证：{ids}" if zh else f"voucher missing for transactions {ids}"
        kind = self.kind.value if self.kind else "other"
        label = t(f"material.{kind}", lang)
        return f"缺少材料：{label}" if zh else f"missing: {label}"


def _and(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def missing_items(
    req: CategoryRequirements, flagged: tuple[str, ...], materials: list[Material], explanation: str
) -> list[Missing]:
    """Exactly what is still missing (empty when the appeal is complete)."""
    out = []
    if not explanation.strip():
        out.append(Missing("explanation_missing"))
    kinds = {m.kind for m in materials}
    out += [Missing("material_missing", kind) for kind in req.materials if kind not in kinds]
    if req.voucher_per_flagged_transaction:
        covered = {
            t for m in materials if m.kind is MaterialKind.TRANSACTION_VOUCHER for t in m.transaction_ids
        }
        uncovered = tuple(t for t in flagged if t not in covered)
        if uncovered:
            out.append(Missing("voucher_missing", MaterialKind.TRANSACTION_VOUCHER, uncovered))
    return out


@dataclass(frozen=True, slots=True)
class Appeal:
    """One appeal against one freeze."""

    id: str
    freeze_id: str
    account_id: str
    round: int
    status: AppealStatus
    explanation: str
    contact_channel: str
    created_by: str
    created_at: datetime
    submitted_at: datetime | None = None
    first_response_due: datetime | None = None
    expedited: bool = False
    assignee: str | None = None
    claimed_at: datetime | None = None
    first_responded_at: datetime | None = None
    escalated_at: datetime | None = None
    first_approver: str | None = None
    decided_at: datetime | None = None
    idle_expires_at: datetime | None = None
    version: int = 0  # bumped by every stored change; a stale copy cannot be saved

    def move(self, to: AppealStatus, *, at: datetime, first_response: timedelta | None = None) -> Appeal:
        """The one guarded transition; illegal moves raise ConflictError and change nothing."""
        if to not in ALLOWED[self.status]:
            raise ConflictError(f"appeal {self.id} is {self.status}; it cannot become {to}")
        if to in (S.SUBMITTED, S.RESUBMITTED):
            if first_response is None:
                raise InvalidInputError("submitting needs the first-response deadline")
            return replace(
                self,
                status=to,
                submitted_at=at,
                first_response_due=at + first_response,
                first_responded_at=None,
                escalated_at=None,
                assignee=None,
                claimed_at=None,
                first_approver=None,
                idle_expires_at=None,
            )
        return replace(self, status=to)
