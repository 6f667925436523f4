"""Reports and compliance exports over HTTP: the freeze report (JSON), its charts (SVG), the case
exports (CSV, Parquet, JSON Lines) and the retention report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.api.downloads import MEDIA, export_file
from thawline.domain.apikeys import Scope
from thawline.domain.errors import InvalidInputError, NotFoundError
from thawline.i18n import pick_language
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import analytics, charts
from thawline.services import export as exports
from thawline.services.analytics import Report
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.export import Dataset, Format, RetentionReport
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["reports"])
CanRead = Annotated[ApiKeyInfo, Depends(require(Scope.REPORTS_READ))]
CanExport = Annotated[ApiKeyInfo, Depends(require(Scope.LOG_EXPORT))]
Since = Annotated[
    str | None, Query(description="First UTC day (YYYY-MM-DD) or an ISO time; default 30 days ago.")
]
Until = Annotated[
    str | None, Query(description="Last UTC day (inclusive) or an exclusive ISO time; default now.")
]
Category = Annotated[str | None, Query(description="Only freezes of this cause, e.g. high_frequency.")]


def _report(uow: UnitOfWork, since: str | None, until: str | None, category: str | None) -> Report:
    period = analytics.parse_period(since, until, uow.runtime.clock.now(), category)
    return analytics.build_report(uow, period)


@router.get("/reports/summary", response_model=Report)
def summary(
    uow: ReadUow, _key: CanRead, since: Since = None, until: Until = None, category: Category = None
) -> Report:
    """The freeze report for the freezes created in the period: causes and rules per day, time to
    release, appeal outcomes and reasons, per-rule wrongful-freeze rates, first-response SLA, VIP
    expedites, second appeals, reviewer workload and agreement; ``labels`` in English and zh-CN."""
    return _report(uow, since, until, category)


@router.get("/reports/charts/{name}.svg", responses={200: {"content": {"image/svg+xml": {}}}})
def chart(
    *,
    request: Request,
    uow: ReadUow,
    _key: CanRead,
    name: str,
    since: Since = None,
    until: Until = None,
    category: Category = None,
    lang: Annotated[str | None, Query(pattern="^(zh-CN|en)$")] = None,
) -> Response:
    """One chart of the report as SVG (``freezes-by-day``, ``freezes-by-cause``, ``wrongful-by-rule``,
    ``time-to-release``, ``reject-reasons``, ``sla``, ``reviewer-workload``), in ``lang`` or the
    request's language."""
    language = lang or pick_language(request.headers.get("accept-language"))
    if name not in charts.CHARTS:
        raise NotFoundError(f"no chart called {name!r}; charts: {', '.join(charts.CHARTS)}")
    svg = charts.render(_report(uow, since, until, category), name, language)
    return Response(svg, media_type="image/svg+xml")


@router.get("/exports/retention", response_model=RetentionReport)
def retention_report(uow: ReadUow, _key: CanExport) -> RetentionReport:
    """What is due for deletion when (log entries and closed cases, per month) and what is on legal hold."""
    return exports.retention_report(uow)


@router.get("/exports/{dataset}", responses={200: {"content": {m: {} for m in MEDIA.values()}}})
def export_dataset(
    *,
    runtime: RuntimeDep,
    key: CanExport,
    dataset: Dataset,
    fmt: Annotated[Format, Query(alias="format")] = Format.CSV,
    since: Since = None,
    until: Until = None,
) -> Response:
    """Accounts, cases or appeals as CSV, Parquet or JSON Lines: ids, codes, times and hashes, never
    personal data. The manifest's digest and checkpoint come back in ``X-Thawline-*`` headers; the
    export is recorded in the log. Log ranges with proofs: ``GET /v1/log/export``."""
    if dataset is Dataset.LOG:
        raise InvalidInputError("log ranges are exported with GET /v1/log/export", field="dataset")
    period = None
    if since or until:
        period = analytics.parse_period(since or "1970-01-01", until, runtime.clock.now())
    return export_file(runtime, dataset, fmt, Actor(ActorKind.INTEGRATOR, key.id), period=period)
