"""The holder portal: entered through a one-time link from the integrator, server-rendered, live by SSE."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from thawline.api import sse
from thawline.api.deps import RuntimeDep, require
from thawline.domain import authorization
from thawline.domain.apikeys import Scope
from thawline.domain.appeals import EDITABLE, LAPSED, OPEN, AppealStatus
from thawline.domain.errors import NotFoundError, PermissionDeniedError
from thawline.domain.limits import AttemptLimiter
from thawline.i18n import pick_language, t
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import (
    accounts,
    appeals,
    expedite,
    freezes,
    inbox,
    messages,
    portal,
    timeline,
    verification,
)
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/portal", include_in_schema=False)
api = APIRouter(prefix="/v1", tags=["holder portal"])
COOKIE = "thawline_portal"
LANG_COOKIE = "thawline_portal_lang"  # the language the holder switched to, remembered for the forms
SessionCookie = Annotated[str | None, Cookie(alias=COOKIE)]
Lang = Annotated[str | None, Query(pattern="^(zh-CN|en)$")]
_pages = Environment(
    loader=PackageLoader("thawline", "resources/web"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class PortalLinkOut(BaseModel):
    """A one-time link to hand to the holder (valid once, for 15 minutes)."""

    url: str
    expires_at: AwareDatetime


@api.post("/accounts/{account_id}/portal-links", response_model=PortalLinkOut, status_code=201)
def issue_portal_link(
    account_id: str, runtime: RuntimeDep, key: Annotated[ApiKeyInfo, Depends(require(Scope.ACCOUNTS_WRITE))]
) -> PortalLinkOut:
    """A one-time sign-in link to the holder portal for this account's holder (recorded)."""
    with UnitOfWork(runtime) as uow:
        _id, token, expires = portal.issue_link(uow, account_id, Actor(ActorKind.INTEGRATOR, key.id))
        uow.commit()
    base = runtime.settings.portal_url.rstrip("/")
    return PortalLinkOut(url=f"{base}/enter?token={token}", expires_at=expires)


def _page(name: str, lang: str, http_status: int = 200, **values: Any) -> HTMLResponse:
    html = _pages.get_template(name).render(lang=lang, t=lambda key, **kw: t(key, lang, **kw), **values)
    return HTMLResponse(html, status_code=http_status)


def _lang(request: Request, lang: str | None) -> str:
    return lang or pick_language(request.headers.get("accept-language"))


def _session(runtime: Runtime, token: str | None) -> portal.PortalSession | None:
    with UnitOfWork(runtime, read_only=True) as uow:
        return portal.current(uow, token)


def _denied(lang: str, status: int = 403) -> HTMLResponse:
    return _page("denied.html", lang, http_status=status, too_many=status == 429)


# Attempts per minute: one-time links tried per client address (a link is 256 random bits: this is
# hygiene), and form actions per account (appeal, upload, submit, codes, …) — a person filling in the
# appeal stays far below; a script hammering submissions or one-time codes does not.
LIMITS = {"enter": 20, "actions": 20}


def limiters() -> dict[str, AttemptLimiter]:
    """One sliding-window limiter per kind in ``LIMITS`` (the app keeps them in its state)."""
    return {name: AttemptLimiter(limit) for name, limit in LIMITS.items()}


def too_fast(request: Request, key: str, name: str) -> int | None:
    """Count one attempt by ``key`` on the app's limiter ``name``; seconds to wait if over its limit."""
    limiter: AttemptLimiter = request.app.state.portal_limiters[name]
    wait = limiter.attempt(key, request.app.state.runtime.clock.now())
    return None if wait is None else max(1, int(wait.total_seconds() + 0.999))


@router.get("/enter")
def enter(request: Request, runtime: RuntimeDep, token: str = "", lang: Lang = None) -> Response:
    """Spend a one-time link: open a session (cookie) and go to the account page."""
    address = request.client.host if request.client else "unknown"
    if too_fast(request, address, "enter") is not None:
        refused = _denied(_lang(request, lang), 429)
        refused.headers["Retry-After"] = "60"
        return refused
    try:
        with UnitOfWork(runtime) as uow:
            _session_view, session_token = portal.enter(uow, token)
            uow.commit()
    except PermissionDeniedError:
        return _denied(_lang(request, lang))
    reply = RedirectResponse("/portal/account" + (f"?lang={lang}" if lang else ""), status_code=303)
    reply.set_cookie(
        COOKIE,
        session_token,
        max_age=int(portal.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=runtime.settings.portal_secure_cookies,
        # Lax, not Strict: holders arrive from a link in another site or app, and a Strict cookie set
        # during that cross-site navigation would not come back on the redirect. Forms carry CSRF tokens.
        samesite="lax",
        path="/portal",
    )
    return reply


def appeal_view(uow: UnitOfWork, f: Any, lang: str, expedites_left: int) -> dict[str, Any]:
    """Where the holder's appeal against ``f`` stands, and what they can do next."""
    rounds = uow.runtime.appeal_requirements.rounds
    a = portal.latest_appeal(uow, f.id)
    if a is None or a.status in LAPSED or (a.status is AppealStatus.REJECTED and a.round < rounds):
        return {"can_open": True, "round": 1 if a is None else a.round + (a.status is AppealStatus.REJECTED)}
    view: dict[str, Any] = {
        "can_open": False,
        "id": a.id,
        "status": a.status.value,
        "status_text": t(f"portal.appeal.{a.status.value}", lang),
        "editable": a.status in EDITABLE,
        "expedited": a.expedited,
        "can_expedite": a.status in OPEN and not a.expedited and expedites_left > 0,
        "expedites_left": expedites_left,
        "final": a.status is AppealStatus.REJECTED,
        "verify": None,
    }
    if a.status in EDITABLE:
        check = appeals.completeness(uow, a.id, lang)
        view |= {
            "missing": [m.message(lang) for m in check.missing],
            "kinds": [(k.value, t(f"material.{k.value}", lang)) for k in check.required_materials],
            "flagged": list(check.flagged_transactions),
            "uploaded": [t(f"material.{m.kind.value}", lang) for m in appeals.materials(uow, a.id)],
            "explanation": a.explanation,
        }
    if a.status is AppealStatus.APPROVED:
        try:
            v = verification.get(uow, a.id)
        except NotFoundError:
            v = None
        if v is not None and v.status == "pending":
            view["verify"] = {"required": list(v.required), "passed": sorted(v.done)}
    return view


def _account_page(
    runtime: Runtime, session: portal.PortalSession, chosen: str | None, error: str | None = None
) -> tuple[str, dict[str, Any]]:
    with UnitOfWork(runtime, read_only=True) as uow:
        account = accounts.get(uow, session.account_id)
        lang = chosen or account.language  # the language the holder registered with, unless switched
        now = uow.runtime.clock.now()
        everything = freezes.list_freezes(uow, account.id)
        active = [f for f in everything if f.in_force(now)]
        shown = []
        quota = expedite.quota(uow, account.id)
        for f in active:
            req = runtime.appeal_requirements.for_category(f.category)
            shown.append(
                {
                    "id": f.id,
                    "reason": f.holder_facing_reason(lang),
                    "blocks": messages.scope_text(f, lang),
                    "review_by": messages.when(f.review_by, lang),
                    "materials": messages.materials(uow, f, lang),
                    "self_service": req.self_service is not None,
                    "appeal": appeal_view(uow, f, lang, quota.remaining),
                }
            )
        probation = (
            account.probation_until if account.probation_until and account.probation_until > now else None
        )
        return lang, {
            "account_id": account.id,
            "status": authorization.status(everything, now).value,
            "freezes": shown,
            "probation_until": messages.when(probation, lang),
            "steps": list(reversed(timeline.timeline(uow, account.id, timeline.Audience.HOLDER, lang))),
            "messages": inbox.messages(uow, account.id),
            "unread": inbox.unread_count(uow, account.id),
            "csrf": session.csrf,
            "other_lang": "en" if lang == "zh-CN" else "zh-CN",
            "error": error,
        }


@router.get("/account")
async def account_page(
    request: Request, runtime: RuntimeDep, cookie: SessionCookie = None, lang: Lang = None
) -> Response:
    """The holder's page: status, reason, what to do and the exact materials, progress, messages."""
    session = await run_in_threadpool(_session, runtime, cookie)
    if session is None:
        return _denied(_lang(request, lang))
    chosen = lang or request.cookies.get(LANG_COOKIE)
    language, values = await run_in_threadpool(_account_page, runtime, session, chosen)
    page = _page("account.html", language, **values)
    if lang is not None:
        page.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="lax", path="/portal", secure=True)
    return page


@router.get("/accounts/{account_id}")
async def account_link(
    account_id: str, request: Request, runtime: RuntimeDep, cookie: SessionCookie = None, lang: Lang = None
) -> Response:
    """Where messages link to: the account page when signed in for this account, else how to get in."""
    session = await run_in_threadpool(_session, runtime, cookie)
    if session is not None and session.account_id == account_id:
        return RedirectResponse("/portal/account" + (f"?lang={lang}" if lang else ""), status_code=303)
    return _denied(_lang(request, lang))


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    request: Request, runtime: RuntimeDep, cookie: SessionCookie = None, lang: Lang = None
) -> Response:
    """Live steps and messages for the signed-in holder's account (Server-Sent Events)."""
    session = await run_in_threadpool(_session, runtime, cookie)
    if session is None:
        return Response(status_code=401)
    resume = sse.resume_from(request.headers.get("last-event-id"), None)
    return await sse.holder_stream(request, runtime, session.account_id, lang, resume)


def _checked(runtime: Runtime, cookie: str | None, csrf: str) -> portal.PortalSession:
    session = _session(runtime, cookie)
    if session is None or not csrf or csrf != session.csrf:
        raise PermissionDeniedError("the form is stale or not yours; reload the page")
    return session


@router.post("/inbox/{message_id}/read")
def read(
    message_id: str, runtime: RuntimeDep, csrf: Annotated[str, Form()] = "", cookie: SessionCookie = None
) -> Response:
    """Mark a message read (a recorded read receipt)."""
    session = _checked(runtime, cookie, csrf)
    with UnitOfWork(runtime) as uow:
        inbox.mark_read(uow, session.account_id, message_id, Actor(ActorKind.HOLDER, session.account_id))
        uow.commit()
    return RedirectResponse("/portal/account#inbox", status_code=303)


@router.post("/sign-out")
def sign_out(
    request: Request, runtime: RuntimeDep, csrf: Annotated[str, Form()] = "", cookie: SessionCookie = None
) -> Response:
    """End the session and forget the cookie."""
    session = _checked(runtime, cookie, csrf)
    with UnitOfWork(runtime) as uow:
        portal.sign_out(uow, session)
        uow.commit()
    reply = _page("signed_out.html", _lang(request, None))
    reply.delete_cookie(COOKIE, path="/portal")
    return reply
