"""The staff console: the review queue, the case page, claiming and deciding cases.

Server-rendered. Every route declares the permission it needs through the gate in ``console_auth``
(whose router, with sign-in and sign-out, this module shares); forms carry the session's CSRF token.
Who may do what is the table in ``thawline.domain.staff``; a case waiting for its four-eyes second
approval also needs the senior permission, and the review service keeps its own rules (never the
first approver twice, never the freeze's creator, never a conflicted reviewer).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Form, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import (
    Lang,
    Reader,
    Reviewer,
    denied,
    language_of,
    run_step,
    see_other,
)
from thawline.domain.appeals import QUEUED, Appeal
from thawline.domain.errors import InvalidInputError, NotFoundError
from thawline.domain.freezes import ReasonCategory
from thawline.domain.review import REASON_CODES, Decision
from thawline.domain.staff import case_step_permission, check_permission
from thawline.i18n import t
from thawline.services import activity, appeals, freezes, link_graph, review, staff, timeline
from thawline.services.runtime import Runtime
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

router = console_auth.router  # sign-in and sign-out live there; the case pages join them here


def countdown(runtime: Runtime, appeal: Appeal, lang: str) -> tuple[str, str]:
    """(css class, text) of the first-response deadline: time left, 'breached', or answered."""
    due = appeal.first_response_due
    if appeal.first_responded_at is not None or due is None:
        return "answered", t("console.sla.answered", lang)
    left = due - runtime.clock.now()
    if left <= timedelta(0):
        return "breached", t("console.sla.breached", lang)
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    soon = left <= timedelta(hours=runtime.settings.sla_warning_hours)
    return ("soon" if soon else "ok"), t("console.sla.left", lang, hours=hours, minutes=minutes)


@router.get("")
def queue_page(
    request: Request,
    runtime: RuntimeDep,
    who: Reader,
    *,
    view: Literal["all", "mine", "unassigned"] = "all",
    category: Annotated[ReasonCategory | None, Query()] = None,
    expedited: bool = False,
    lang: Lang = None,
) -> Response:
    """The review queue: expedited first, then by first-response deadline, with claim buttons."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    with UnitOfWork(runtime, read_only=True) as uow:
        mine = who.user.actor.ref
        items = review.queue(
            uow,
            assignee=mine if view == "mine" else None,
            unassigned=view == "unassigned",
            category=category.value if category else None,
            expedited=expedited,
            limit=200,
        )
        names = staff.display_names(uow)
    rows = [
        {
            "item": i,
            "sla": countdown(runtime, i.appeal, language),
            "mine": i.appeal.assignee == mine,
            "can_claim": i.appeal.assignee is None and who.may(case_step_permission(i.appeal.status)),
        }
        for i in items
    ]
    return page(
        "console_queue.html",
        language,
        session=who,
        path="/console",
        rows=rows,
        view=view,
        names=names,
        category=category.value if category else "",
        categories=[c.value for c in ReasonCategory],
        expedited=expedited,
    )


def _case(runtime: Runtime, appeal_id: str, who: StaffSession, lang: str) -> dict[str, Any]:
    with UnitOfWork(runtime, read_only=True) as uow:
        a = appeals.get(uow, appeal_id)
        may_act = who.may(case_step_permission(a.status)) and a.status in QUEUED
        graph = link_graph.neighbourhood(uow, a.account_id, runtime.clock.now())
        return {
            "graph": graph,
            # Every value in the SVG is escaped by render_svg itself.
            "graph_svg": Markup(  # noqa: S704
                link_graph.render_svg(
                    graph,
                    title=t("console.graph.title", lang, account=a.account_id),
                    frozen_label=t("console.graph.frozen", lang),
                )
            ),
            "activity": activity.recent(uow, a.account_id),
            "can_unclaim": a.assignee == who.user.actor.ref and a.status in QUEUED,
            "appeal": a,
            "freeze": freezes.get(uow, a.freeze_id),
            "flagged": freezes.flagged(uow, a.freeze_id),
            "materials": appeals.materials(uow, appeal_id),
            "reviews": review.reviews(uow, appeal_id),
            "steps": timeline.timeline(uow, a.account_id, timeline.Audience.STAFF, lang),
            "sla": countdown(runtime, a, lang),
            "can_claim": may_act and a.assignee is None,
            "can_decide": may_act and a.assignee == who.user.actor.ref,
            "decisions": [(d.value, sorted(REASON_CODES[d])) for d in Decision],
            "names": staff.display_names(uow),
        }


def _case_page(
    runtime: Runtime, appeal_id: str, who: StaffSession, lang: str, *, status: int = 200, error: str = ""
) -> Response:
    try:
        values = _case(runtime, appeal_id, who, lang)
    except NotFoundError as exc:
        return denied(lang, who, str(exc), 404)
    path = f"/console/appeals/{appeal_id}"
    return page("console_case.html", lang, status, session=who, error=error, path=path, **values)


@router.get("/appeals/{appeal_id}")
def case_page(
    appeal_id: str, request: Request, runtime: RuntimeDep, who: Reader, lang: Lang = None
) -> Response:
    """One case: reasons and evidence, flagged transactions, timeline, materials, reviews, decision form."""
    if isinstance(who, Response):
        return who
    return _case_page(runtime, appeal_id, who, language_of(request, runtime, lang))


def _act(
    request: Request,
    runtime: Runtime,
    appeal_id: str,
    who: StaffSession,
    *,
    lang: str | None,
    step: Callable[[UnitOfWork], object],
) -> Response:
    """Check the role for the case's state and run ``step`` in one unit of work; errors re-render the case."""

    def checked(uow: UnitOfWork) -> None:
        check_permission(who.user.permissions, case_step_permission(appeals.get(uow, appeal_id).status))
        step(uow)

    failed = run_step(runtime, checked)
    if failed is not None:
        language = language_of(request, runtime, lang)
        return _case_page(runtime, appeal_id, who, language, status=failed[0], error=str(failed[1]))
    return see_other(f"/console/appeals/{appeal_id}", lang)


@router.post("/appeals/{appeal_id}/claim")
def claim(
    appeal_id: str, request: Request, runtime: RuntimeDep, who: Reviewer, lang: Lang = None
) -> Response:
    """Take an unassigned case; a case waiting for its second approval only by a senior reviewer."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _act(
        request, runtime, appeal_id, who, lang=lang, step=lambda uow: review.claim(uow, appeal_id, actor)
    )


@router.post("/appeals/{appeal_id}/decision")
def decide(
    appeal_id: str,
    *,
    request: Request,
    runtime: RuntimeDep,
    who: Reviewer,
    decision: Annotated[str, Form()] = "",
    reason_codes: Annotated[list[str] | None, Form()] = None,
    note: Annotated[str, Form(max_length=5000)] = "",
    lang: Lang = None,
) -> Response:
    """Decide a case you hold; a four-eyes second approval is a senior's, never the first approver's."""
    if isinstance(who, Response):
        return who

    def step(uow: UnitOfWork) -> None:
        try:
            chosen = Decision(decision)
        except ValueError as exc:
            raise InvalidInputError("choose approve, reject or needs_more_info", field="decision") from exc
        review.decide(
            uow, appeal_id, chosen, reason_codes=tuple(reason_codes or ()), note=note, reviewer=who.user.actor
        )

    return _act(request, runtime, appeal_id, who, lang=lang, step=step)


@router.post("/appeals/{appeal_id}/unclaim")
def unclaim(
    appeal_id: str, request: Request, runtime: RuntimeDep, who: Reviewer, lang: Lang = None
) -> Response:
    """Hand back a case you hold: it returns to the queue for someone else."""
    if isinstance(who, Response):
        return who
    actor = who.user.actor
    return _act(
        request, runtime, appeal_id, who, lang=lang, step=lambda uow: review.unclaim(uow, appeal_id, actor)
    )


@router.get("/appeals/{appeal_id}/materials/{material_id}")
def material(
    appeal_id: str, material_id: str, request: Request, runtime: RuntimeDep, *, who: Reader, lang: Lang = None
) -> Response:
    """One uploaded material as the holder sent it (its type sniffed at upload), shown in the browser."""
    if isinstance(who, Response):
        return who
    with UnitOfWork(runtime, read_only=True) as uow:
        found = next((m for m in appeals.materials(uow, appeal_id) if m.id == material_id), None)
    if found is None:
        return denied(
            language_of(request, runtime, lang), who, f"no material {material_id} on this case", 404
        )
    data = runtime.blobs.get(found.sha256)
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
    name = f"{found.kind}-{material_id}.{extension.get(found.media_type, 'bin')}"
    return Response(
        data,
        media_type=found.media_type,
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private, no-store"},
    )
