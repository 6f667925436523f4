"""Accounts, their freezes, and the authorisation check over HTTP."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.domain import authorization
from thawline.domain.apikeys import Scope
from thawline.domain.errors import PermissionDeniedError
from thawline.domain.freezes import (
    Direction,
    Freeze,
    FreezeScope,
    Operation,
    ReasonCategory,
    Restriction,
    SourceKind,
)
from thawline.domain.review import FlaggedTransaction
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef
from thawline.services import accounts, freezes, selfservice, timeline
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.authorizer import Authorizer
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["accounts and freezes"])
CanReadAccounts = Annotated[ApiKeyInfo, Depends(require(Scope.ACCOUNTS_READ))]
CanWriteAccounts = Annotated[ApiKeyInfo, Depends(require(Scope.ACCOUNTS_WRITE))]
CanFreeze = Annotated[ApiKeyInfo, Depends(require(Scope.FREEZES_WRITE))]
CanAuthorize = Annotated[ApiKeyInfo, Depends(require(Scope.AUTHZ_CHECK))]
Token = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@/+-]{1,64}$")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


def _actor(key: ApiKeyInfo) -> Actor:
    return Actor(ActorKind.INTEGRATOR, key.id)


class HolderIn(BaseModel):
    """The account holder's identity; stored encrypted in the vault, never logged."""

    name: str = Field(min_length=1, max_length=128)
    resident_id: str | None = Field(default=None, description="Chinese resident ID number (居民身份证号).")
    phone: str | None = Field(
        default=None, description="Phone number; +86 is assumed without a country code."
    )
    email: str | None = Field(
        default=None, max_length=254, description="Email address for notices (needs THAWLINE_SMTP_HOST)."
    )
    bank_cards: list[str] = Field(default_factory=list, max_length=20)


class AccountIn(BaseModel):
    """Register an account (a replay of the same registration is harmless)."""

    id: Token
    holder: HolderIn
    kyc_level: str = Field(default="none", pattern="^(none|basic|full)$")
    vip_tier: int = Field(default=0, ge=0, le=9)
    language: str = Field(default="zh-CN", pattern="^(zh-CN|en)$")


class RestrictionIn(BaseModel):
    """What the freeze blocks."""

    scope: FreezeScope
    limit: Decimal | None = Field(
        default=None, ge=0, description="For amount_above: the largest allowed amount."
    )
    currency: str | None = Field(default=None, pattern="^[A-Z]{3}$")
    channel: str | None = Field(default=None, max_length=64)
    counterparty: str | None = Field(default=None, max_length=128)


class EvidenceIn(BaseModel):
    """A reference to the event, transaction, device or IP that justifies the freeze."""

    kind: Token
    id: Token


class TransactionIn(BaseModel):
    """What the source knows of one flagged transaction; the pre-review checks vouchers against it."""

    id: Token
    amount: Decimal | None = Field(default=None, ge=0, max_digits=24, decimal_places=6)
    currency: str | None = Field(default=None, pattern="^[A-Z]{3}$")
    occurred_at: AwareDatetime | None = None
    order_ref: str | None = Field(default=None, min_length=1, max_length=128)


class FreezeIn(BaseModel):
    """Put a freeze on an account."""

    restriction: RestrictionIn
    category: ReasonCategory
    reason_codes: list[Token] = Field(min_length=1, max_length=20)
    source: SourceKind
    source_ref: Token = Field(description="Rule id, reviewer id, policy id or regulator order number.")
    rule_version: int | None = Field(default=None, ge=0)
    legal_basis: str = Field(min_length=1, max_length=500)
    internal_reason: str = Field(min_length=1, max_length=2000)
    holder_reason: str = Field(min_length=1, max_length=500, description="Plain words for the holder.")
    evidence: list[EvidenceIn] = Field(default_factory=list, max_length=100)
    review_by: datetime | None = Field(
        default=None, description="Mandatory re-review date (default 30 days)."
    )
    expires_at: datetime | None = None
    transactions: list[TransactionIn] = Field(
        default_factory=list,
        max_length=100,
        description="The flagged transactions; each also becomes a transaction evidence reference.",
    )


class FreezeOut(BaseModel):
    """A freeze as an integrator sees it."""

    id: str
    account_id: str
    status: str
    restriction: dict[str, str]
    category: str
    reason_codes: list[str]
    source: str
    holder_reason: str = Field(description="What the holder is told (neutral for AML and regulator freezes).")
    internal_reason: str | None = Field(
        default=None, description="Only for keys with the freezes:write scope."
    )
    created_at: datetime
    review_by: datetime
    expires_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, f: Freeze, lang: str, *, internal: bool) -> FreezeOut:
        """Render a freeze for a caller."""
        return cls(
            id=f.id,
            account_id=f.account_id,
            status=f.status.value,
            restriction=f.restriction.as_json(),
            category=f.category.value,
            reason_codes=list(f.reason_codes),
            source=f.source.value,
            holder_reason=f.holder_facing_reason(lang),
            internal_reason=f.internal_reason if internal else None,
            created_at=f.created_at,
            review_by=f.review_by,
            expires_at=f.expires_at,
            ended_at=f.ended_at,
        )


class AccountOut(BaseModel):
    """An account and its freezes (no personal identifiers)."""

    id: str
    status: str
    kyc_level: str
    vip_tier: int
    language: str
    created_at: datetime
    probation_until: datetime | None = Field(
        description="After a reviewed release, large transactions are denied until then."
    )
    freezes: list[FreezeOut]


class ReleaseIn(BaseModel):
    """Why the freeze is lifted."""

    reason: str = Field(min_length=1, max_length=2000)


class AuthorizeIn(BaseModel):
    """May this account do this now?"""

    account_id: Token
    direction: Direction
    amount: Decimal = Field(ge=0, max_digits=24, decimal_places=6)
    currency: str = Field(pattern="^[A-Z]{3}$")
    channel: str | None = Field(default=None, max_length=64)
    counterparty: str | None = Field(default=None, max_length=128)


class DecisionOut(BaseModel):
    """Allow or deny, with the blocking freeze and what to tell the holder."""

    allowed: bool
    code: str
    freeze_id: str | None = None
    category: str | None = None
    holder_reason: str | None = None


def _account_out(uow: UnitOfWork, account_id: str, key: ApiKeyInfo) -> AccountOut:
    view = accounts.get(uow, account_id)
    all_freezes = freezes.list_freezes(uow, account_id)
    internal = key.allows(Scope.FREEZES_WRITE)
    return AccountOut(
        id=view.id,
        status=authorization.status(all_freezes, uow.runtime.clock.now()).value,
        kyc_level=view.kyc_level,
        vip_tier=view.vip_tier,
        language=view.language,
        created_at=view.created_at,
        probation_until=view.probation_until,
        freezes=[FreezeOut.of(f, view.language, internal=internal) for f in all_freezes],
    )


@router.post("/accounts", response_model=AccountOut, status_code=201)
def register_account(
    body: AccountIn, runtime: RuntimeDep, key: CanWriteAccounts, response: Response
) -> AccountOut:
    """Register an account and its holder (identity goes to the encrypted vault). 200 on a replay."""
    cmd = accounts.RegisterAccount(
        account_id=body.id,
        holder_name=body.holder.name,
        resident_id=body.holder.resident_id,
        phone=body.holder.phone,
        email=body.holder.email,
        bank_cards=tuple(body.holder.bank_cards),
        kyc_level=body.kyc_level,
        vip_tier=body.vip_tier,
        language=body.language,
        integrator=key.id,
    )
    with UnitOfWork(runtime) as uow:
        _view, created = accounts.register(uow, cmd, _actor(key))
        uow.commit()
    if not created:
        response.status_code = 200
    with UnitOfWork(runtime, read_only=True) as uow:
        return _account_out(uow, body.id, key)


@router.get("/accounts/{account_id}", response_model=AccountOut)
def get_account(account_id: str, uow: ReadUow, key: CanReadAccounts) -> AccountOut:
    """An account, its derived status and its freezes."""
    return _account_out(uow, account_id, key)


class KycIn(BaseModel):
    """The holder's new KYC level."""

    kyc_level: str = Field(pattern="^(none|basic|full)$")


class KycOut(BaseModel):
    """The recorded level and the freezes it lifted."""

    account_id: str
    kyc_level: str
    released_freezes: list[str] = Field(description="Freezes lifted because KYC is now complete.")


@router.post("/accounts/{account_id}/kyc", response_model=KycOut)
def update_kyc(account_id: str, body: KycIn, runtime: RuntimeDep, key: CanWriteAccounts) -> KycOut:
    """Record the holder's KYC level; reaching full KYC releases kyc_incomplete freezes (self-service)."""
    with UnitOfWork(runtime) as uow:
        released = selfservice.update_kyc(uow, account_id, body.kyc_level, _actor(key))
        uow.commit()
    return KycOut(account_id=account_id, kyc_level=body.kyc_level, released_freezes=[f.id for f in released])


@router.post("/accounts/{account_id}/freezes", response_model=FreezeOut, status_code=201)
def freeze_account(
    account_id: str,
    body: FreezeIn,
    *,
    runtime: RuntimeDep,
    key: CanFreeze,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> FreezeOut:
    """Freeze an account. Send an Idempotency-Key header: a retry returns the first freeze (200)."""
    r = body.restriction
    cmd = freezes.FreezeAccount(
        account_id=account_id,
        restriction=Restriction(
            r.scope, limit=r.limit, currency=r.currency, channel=r.channel, counterparty=r.counterparty
        ),
        category=body.category,
        reason_codes=tuple(body.reason_codes),
        source=body.source,
        source_ref=body.source_ref,
        legal_basis=body.legal_basis,
        internal_reason=body.internal_reason,
        holder_reason=body.holder_reason,
        evidence=tuple(EvidenceRef(e.kind, e.id) for e in body.evidence),
        review_by=body.review_by,
        expires_at=body.expires_at,
        rule_version=body.rule_version,
        transactions=tuple(
            FlaggedTransaction(t.id, t.amount, t.currency, t.occurred_at, t.order_ref)
            for t in body.transactions
        ),
        idempotency_key=None if idempotency_key is None else f"{key.id}:{idempotency_key}",
    )
    with UnitOfWork(runtime) as uow:
        made, created = freezes.freeze_account(uow, cmd, _actor(key))
        language = accounts.get(uow, account_id).language
        uow.commit()
    if not created:
        response.status_code = 200
    return FreezeOut.of(made, language, internal=True)


@router.post("/freezes/{freeze_id}/release", response_model=FreezeOut)
def release_freeze(freeze_id: str, body: ReleaseIn, runtime: RuntimeDep, key: CanFreeze) -> FreezeOut:
    """Lift one freeze (AML, blacklist, linked-risk and regulator freezes go through reviewed appeals)."""
    with UnitOfWork(runtime) as uow:
        released = freezes.release(uow, freeze_id, _actor(key), body.reason)
        language = accounts.get(uow, released.account_id).language
        uow.commit()
    return FreezeOut.of(released, language, internal=True)


class TimelineItemOut(BaseModel):
    """One step in an account's history, from the operation log."""

    seq: int
    ts: datetime
    action: str
    summary: str
    freeze_id: str | None = None
    entry: dict[str, Any] | None = Field(
        default=None, description="The full log entry (staff audience only)."
    )


@router.get("/accounts/{account_id}/timeline", response_model=list[TimelineItemOut])
def account_timeline(
    account_id: str,
    uow: ReadUow,
    key: CanReadAccounts,
    audience: timeline.Audience = timeline.Audience.HOLDER,
    lang: Annotated[str | None, Query(pattern="^(zh-CN|en)$")] = None,
) -> list[TimelineItemOut]:
    """What happened to the account, in order; the staff audience needs freezes:write and sees every entry."""
    if audience is timeline.Audience.STAFF and not key.allows(Scope.FREEZES_WRITE):
        raise PermissionDeniedError("the staff timeline needs the 'freezes:write' scope")
    return [
        TimelineItemOut(
            seq=i.seq,
            ts=i.ts,
            action=i.action,
            summary=i.summary,
            freeze_id=i.freeze_id,
            entry=i.entry or None,
        )
        for i in timeline.timeline(uow, account_id, audience, lang)
    ]


@router.post("/authorize", response_model=DecisionOut)
async def authorize(body: AuthorizeIn, request: Request, _key: CanAuthorize) -> DecisionOut:
    """May the account do this now? Allow, or deny naming the freeze (or probation) and the holder's text."""
    op = Operation(
        body.direction, body.amount, body.currency, channel=body.channel, counterparty=body.counterparty
    )
    authorizer: Authorizer = request.app.state.authorizer
    d = authorizer.check(body.account_id, op)
    return DecisionOut(
        allowed=d.allowed,
        code=d.code,
        freeze_id=d.freeze_id,
        category=d.category,
        holder_reason=d.holder_reason,
    )
