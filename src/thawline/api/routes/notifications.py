"""In-site messages, notification preferences, staff notices and the live SSE streams."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from thawline.api import sse
from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.domain import notifications as n
from thawline.domain.apikeys import Scope
from thawline.domain.errors import InvalidInputError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import inbox, live
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["notifications"])
CanReadAccounts = Annotated[ApiKeyInfo, Depends(require(Scope.ACCOUNTS_READ))]
CanWriteNotifications = Annotated[ApiKeyInfo, Depends(require(Scope.NOTIFICATIONS_WRITE))]
CanReview = Annotated[ApiKeyInfo, Depends(require(Scope.REVIEWS_WRITE, Scope.REVIEWS_LEAD))]
HEARTBEAT_SECONDS = 15.0


class MessageOut(BaseModel):
    """One in-site message or staff notice."""

    id: str
    template: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    source_seq: int | None = Field(description="The operation-log entry of the change that caused it.")
    mandatory: bool
    appeal_id: str | None = None


class InboxOut(BaseModel):
    """A page of the holder's inbox with the unread count."""

    unread: int
    messages: list[MessageOut]


def _out(m: inbox.Message) -> MessageOut:
    return MessageOut(
        id=m.id,
        template=m.template,
        title=m.title,
        body=m.body,
        created_at=m.created_at,
        read_at=m.read_at,
        source_seq=m.source_seq,
        mandatory=m.mandatory,
        appeal_id=m.appeal_id,
    )


@router.get("/accounts/{account_id}/inbox", response_model=InboxOut)
def account_inbox(
    account_id: str,
    uow: ReadUow,
    _key: CanReadAccounts,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxOut:
    """The holder's in-site messages (站内信), newest first, with the unread count."""
    items = inbox.messages(uow, account_id, unread_only=unread, limit=limit)
    return InboxOut(unread=inbox.unread_count(uow, account_id), messages=[_out(m) for m in items])


@router.post("/accounts/{account_id}/inbox/{message_id}/read", response_model=MessageOut)
def read_message(
    account_id: str, message_id: str, runtime: RuntimeDep, key: CanWriteNotifications
) -> MessageOut:
    """Mark a message read (a recorded read receipt); repeating it changes nothing."""
    with UnitOfWork(runtime) as uow:
        m = inbox.mark_read(uow, account_id, message_id, Actor(ActorKind.HOLDER, key.id))
        uow.commit()
    return _out(m)


class QuietHoursIn(BaseModel):
    """A daily window in the holder's time zone in which non-urgent SMS wait (may wrap midnight)."""

    start: str = Field(examples=["22:00"])
    end: str = Field(examples=["08:00"])
    time_zone: str = Field(default="Asia/Shanghai", examples=["Asia/Shanghai"])


class PreferencesIn(BaseModel):
    """Opt-outs apply to non-mandatory messages only; freezes, decisions, releases and codes always go."""

    email_opt_out: bool = False
    sms_opt_out: bool = False
    quiet_hours: QuietHoursIn | None = None


class PreferencesOut(PreferencesIn):
    """The stored preferences and what stays mandatory."""

    mandatory_templates: list[str]


def _prefs_out(p: inbox.Preferences) -> PreferencesOut:
    q = p.quiet_hours
    return PreferencesOut(
        email_opt_out=p.email_opt_out,
        sms_opt_out=p.sms_opt_out,
        quiet_hours=None
        if q is None
        else QuietHoursIn(
            start=f"{q.start // 60:02d}:{q.start % 60:02d}",
            end=f"{q.end // 60:02d}:{q.end % 60:02d}",
            time_zone=q.zone,
        ),
        mandatory_templates=sorted(n.MANDATORY),
    )


@router.get("/accounts/{account_id}/notification-preferences", response_model=PreferencesOut)
def get_preferences(account_id: str, uow: ReadUow, _key: CanReadAccounts) -> PreferencesOut:
    """The holder's notification choices."""
    return _prefs_out(inbox.preferences(uow, account_id))


@router.put("/accounts/{account_id}/notification-preferences", response_model=PreferencesOut)
def put_preferences(
    account_id: str, body: PreferencesIn, runtime: RuntimeDep, key: CanWriteNotifications
) -> PreferencesOut:
    """Opt out of non-mandatory email/SMS and set SMS quiet hours (recorded)."""
    quiet = None
    if body.quiet_hours is not None:
        q = body.quiet_hours
        start, end = n.parse_hhmm(q.start, "quiet_hours.start"), n.parse_hhmm(q.end, "quiet_hours.end")
        try:
            quiet = n.QuietHours(start, end, q.time_zone)
        except InvalidInputError as exc:  # name the field as the request spells it
            raise InvalidInputError(str(exc), field=f"quiet_hours.{exc.field}") from exc
    prefs = inbox.Preferences(body.email_opt_out, body.sms_opt_out, quiet)
    with UnitOfWork(runtime) as uow:
        stored = inbox.set_preferences(uow, account_id, prefs, Actor(ActorKind.HOLDER, key.id))
        uow.commit()
    return _prefs_out(stored)


def _recipients(key: ApiKeyInfo) -> list[str]:
    out = [f"reviewer:{key.id}", n.REVIEWERS]
    if key.allows(Scope.REVIEWS_LEAD):
        out.append(n.LEADS)
    return out


@router.get("/staff/notices", response_model=list[MessageOut])
def staff_notices(
    uow: ReadUow, key: CanReview, unread: bool = False, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[MessageOut]:
    """Notices for this reviewer and their roles: assignments, SLA warnings and breaches, four eyes."""
    return [_out(m) for m in inbox.notices(uow, _recipients(key), unread_only=unread, limit=limit)]


@router.post("/staff/notices/{notice_id}/read", response_model=MessageOut)
def read_notice(notice_id: str, runtime: RuntimeDep, key: CanReview) -> MessageOut:
    """Acknowledge a notice (recorded)."""
    with UnitOfWork(runtime) as uow:
        m = inbox.mark_notice_read(uow, notice_id, _recipients(key), Actor(ActorKind.REVIEWER, key.id))
        uow.commit()
    return _out(m)


@router.get("/accounts/{account_id}/stream", response_class=StreamingResponse)
async def account_stream(  # noqa: PLR0917 - FastAPI passes parameters by name
    account_id: str,
    request: Request,
    runtime: RuntimeDep,
    _key: CanReadAccounts,
    lang: Annotated[str | None, Query(pattern="^(zh-CN|en)$")] = None,
    after: Annotated[int | None, Query(ge=-1, description="Resume after this log seq.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events for the holder's portal: `status` (each step in plain words), `message` (站内信)."""
    return await sse.holder_stream(request, runtime, account_id, lang, sse.resume_from(last_event_id, after))


@router.get("/console/stream", response_class=StreamingResponse)
async def console_stream(request: Request, key: CanReview) -> StreamingResponse:
    """Server-Sent Events for the review console: appeal and freeze steps, staff notices, dead letters."""
    mine = set(_recipients(key))

    def shape(item: live.LiveEvent) -> dict[str, Any] | None:
        if item.kind == "notice" and item.data.get("recipient") not in mine:
            return None
        return item.data

    return sse.response(sse.stream(request, live.CONSOLE, sse.no_backlog, shape))
