"""The report's named charts as SVG, in English or zh-CN (used by the CLI, the API and the console)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta

from thawline.domain.charts import Bar, Series, bar_chart, line_chart
from thawline.domain.errors import NotFoundError
from thawline.services.analytics import Report, label

MAX_SERIES = 6  # causes drawn as their own line; the rest are summed as "other"
MAX_BARS = 15


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} h"


def _empty(lang: str) -> str:
    return "没有数据" if lang == "zh-CN" else "no data"


def freezes_by_day(report: Report, lang: str) -> str:
    """Freezes per UTC day, one line per cause (the largest six, then the rest together)."""
    first = report.period.since.date()
    days = [first + timedelta(days=i) for i in range((report.period.until - report.period.since).days or 1)]
    totals: Counter[str] = Counter()
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for d in report.freezes_by_day:
        totals[d.category] += d.freezes
        per[d.category][d.day.isoformat()] += d.freezes
    top = [c for c, _ in totals.most_common(MAX_SERIES)]
    series = [Series(label(c, lang), [per[c][d.isoformat()] for d in days]) for c in top]
    rest = [c for c in totals if c not in top]
    if rest:
        other = "其他" if lang == "zh-CN" else "other"
        series.append(Series(other, [sum(per[c][d.isoformat()] for c in rest) for d in days]))
    desc = (
        f"{report.freezes} freezes from {report.period.since:%Y-%m-%d} to {report.period.until:%Y-%m-%d}"
        if lang != "zh-CN"
        else f"{report.period.since:%Y-%m-%d} 至 {report.period.until:%Y-%m-%d} 共 {report.freezes} 次冻结"
    )
    return line_chart(
        label("freezes_by_day", lang),
        desc,
        [d.strftime("%m-%d" if len(days) <= 366 else "%Y-%m-%d") for d in days],
        series if report.freezes else [],
        empty=_empty(lang),
    )


def freezes_by_cause(report: Report, lang: str) -> str:
    """Freezes per cause."""
    bars = [Bar(label(c.category, lang), c.freezes) for c in report.by_category]
    return bar_chart(label("by_category", lang), label("freezes", lang), bars, empty=_empty(lang))


def wrongful_by_rule(report: Report, lang: str) -> str:
    """Per rule: the share of its freezes released on an approved appeal."""
    bars = [
        Bar(
            label(r.rule, lang),
            r.wrongful_rate or 0.0,
            f"{_pct(r.wrongful_rate)} ({r.released_on_appeal}/{r.freezes})",
        )
        for r in report.rules[:MAX_BARS]
    ]
    return bar_chart(
        label("rules", lang),
        f"{label('released_on_appeal', lang)} / {label('freezes', lang)}",
        bars,
        empty=_empty(lang),
    )


def time_to_release(report: Report, lang: str) -> str:
    """Median hours to release: all, complete and incomplete materials, and each cause."""
    ttr = report.time_to_release
    groups = [
        (label("all", lang), ttr.all),
        (label("complete_materials", lang), ttr.complete_materials),
        (label("incomplete_materials", lang), ttr.incomplete_materials),
        *((label(c, lang), t) for c, t in ttr.by_category.items()),
    ]
    within = label("share_within_72h", lang)
    bars = [
        Bar(name, t.median_hours or 0.0, f"{_hours(t.median_hours)} · {within} {_pct(t.share_within_72h)}")
        for name, t in groups
        if t.cases
    ]
    return bar_chart(label("time_to_release", lang), label("median_hours", lang), bars, empty=_empty(lang))


def reject_reasons(report: Report, lang: str) -> str:
    """How often each reason code was given when an appeal was rejected."""
    a = report.appeals
    bars = [Bar(label(code, lang), n) for code, n in list(a.reject_reasons.items())[:MAX_BARS]]
    share = _pct(a.share_rejections_incomplete_vouchers)
    desc = f"{label('share_rejections_incomplete_vouchers', lang)}: {share}"
    return bar_chart(label("reject_reasons", lang), desc, bars, empty=_empty(lang))


def sla(report: Report, lang: str) -> str:
    """First responses on time, late, and still pending."""
    s = report.sla
    bars = [
        Bar(label(k, lang), v) for k, v in (("met", s.met), ("breached", s.breached), ("pending", s.pending))
    ]
    desc = f"{label('compliance', lang)}: {_pct(s.compliance)}"
    return bar_chart(label("sla", lang), desc, bars if any(b.value for b in bars) else [], empty=_empty(lang))


def reviewer_workload(report: Report, lang: str) -> str:
    """Decisions per reviewer, with each one's agreement with the machine pre-review."""
    agreement = label("agreement_rate", lang)
    bars = [
        Bar(r.reviewer, r.decisions, f"{r.decisions} · {agreement} {_pct(r.agreement_rate)}")
        for r in report.reviews.reviewers[:MAX_BARS]
    ]
    desc = f"{agreement}: {_pct(report.reviews.agreement_rate)}"
    return bar_chart(label("reviews", lang), desc, bars, empty=_empty(lang))


CHARTS: dict[str, Callable[[Report, str], str]] = {
    "freezes-by-day": freezes_by_day,
    "freezes-by-cause": freezes_by_cause,
    "wrongful-by-rule": wrongful_by_rule,
    "time-to-release": time_to_release,
    "reject-reasons": reject_reasons,
    "sla": sla,
    "reviewer-workload": reviewer_workload,
}


def render(report: Report, name: str, lang: str = "en") -> str:
    """The chart called ``name`` (one of ``CHARTS``) as an SVG document."""
    draw = CHARTS.get(name)
    if draw is None:
        raise NotFoundError(f"no chart called {name!r}; charts: {', '.join(CHARTS)}")
    return draw(report, lang)
