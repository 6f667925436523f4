"""The holder's way back in the portal: appeal, upload, submit, expedite, confirm it is them.

Every form carries the session's CSRF token and acts only on the session's own account. A refusal
(something missing, a wrong code) re-renders the account page with the reason in the holder's
language; nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from thawline.api.deps import RuntimeDep
from thawline.api.routes.portal import COOKIE, LANG_COOKIE, _account_page, _checked, _page, too_fast
from thawline.domain.appeals import MaterialKind
from thawline.domain.errors import InvalidInputError, NotFoundError, ThawlineError
from thawline.i18n import t
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, appeals, expedite, freezes, verification
from thawline.services.appeals import IncompleteAppealError
from thawline.services.portal import PortalSession
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/portal", include_in_schema=False)
Csrf = Annotated[str, Form()]
BACK = "/portal/account"


def _act(
    request: Request, runtime: Runtime, csrf: str, action: Callable[[UnitOfWork, str, Actor], object]
) -> Response:
    """Run ``action`` for the signed-in holder in one unit of work; show the page again either way."""
    session = _checked(runtime, request.cookies.get(COOKIE), csrf)
    chosen = request.cookies.get(LANG_COOKIE)
    holder = Actor(ActorKind.HOLDER, session.account_id)
    wait = too_fast(request, session.account_id, "actions")
    if wait is not None:
        with UnitOfWork(runtime, read_only=True) as uow:
            lang = chosen or accounts.get(uow, session.account_id).language
        return _again(runtime, session, chosen, t("portal.too_many", lang, seconds=wait), 429)
    try:
        with UnitOfWork(runtime) as uow:
            action(uow, session.account_id, holder)
            uow.commit()
    except IncompleteAppealError as exc:  # exactly what is missing, in the holder's language
        with UnitOfWork(runtime, read_only=True) as uow:
            lang = chosen or accounts.get(uow, session.account_id).language
        return _again(runtime, session, chosen, "; ".join(m.message(lang) for m in exc.missing))
    except ThawlineError as exc:
        return _again(runtime, session, chosen, str(exc))
    return RedirectResponse(BACK, status_code=303)


def _again(
    runtime: Runtime, session: PortalSession, chosen: str | None, error: str, status: int = 422
) -> Response:
    language, values = _account_page(runtime, session, chosen, error)
    reply = _page("account.html", language, http_status=status, **values)
    if status == 429:
        reply.headers["Retry-After"] = "60"
    return reply


def _on_appeal(
    request: Request, runtime: Runtime, csrf: str, appeal_id: str, call: Callable[[UnitOfWork, Actor], object]
) -> Response:
    """:func:`_act` on one of the holder's own appeals (someone else's is "not yours")."""

    def act(uow: UnitOfWork, account_id: str, holder: Actor) -> None:
        if appeals.get(uow, appeal_id).account_id != account_id:
            raise NotFoundError(f"appeal {appeal_id} is not yours")
        call(uow, holder)

    return _act(request, runtime, csrf, act)


@router.post("/freezes/{freeze_id}/appeal")
def open_appeal(
    request: Request,
    freeze_id: str,
    runtime: RuntimeDep,
    csrf: Csrf = "",
    explanation: Annotated[str, Form()] = "",
) -> Response:
    """Start an appeal (answered in-site); the page then shows exactly what is still missing."""

    def act(uow: UnitOfWork, account_id: str, holder: Actor) -> None:
        if freezes.get(uow, freeze_id).account_id != account_id:
            raise NotFoundError(f"freeze {freeze_id} is not yours")
        appeals.open_appeal(
            uow,
            freeze_id,
            explanation=explanation,
            contact_channel="in_site",
            contact_value=None,
            actor=holder,
        )

    return _act(request, runtime, csrf, act)


@router.post("/appeals/{appeal_id}/materials")
async def upload(  # noqa: PLR0917 - FastAPI passes parameters by name
    request: Request,
    appeal_id: str,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File()],
    kind: Annotated[str, Form()],
    csrf: Csrf = "",
    transaction_ids: Annotated[str, Form()] = "",
) -> Response:
    """One document for the appeal; its type is checked by content."""
    data = await file.read(runtime.settings.max_upload_bytes + 1)

    def add(uow: UnitOfWork, holder: Actor) -> None:
        try:
            material_kind = MaterialKind(kind)
        except ValueError as exc:
            raise InvalidInputError("choose a document type", field="kind") from exc
        ids = tuple(t.strip() for t in transaction_ids.replace("，", ",").split(",") if t.strip())
        appeals.add_material(uow, appeal_id, kind=material_kind, data=data, transaction_ids=ids, actor=holder)

    return await run_in_threadpool(_on_appeal, request, runtime, csrf, appeal_id, add)


@router.post("/appeals/{appeal_id}/submit")
def submit(request: Request, appeal_id: str, runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    """Submit; an incomplete appeal is refused with exactly what is missing."""

    return _on_appeal(
        request, runtime, csrf, appeal_id, lambda uow, holder: appeals.submit(uow, appeal_id, holder)
    )


@router.post("/appeals/{appeal_id}/expedite")
def expedite_appeal(request: Request, appeal_id: str, runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    """VIP: move the appeal to the front of the queue (one of the year's expedites)."""

    return _on_appeal(
        request, runtime, csrf, appeal_id, lambda uow, holder: expedite.expedite(uow, appeal_id, holder)
    )


@router.post("/appeals/{appeal_id}/verification/sms")
def send_code(request: Request, appeal_id: str, runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    """Send a one-time code to the verified phone."""

    return _on_appeal(
        request, runtime, csrf, appeal_id, lambda uow, holder: verification.send_code(uow, appeal_id, holder)
    )


@router.post("/appeals/{appeal_id}/verification/sms/check")
def check_code(
    request: Request,
    appeal_id: str,
    runtime: RuntimeDep,
    csrf: Csrf = "",
    code: Annotated[str, Form()] = "",
) -> Response:
    """Enter the code; a wrong one is recorded and counted, and the page says so."""
    wrong: list[str] = []

    def check(uow: UnitOfWork, holder: Actor) -> None:
        if not verification.check_code(uow, appeal_id, code.strip(), holder).passed:
            wrong.append("wrong code")

    reply = _on_appeal(request, runtime, csrf, appeal_id, check)
    if wrong:
        session = _checked(runtime, request.cookies.get(COOKIE), csrf)
        return _again(runtime, session, request.cookies.get(LANG_COOKIE), "wrong code / 验证码错误")
    return reply


@router.post("/appeals/{appeal_id}/verification/face")
def start_face(request: Request, appeal_id: str, runtime: RuntimeDep, csrf: Csrf = "") -> Response:
    """Open a face-check session with the provider and go there."""
    urls: list[str] = []

    def start(uow: UnitOfWork, holder: Actor) -> None:
        urls.append(verification.start_face(uow, appeal_id, holder)[1])

    reply = _on_appeal(request, runtime, csrf, appeal_id, start)
    if urls and reply.status_code == 303:
        return RedirectResponse(urls[0], status_code=303)
    return reply
