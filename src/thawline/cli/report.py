"""``thawline report``: the freeze report as tables, JSON or SVG charts."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from thawline.cli.common import console, print_json, runtime
from thawline.domain.errors import InvalidInputError
from thawline.i18n import pick_language
from thawline.services import analytics, charts
from thawline.services.analytics import Report, label
from thawline.services.unit_of_work import UnitOfWork


class Format(StrEnum):
    """Output formats."""

    TABLE = "table"
    JSON = "json"
    SVG = "svg"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def print_tables(report: Report, lang: str, out: Console) -> None:
    """The report as Rich tables."""

    def L(key: str) -> str:  # noqa: N802 (reads like a label in the rows below)
        return label(key, lang)

    p = report.period
    out.print(
        f"[bold]{L('freezes')}: {report.freezes}[/bold]  "
        f"{p.since:%Y-%m-%d %H:%M} → {p.until:%Y-%m-%d %H:%M} UTC"
        + (f"  · {L('category')}: {L(p.category)}" if p.category else "")
    )
    causes = Table(title=L("by_category"))
    for col in ("category", "freezes", "active", "released", "expired", "released_on_appeal"):
        causes.add_column(L(col), justify="left" if col == "category" else "right")
    for c in report.by_category:
        causes.add_row(
            L(c.category),
            str(c.freezes),
            str(c.active),
            str(c.released),
            str(c.expired),
            str(c.released_on_appeal),
        )
    out.print(causes)
    rules = Table(title=L("rules"))
    for col in ("rule", "freezes", "released_on_appeal", "wrongful_rate"):
        rules.add_column(L(col), justify="left" if col == "rule" else "right")
    for r in report.rules:
        rules.add_row(L(r.rule), str(r.freezes), str(r.released_on_appeal), _pct(r.wrongful_rate))
    out.print(rules)
    ttr = Table(title=L("time_to_release"))
    for col in ("category", "cases", "median_hours", "p90_hours", "share_within_72h"):
        ttr.add_column(L(col), justify="left" if col == "category" else "right")
    t = report.time_to_release
    groups = [
        ("all", t.all),
        ("complete_materials", t.complete_materials),
        ("incomplete_materials", t.incomplete_materials),
    ]
    for name, times in [*groups, *t.by_category.items()]:
        ttr.add_row(
            L(name),
            str(times.cases),
            _num(times.median_hours),
            _num(times.p90_hours),
            _pct(times.share_within_72h),
        )
    out.print(ttr)
    a, s, v = report.appeals, report.sla, report.vip
    summary = Table(title=L("appeals"), show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    rows = [
        (L("appeals"), str(a.total)),
        *((f"  {L(status)}", str(n)) for status, n in a.by_status.items()),
        (
            L("second_appeal_rate"),
            f"{_pct(a.second_appeal_rate)} ({a.second_round}/{a.first_round_rejected})",
        ),
        (
            L("share_rejections_incomplete_vouchers"),
            f"{_pct(a.share_rejections_incomplete_vouchers)} "
            f"({a.rejections_incomplete_vouchers}/{a.rejections})",
        ),
        *((f"  {L(code)}", str(n)) for code, n in a.reject_reasons.items()),
        (L("sla"), f"{_pct(s.compliance)} ({s.met}/{s.met + s.breached}; {L('pending')} {s.pending})"),
        (L("expedited_appeals"), f"{v.expedited_appeals} ({_pct(v.share_of_appeals)})"),
    ]
    for row in rows:
        summary.add_row(*row)
    out.print(summary)
    reviewers = Table(title=f"{L('reviews')} · {L('agreement_rate')} {_pct(report.reviews.agreement_rate)}")
    for col in ("reviewer_id", "decisions", "approve", "reject", "needs_more_info", "agreement_rate"):
        reviewers.add_column(L(col), justify="left" if col == "reviewer_id" else "right")
    for who in report.reviews.reviewers:
        reviewers.add_row(
            who.reviewer,
            str(who.decisions),
            str(who.approve),
            str(who.reject),
            str(who.needs_more_info),
            _pct(who.agreement_rate),
        )
    out.print(reviewers)


def report(
    *,
    since: Annotated[
        str | None, typer.Option(help="First UTC day (YYYY-MM-DD) or time; default 30 days ago.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last UTC day (inclusive) or an exclusive time; default now.")
    ] = None,
    category: Annotated[str | None, typer.Option("--category", help="Only freezes of this cause.")] = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="table, json, or svg (charts; needs --out).")
    ] = Format.TABLE,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory to write report.json / the charts into.")
    ] = None,
    lang: Annotated[str | None, typer.Option(help="en or zh-CN (default: THAWLINE_LANG).")] = None,
) -> None:
    """Freezes by cause and rule, time to release, appeal outcomes, wrongful-freeze rates, SLA, reviewers.
    / 冻结报表：原因与规则、解封用时、申诉结果、误冻结率、响应时效、审核员。"""
    language = lang if lang in ("en", "zh-CN") else pick_language(None)
    if fmt is Format.SVG and out is None:
        raise typer.BadParameter("svg writes one file per chart: give --out DIR", param_hint="--out")
    with runtime() as rt:
        try:
            period = analytics.parse_period(since, until, rt.clock.now(), category)
        except InvalidInputError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"--{exc.field}") from exc
        with (
            Progress(
                TextColumn("report"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                disable=not sys.stderr.isatty(),
                transient=True,
            ) as bar,
            UnitOfWork(rt, read_only=True) as uow,
        ):
            task = bar.add_task("report", total=None)
            built = analytics.build_report(
                uow, period, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if fmt is Format.JSON:
        doc = built.model_dump(mode="json")
        if out is None:
            print_json(doc)
        else:
            (out / "report.json").write_text(built.model_dump_json(indent=2) + "\n")
            console.print(f"wrote {out / 'report.json'}")
    elif fmt is Format.SVG:
        assert out is not None
        for name in charts.CHARTS:
            (out / f"{name}.svg").write_text(charts.render(built, name, language) + "\n", encoding="utf-8")
        console.print(f"wrote {len(charts.CHARTS)} charts to {out}")
    else:
        print_tables(built, language, Console())
