"""Human review over HTTP: the queue, claiming and assigning cases, decisions, conflicts, re-reviews."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.api.routes.accounts import FreezeOut
from thawline.api.routes.appeals import AppealOut, appeal_out
from thawline.domain.apikeys import Scope
from thawline.domain.errors import PermissionDeniedError
from thawline.domain.review import REASON_CODES, Decision
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, freezes, review
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["review"])
CanReview = Annotated[ApiKeyInfo, Depends(require(Scope.REVIEWS_WRITE))]
CanLead = Annotated[ApiKeyInfo, Depends(require(Scope.REVIEWS_LEAD))]
Ref = Annotated[str, Field(pattern=r"^[a-z]+:[A-Za-z0-9_.@-]{1,64}$", description="'reviewer:<key id>'")]


def _reviewer(key: ApiKeyInfo) -> Actor:
    # Stored on the case as "reviewer:<key id>".
    return Actor(ActorKind.REVIEWER, key.id)


async def _reviewer_or_lead(request: Request) -> ApiKeyInfo:
    """A key with reviews:lead, or else one with reviews:write."""
    try:
        return await require(Scope.REVIEWS_LEAD)(request)
    except PermissionDeniedError:
        return await require(Scope.REVIEWS_WRITE)(request)


_reviewer_or_lead.scopes = (Scope.REVIEWS_LEAD, Scope.REVIEWS_WRITE)  # type: ignore[attr-defined]


class QueueItemOut(BaseModel):
    """One case waiting for a reviewer."""

    appeal_id: str
    freeze_id: str
    account_id: str
    round: int
    category: str
    high_severity: bool = Field(description="Releasing it needs two different approvers (four eyes).")
    status: str
    expedited: bool
    submitted_at: datetime | None
    first_response_due: datetime | None
    breached: bool = Field(description="The first-response deadline passed without a response.")
    assignee: str | None
    first_approver: str | None
    machine_recommendation: Decision | None = Field(description="The machine pre-review's decision.")

    @classmethod
    def of(cls, item: review.QueueItem) -> QueueItemOut:
        """Render a queue item."""
        a = item.appeal
        return cls(
            appeal_id=a.id,
            freeze_id=a.freeze_id,
            account_id=a.account_id,
            round=a.round,
            category=item.category,
            high_severity=item.high_severity,
            status=a.status.value,
            expedited=a.expedited,
            submitted_at=a.submitted_at,
            first_response_due=a.first_response_due,
            breached=item.breached,
            assignee=a.assignee,
            first_approver=a.first_approver,
            machine_recommendation=item.machine,
        )


@router.get("/review/queue", response_model=list[QueueItemOut])
def review_queue(
    uow: ReadUow,
    key: CanReview,
    mine: Annotated[bool, Query(description="Only the cases this key holds.")] = False,
    unassigned: Annotated[bool, Query(description="Only the cases nobody holds.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[QueueItemOut]:
    """Open cases: expedited first, then by first-response deadline."""
    assignee = _reviewer(key).ref if mine else None
    return [
        QueueItemOut.of(i) for i in review.queue(uow, assignee=assignee, unassigned=unassigned, limit=limit)
    ]


@router.post("/appeals/{appeal_id}/claim", response_model=AppealOut)
def claim(appeal_id: str, runtime: RuntimeDep, key: CanReview) -> AppealOut:
    """Take an unassigned case (403 when linked to the account, 409 for the freeze's creator)."""
    with UnitOfWork(runtime) as uow:
        out = appeal_out(uow, review.claim(uow, appeal_id, _reviewer(key)))
        uow.commit()
    return out


class AssignIn(BaseModel):
    """Who gets the case."""

    reviewer: Ref


@router.post("/appeals/{appeal_id}/assign", response_model=AppealOut)
def assign(appeal_id: str, body: AssignIn, runtime: RuntimeDep, key: CanLead) -> AppealOut:
    """A lead gives a case to a reviewer, taking it from whoever held it."""
    with UnitOfWork(runtime) as uow:
        out = appeal_out(uow, review.assign(uow, appeal_id, body.reviewer, _reviewer(key)))
        uow.commit()
    return out


@router.post("/appeals/{appeal_id}/unclaim", response_model=AppealOut)
def unclaim(
    appeal_id: str, runtime: RuntimeDep, key: Annotated[ApiKeyInfo, Depends(_reviewer_or_lead)]
) -> AppealOut:
    """Put a case back in the queue: its holder, or a lead (reviews:lead) for anyone's."""
    lead = key.allows(Scope.REVIEWS_LEAD)
    with UnitOfWork(runtime) as uow:
        out = appeal_out(uow, review.unclaim(uow, appeal_id, _reviewer(key), lead=lead))
        uow.commit()
    return out


class DecisionIn(BaseModel):
    """A reviewer's decision on a case they hold."""

    decision: Decision
    reason_codes: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=20,
        description="At least one, known for the decision: "
        + "; ".join(f"{d.value}: {', '.join(sorted(c))}" for d, c in REASON_CODES.items()),
    )
    note: str = Field(default="", max_length=5000, description="Kept with the case; the log keeps its hash.")


@router.post("/appeals/{appeal_id}/decision", response_model=AppealOut)
def decide(appeal_id: str, body: DecisionIn, runtime: RuntimeDep, key: CanReview) -> AppealOut:
    """Decide a claimed case; a high-severity approval waits for a second, different reviewer.

    An approval opens the second verification (GET /v1/appeals/{id}/verification).
    """
    with UnitOfWork(runtime) as uow:
        decided = review.decide(
            uow,
            appeal_id,
            body.decision,
            reason_codes=tuple(body.reason_codes),
            note=body.note,
            reviewer=_reviewer(key),
        )
        out = appeal_out(uow, decided)
        uow.commit()
    return out


class ReviewOut(BaseModel):
    """One recorded opinion: the machine pre-review's or a reviewer's."""

    id: str
    reviewer: str
    kind: str = Field(description="machine or human")
    decision: Decision
    reason_codes: list[str]
    note: str
    confidence: Decimal | None = Field(description="Machine only: 0 to 1.")
    findings: list[dict[str, Any]] = Field(description="Machine only: each check and its outcome.")
    agrees_with_machine: bool | None
    created_at: datetime


@router.get("/appeals/{appeal_id}/reviews", response_model=list[ReviewOut])
def list_reviews(appeal_id: str, uow: ReadUow, _key: CanReview) -> list[ReviewOut]:
    """Every opinion on the appeal, oldest first, the machine's included."""
    return [
        ReviewOut(
            id=r.id,
            reviewer=r.reviewer,
            kind=r.kind,
            decision=r.decision,
            reason_codes=list(r.reason_codes),
            note=r.note,
            confidence=r.confidence,
            findings=r.findings,
            agrees_with_machine=r.agrees_with_machine,
            created_at=r.created_at,
        )
        for r in review.reviews(uow, appeal_id)
    ]


class ConflictIn(BaseModel):
    """A reviewer linked to an account."""

    reviewer: Ref
    account_id: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)


class ConflictOut(BaseModel):
    """The recorded conflict."""

    reviewer: str
    account_id: str


@router.post("/reviewers/conflicts", response_model=ConflictOut, status_code=201)
def declare_conflict(body: ConflictIn, runtime: RuntimeDep, key: CanLead, response: Response) -> ConflictOut:
    """Bar a reviewer from the account's cases (200 when already declared)."""
    with UnitOfWork(runtime) as uow:
        created = review.declare_conflict(uow, body.reviewer, body.account_id, body.note, _reviewer(key))
        uow.commit()
    if not created:
        response.status_code = 200
    return ConflictOut(reviewer=body.reviewer, account_id=body.account_id)


class RereviewIn(BaseModel):
    """The outcome of a freeze's mandatory re-review."""

    keep: bool
    next_review_by: AwareDatetime | None = Field(default=None, description="Required when keeping it.")
    note: str = Field(min_length=1, max_length=2000)


@router.post("/freezes/{freeze_id}/rereview", response_model=FreezeOut)
def rereview(freeze_id: str, body: RereviewIn, runtime: RuntimeDep, key: CanReview) -> FreezeOut:
    """Keep a freeze until a new re-review date, or release it (high-severity ones need an appeal)."""
    with UnitOfWork(runtime) as uow:
        after = freezes.rereview(
            uow,
            freeze_id,
            keep=body.keep,
            next_review_by=body.next_review_by,
            note=body.note,
            actor=_reviewer(key),
        )
        language = accounts.get(uow, after.account_id).language
        uow.commit()
    return FreezeOut.of(after, language, internal=key.allows(Scope.FREEZES_WRITE))
