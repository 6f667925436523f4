"""The console's "my account" page: any signed-in member changes their own password and enrols an
authenticator app (TOTP) — the secret is offered as a QR code and stored only once a code from the
app matches it, so a mis-scanned code cannot lock anyone out."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import Lang, gate, language_of, run_step, see_other
from thawline.services import staff
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

router = console_auth.router  # the console's one router; ``thawline.api.app`` imports this module
Member = Annotated[StaffSession | Response, Depends(gate(None))]
MemberForm = Annotated[StaffSession | Response, Depends(gate(None, form=True))]
Password = Annotated[str, Form(max_length=256)]


def qr_svg(text: str, title: str) -> Markup:
    """``text`` as an inline SVG QR code (no script, no inline style: the console's CSP holds)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, xmldecl=False, title=title, svgclass="qr")
    return Markup(out.getvalue().decode())  # noqa: S704 — segno escapes the title; the rest is paths


def _account_page(
    runtime: Runtime,
    who: StaffSession,
    lang: str,
    status: int = 200,
    error: str = "",
    *,
    offer: tuple[str, str, str] | None = None,
    done: str = "",
) -> Response:
    with UnitOfWork(runtime, read_only=True) as uow:
        me = staff.get(uow, who.user.username)
    qr = qr_svg(offer[0], "otpauth") if offer else None
    return page(
        "console_account.html",
        lang,
        status,
        session=who,
        path="/console/account",
        error=error,
        me=me,
        offer=offer,
        qr=qr,
        done=done,
    )


@router.get("/account")
def account_page(request: Request, runtime: RuntimeDep, who: Member, lang: Lang = None) -> Response:
    """Your roles, your second factor, and the forms to change your password or enrol an app."""
    if isinstance(who, Response):
        return who
    return _account_page(runtime, who, language_of(request, runtime, lang))


@router.post("/account/password")
def change_password(
    request: Request,
    runtime: RuntimeDep,
    who: MemberForm,
    *,
    current: Password = "",
    password: Password = "",
    lang: Lang = None,
) -> Response:
    """Change your own password; your sessions end and you sign in again with the new one."""
    if isinstance(who, Response):
        return who
    failed = run_step(runtime, lambda uow: staff.change_own_password(uow, who.user, current, password))
    if failed is not None:
        return _account_page(runtime, who, language_of(request, runtime, lang), failed[0], str(failed[1]))
    return see_other(console_auth.LOGIN_PATH, lang)


@router.post("/account/totp/offer")
def offer_totp(request: Request, runtime: RuntimeDep, who: MemberForm, lang: Lang = None) -> Response:
    """Show a new secret as a QR code with a form for the first code (nothing is stored yet)."""
    if isinstance(who, Response):
        return who
    with UnitOfWork(runtime, read_only=True) as uow:
        offer = staff.totp_offer(uow, who.user)
    return _account_page(runtime, who, language_of(request, runtime, lang), offer=offer)


@router.post("/account/totp")
def accept_totp(
    request: Request,
    runtime: RuntimeDep,
    who: MemberForm,
    *,
    offer: Annotated[str, Form(max_length=512)] = "",
    code: Annotated[str, Form(max_length=12)] = "",
    lang: Lang = None,
) -> Response:
    """Enrol the offered secret once a code from the app matches it."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    failed = run_step(runtime, lambda uow: staff.accept_totp(uow, who.user, offer, code))
    if failed is not None:
        return _account_page(runtime, who, language, failed[0], str(failed[1]))
    return _account_page(runtime, who, language, done="totp")
