"""Appeals over HTTP: open, upload materials, check completeness, submit, withdraw."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.domain.apikeys import Scope
from thawline.domain.appeals import Appeal, Material, MaterialKind
from thawline.domain.errors import InvalidInputError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import appeals, expedite
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["appeals"])
CanAppeal = Annotated[ApiKeyInfo, Depends(require(Scope.APPEALS_WRITE))]
Lang = Annotated[str, Query(pattern="^(zh-CN|en)$")]


def _actor(key: ApiKeyInfo) -> Actor:
    # The integrator files on the holder's behalf; the holder portal (#6) will act as the holder.
    return Actor(ActorKind.INTEGRATOR, key.id)


class ContactIn(BaseModel):
    """How the holder wants to be reached: the verified phone on file, or in-site messages."""

    channel: str = Field(pattern="^(phone|in_site)$")
    value: str | None = Field(default=None, max_length=32)


class AppealIn(BaseModel):
    """The appeal form."""

    explanation: str = Field(
        default="", max_length=5000, description="In the holder's words; required to submit."
    )
    contact: ContactIn


class MaterialOut(BaseModel):
    """An uploaded piece of material."""

    id: str
    kind: MaterialKind
    sha256: str
    media_type: str
    size: int
    transaction_ids: list[str]

    @classmethod
    def of(cls, m: Material) -> MaterialOut:
        """Render a material."""
        return cls(
            id=m.id,
            kind=m.kind,
            sha256=m.sha256,
            media_type=m.media_type,
            size=m.size,
            transaction_ids=list(m.transaction_ids),
        )


class MissingOut(BaseModel):
    """One thing the appeal still lacks."""

    code: str
    kind: MaterialKind | None
    transaction_ids: list[str]
    message: str


class CompletenessOut(BaseModel):
    """The checklist: what is required, what is missing, and how not to trigger another freeze."""

    complete: bool
    missing: list[MissingOut]
    required_materials: list[MaterialKind]
    flagged_transactions: list[str]
    verifications_before_release: list[str]
    guidance: list[str]


class AppealOut(BaseModel):
    """An appeal with its materials."""

    id: str
    freeze_id: str
    account_id: str
    round: int
    status: str
    contact_channel: str
    created_at: datetime
    submitted_at: datetime | None
    first_response_due: datetime | None
    expedited: bool
    assignee: str | None = Field(description="The reviewer holding the case, as 'reviewer:<key id>'.")
    first_responded_at: datetime | None
    escalated_at: datetime | None = Field(description="When the first-response deadline was missed.")
    first_approver: str | None = Field(description="Four eyes: who gave the first of two approvals.")
    decided_at: datetime | None
    materials: list[MaterialOut]


def _is_staff(key: ApiKeyInfo) -> bool:
    return key.allows(Scope.REVIEWS_WRITE)


def appeal_out(uow: UnitOfWork, a: Appeal, *, staff: bool = True) -> AppealOut:
    """Render an appeal with its materials; who holds the case is shown to review staff only."""
    return AppealOut(
        id=a.id,
        freeze_id=a.freeze_id,
        account_id=a.account_id,
        round=a.round,
        status=a.status.value,
        contact_channel=a.contact_channel,
        created_at=a.created_at,
        submitted_at=a.submitted_at,
        first_response_due=a.first_response_due,
        expedited=a.expedited,
        assignee=a.assignee if staff else None,
        first_responded_at=a.first_responded_at,
        escalated_at=a.escalated_at if staff else None,
        first_approver=a.first_approver if staff else None,
        decided_at=a.decided_at,
        materials=[MaterialOut.of(m) for m in appeals.materials(uow, a.id)],
    )


@router.post("/freezes/{freeze_id}/appeals", response_model=AppealOut, status_code=201)
def open_appeal(
    freeze_id: str, body: AppealIn, runtime: RuntimeDep, key: CanAppeal, response: Response
) -> AppealOut:
    """Open a draft appeal against an active freeze (200 with the same draft when the request is repeated)."""
    with UnitOfWork(runtime) as uow:
        made, created = appeals.open_appeal(
            uow,
            freeze_id,
            explanation=body.explanation,
            contact_channel=body.contact.channel,
            contact_value=body.contact.value,
            actor=_actor(key),
        )
        out = appeal_out(uow, made, staff=_is_staff(key))
        uow.commit()
    if not created:
        response.status_code = 200
    return out


@router.get("/appeals/{appeal_id}", response_model=AppealOut)
def get_appeal(appeal_id: str, uow: ReadUow, _key: CanAppeal) -> AppealOut:
    """An appeal and its materials."""
    return appeal_out(uow, appeals.get(uow, appeal_id), staff=_is_staff(_key))


@router.put("/appeals/{appeal_id}/materials", response_model=MaterialOut, status_code=201)
async def upload_material(
    appeal_id: str,
    request: Request,
    *,
    runtime: RuntimeDep,
    key: CanAppeal,
    kind: MaterialKind,
    transaction_ids: Annotated[
        str, Query(max_length=2000, description="Comma-separated, for vouchers.")
    ] = "",
    order_ref: Annotated[
        str | None, Query(min_length=1, max_length=128, description="Vouchers: the order number shown.")
    ] = None,
    amount: Annotated[
        Decimal | None,
        Query(ge=0, max_digits=24, decimal_places=6, description="Vouchers: the amount shown."),
    ] = None,
    occurred_at: Annotated[
        AwareDatetime | None,
        Query(description="Vouchers: when the payment happened (ISO 8601 with a time zone)."),
    ] = None,
) -> MaterialOut:
    """Upload one file as the raw request body; its type is checked by content (PDF, PNG, JPEG, WebP).

    For a voucher, declare what it shows (order number, amount, time): the pre-review compares them
    with the flagged transactions.
    """
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInputError(
            f"the file is larger than the {limit // (1024 * 1024)} MB limit", field="file"
        )
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise InvalidInputError(
                f"the file is larger than the {limit // (1024 * 1024)} MB limit", field="file"
            )
    ids = tuple(t.strip() for t in transaction_ids.split(",") if t.strip())
    voucher = (
        None
        if order_ref is None and amount is None and occurred_at is None
        else appeals.VoucherData(order_ref=order_ref, amount=amount, occurred_at=occurred_at)
    )

    def store() -> Material:
        with UnitOfWork(runtime) as uow:
            stored = appeals.add_material(
                uow,
                appeal_id,
                kind=kind,
                data=bytes(data),
                transaction_ids=ids,
                actor=_actor(key),
                declared=voucher,
            )
            uow.commit()
        return stored

    # The database and file work is blocking: keep it off the event loop.
    material = await run_in_threadpool(store)
    return MaterialOut.of(material)


@router.get("/appeals/{appeal_id}/completeness", response_model=CompletenessOut)
def completeness(appeal_id: str, uow: ReadUow, _key: CanAppeal, lang: Lang = "en") -> CompletenessOut:
    """Exactly what is still missing before the appeal can be submitted."""
    c = appeals.completeness(uow, appeal_id, lang)
    return CompletenessOut(
        complete=c.complete,
        missing=[
            MissingOut(
                code=m.code, kind=m.kind, transaction_ids=list(m.transaction_ids), message=m.message(lang)
            )
            for m in c.missing
        ],
        required_materials=list(c.required_materials),
        flagged_transactions=list(c.flagged_transactions),
        verifications_before_release=list(c.verifications_before_release),
        guidance=c.guidance,
    )


def _move(
    runtime: Runtime, appeal_id: str, command: Callable[[UnitOfWork, str, Actor], Appeal], key: ApiKeyInfo
) -> AppealOut:
    with UnitOfWork(runtime) as uow:
        out = appeal_out(uow, command(uow, appeal_id, _actor(key)), staff=_is_staff(key))
        uow.commit()
    return out


@router.post("/appeals/{appeal_id}/submit", response_model=AppealOut)
def submit(appeal_id: str, runtime: RuntimeDep, key: CanAppeal) -> AppealOut:
    """Submit a complete appeal (422 listing what is missing otherwise); the 48-hour clock starts."""
    return _move(runtime, appeal_id, appeals.submit, key)


@router.post("/appeals/{appeal_id}/withdraw", response_model=AppealOut)
def withdraw(appeal_id: str, runtime: RuntimeDep, key: CanAppeal) -> AppealOut:
    """Withdraw an appeal."""
    return _move(runtime, appeal_id, appeals.withdraw, key)


class QuotaOut(BaseModel):
    """The VIP expedite quota of the current calendar year."""

    account_id: str
    year: int
    allowed: int
    used: int
    remaining: int

    @classmethod
    def of(cls, q: expedite.Quota) -> QuotaOut:
        """Render a quota."""
        return cls(
            account_id=q.account_id, year=q.year, allowed=q.allowed, used=q.used, remaining=q.remaining
        )


@router.post("/appeals/{appeal_id}/expedite", response_model=QuotaOut)
def expedite_appeal(appeal_id: str, runtime: RuntimeDep, key: CanAppeal) -> QuotaOut:
    """Expedite an open appeal through the VIP channel; returns the quota left (409 when none is)."""
    with UnitOfWork(runtime) as uow:
        left = expedite.expedite(uow, appeal_id, _actor(key))
        uow.commit()
    return QuotaOut.of(left)


@router.get("/accounts/{account_id}/expedite-quota", response_model=QuotaOut)
def expedite_quota(account_id: str, uow: ReadUow, _key: CanAppeal) -> QuotaOut:
    """How many expedites the holder has left this year."""
    return QuotaOut.of(expedite.quota(uow, account_id))
