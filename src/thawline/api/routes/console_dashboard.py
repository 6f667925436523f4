"""The staff console's dashboard: the freeze report with inline SVG charts (no script; tooltips are
SVG ``<title>`` elements), filtered by period and cause with a GET form. Needs ``reports:read``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from thawline.api.deps import RuntimeDep
from thawline.api.pages import page
from thawline.api.routes import console_auth
from thawline.api.routes.console_auth import Lang, gate, language_of
from thawline.domain.errors import InvalidInputError
from thawline.domain.freezes import ReasonCategory
from thawline.domain.staff import Permission
from thawline.services import analytics, charts, staff
from thawline.services.staff_sessions import StaffSession
from thawline.services.unit_of_work import UnitOfWork

router = console_auth.router  # the console's one router; ``thawline.api.app`` imports this module
ReportReader = Annotated[StaffSession | Response, Depends(gate(Permission.REPORTS_READ))]
Field = Annotated[str, Query(max_length=40)]
SHOWN = ("freezes-by-day", "freezes-by-cause", "wrongful-by-rule", "time-to-release", "reject-reasons", "sla")


@router.get("/dashboard")
def dashboard(
    *,
    request: Request,
    runtime: RuntimeDep,
    who: ReportReader,
    since: Field = "",
    until: Field = "",
    category: Field = "",
    lang: Lang = None,
) -> Response:
    """Freezes by cause and rule, time to release, appeal outcomes, wrongful-freeze rates, SLA, reviewers."""
    if isinstance(who, Response):
        return who
    language = language_of(request, runtime, lang)
    filters = {"since": since.strip(), "until": until.strip(), "category": category.strip()}
    error = None
    try:
        period = analytics.parse_period(
            filters["since"] or None,
            filters["until"] or None,
            runtime.clock.now(),
            filters["category"] or None,
        )
    except InvalidInputError as exc:
        error = f"{exc.field}: {exc}"
        period = analytics.parse_period(None, None, runtime.clock.now())
    with UnitOfWork(runtime, read_only=True) as uow:
        report = analytics.build_report(uow, period)
        names = staff.display_names(uow)
    # The SVG is built from escaped text by thawline.domain.charts, so it is safe to inline.
    svgs = {name: Markup(charts.render(report, name, language)) for name in SHOWN}  # noqa: S704
    return page(
        "console_dashboard.html",
        language,
        422 if error else 200,
        session=who,
        path="/console/dashboard",
        report=report,
        charts=svgs,
        filters=filters,
        error=error,
        categories=[c.value for c in ReasonCategory],
        label=lambda code: analytics.label(code, language),
        names=names,
    )
