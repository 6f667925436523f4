"""The staff console's way in: the sign-in form, sign-out, and the gate every other page passes.

The gate is a dependency that declares the permission a route needs: it answers with the member's
session, or with the response that refuses (the sign-in page for nobody, 403 for the wrong role or a
form without the session's CSRF token). Sign-in is throttled per username and per client address
before any password is hashed, and every refusal reads the same.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ThawlineError,
)
from thawline.domain.limits import AttemptLimiter
from thawline.domain.staff import Permission
from thawline.i18n import pick_language, t
from thawline.services import staff_sessions
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

# One router for the whole console: ``console`` adds the case pages to it.
router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "thawline_console"
LOGIN_COOKIE = "thawline_console_login"  # double-submit token: nobody else's page can post our sign-in
LOGIN_PATH = "/console/login"
SessionCookie = Annotated[str | None, Cookie(alias=COOKIE)]
Lang = Annotated[str | None, Query(pattern="^(zh-CN|en)$")]
# Sign-in attempts per minute, counted before any password is hashed.
PER_USERNAME, PER_ADDRESS = 10, 30


def language_of(request: Request, runtime: Runtime, chosen: str | None) -> str:
    """The page language: ?lang=, else Accept-Language, else THAWLINE_STAFF_LANGUAGE."""
    if chosen:
        return chosen
    header = request.headers.get("accept-language")
    return pick_language(header) if header else runtime.settings.staff_language


def see_other(path: str, lang: str | None) -> RedirectResponse:
    """A 303 to ``path``, keeping the chosen language."""
    return RedirectResponse(path + (f"?lang={lang}" if lang else ""), status_code=303)


STATUS_OF: dict[type[ThawlineError], int] = {
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
}


def run_step(runtime: Runtime, step: Callable[[UnitOfWork], object]) -> tuple[int, ThawlineError] | None:
    """Run ``step`` in one unit of work and commit; on a refusal, nothing changed and this returns
    the HTTP status for it and the error (whose text the page shows)."""
    try:
        with UnitOfWork(runtime) as uow:
            step(uow)
            uow.commit()
    except ThawlineError as exc:
        return next((s for kind, s in STATUS_OF.items() if isinstance(exc, kind)), 409), exc
    return None


# Where each member lands after sign-in: the first page their roles open, in this order.
HOMES = (
    (Permission.CASES_READ, "/console"),
    (Permission.LOG_READ, "/console/audit"),
    (Permission.RULES_WRITE, "/console/rules"),
    (Permission.LISTS_WRITE, "/console/lists"),
    (Permission.USERS_ADMIN, "/console/admin/users"),
    (Permission.REPORTS_READ, "/console/dashboard"),
)


def home_of(session: StaffSession) -> str:
    """The page a member can work on: the queue for reviewers, the log for auditors, the rules for
    analysts, staff members for admins."""
    return next((path for needed, path in HOMES if session.may(needed)), "/console")


def denied(lang: str, session: StaffSession | None, message: str, status: int = 403) -> Response:
    """The refusal page (403 unless told otherwise)."""
    return page("console_denied.html", lang, status, session=session, message=message, path="/console")


def gate(needed: Permission | None, *, form: bool = False) -> Callable[..., StaffSession | Response]:
    """Dependency factory: a live session whose roles grant ``needed`` (and, for forms, its CSRF token).

    Returns the session, or the response that refuses: the sign-in page for nobody, 403 otherwise.
    """

    def check(
        request: Request, runtime: RuntimeDep, cookie: SessionCookie = None, lang: Lang = None
    ) -> StaffSession | Response:
        with UnitOfWork(runtime, read_only=True) as uow:
            session = staff_sessions.current(uow, cookie)
        language = language_of(request, runtime, lang)
        if session is None:
            return see_other(LOGIN_PATH, lang)
        if needed is not None and not session.may(needed):
            return denied(language, session, t("console.denied.role", language, permission=needed.value))
        return session

    def check_form(
        request: Request,
        runtime: RuntimeDep,
        cookie: SessionCookie = None,
        lang: Lang = None,
        csrf: Annotated[str, Form()] = "",
    ) -> StaffSession | Response:
        outcome = check(request, runtime, cookie, lang)
        if isinstance(outcome, StaffSession) and not hmac.compare_digest(csrf, outcome.csrf):
            language = language_of(request, runtime, lang)
            return denied(language, outcome, t("console.denied.csrf", language))
        return outcome

    return check_form if form else check


Reader = Annotated[StaffSession | Response, Depends(gate(Permission.CASES_READ))]
Reviewer = Annotated[StaffSession | Response, Depends(gate(Permission.CASES_REVIEW, form=True))]
Anyone = Annotated[StaffSession | Response, Depends(gate(None, form=True))]


def _limiters(request: Request) -> tuple[AttemptLimiter, AttemptLimiter]:
    state = request.app.state
    if not hasattr(state, "console_limiters"):  # one pair per app, created on first use
        state.console_limiters = (AttemptLimiter(PER_USERNAME), AttemptLimiter(PER_ADDRESS))
    limiters: tuple[AttemptLimiter, AttemptLimiter] = state.console_limiters
    return limiters


def _login_page(runtime: Runtime, lang: str, status: int = 200, error: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    reply = page("console_login.html", lang, status, session=None, token=token, error=error, path="/console")
    secure = runtime.settings.console_secure_cookies
    reply.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=secure, samesite="strict", path=LOGIN_PATH)
    return reply


@router.get("/login")
def login_page(request: Request, runtime: RuntimeDep, lang: Lang = None) -> Response:
    """The sign-in form: username, password and, once enrolled, the authenticator code."""
    return _login_page(runtime, language_of(request, runtime, lang))


@router.post("/login")
def login(
    *,
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    code: Annotated[str, Form(max_length=16)] = "",
    token: Annotated[str, Form(max_length=64)] = "",
    login_cookie: Annotated[str | None, Cookie(alias=LOGIN_COOKIE)] = None,
    lang: Lang = None,
) -> Response:
    """Sign in: throttled per username and per address; every refusal reads the same."""
    language = language_of(request, runtime, lang)
    if not login_cookie or not hmac.compare_digest(token, login_cookie):
        return _login_page(runtime, language, 403, t("console.login.stale", language))
    now = runtime.clock.now()
    by_name, by_address = _limiters(request)
    address = request.client.host if request.client else "unknown"
    wait = by_name.attempt(username.strip().lower(), now) or by_address.attempt(address, now)
    if wait is not None:
        refused = _login_page(runtime, language, 429, t("console.login.throttled", language))
        refused.headers["Retry-After"] = str(max(int(wait.total_seconds()), 1))
        return refused
    with UnitOfWork(runtime) as uow:
        opened = staff_sessions.sign_in(uow, username, password, code)
        uow.commit()
    if opened is None:
        return _login_page(runtime, language, 403, t("console.login.refused", language))
    session, session_token = opened
    reply = see_other(home_of(session), lang)
    reply.set_cookie(
        COOKIE,
        session_token,
        max_age=int(staff_sessions.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=runtime.settings.console_secure_cookies,
        samesite="strict",
        path="/console",
    )
    reply.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return reply


@router.post("/logout")
def logout(runtime: RuntimeDep, who: Anyone, lang: Lang = None) -> Response:
    """End the session and forget the cookie."""
    if isinstance(who, Response):
        return who
    with UnitOfWork(runtime) as uow:
        staff_sessions.sign_out(uow, who)
        uow.commit()
    reply = see_other(LOGIN_PATH, lang)
    reply.delete_cookie(COOKIE, path="/console")
    return reply
