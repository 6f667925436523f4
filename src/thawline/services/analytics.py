"""The freeze report: causes and rules over time, time to release, appeal outcomes and their
reasons, per-rule wrongful-freeze rates, first-response SLA, VIP expedites, second appeals, and the
reviewers' workload and agreement with the machine pre-review.

A report covers a cohort of cases: the freezes created in ``[since, until)`` (optionally of one
cause) and everything that followed from them — their appeals, reviews and releases, whenever they
happened. It reads narrow columns of the case tables (which commit in the same transaction as the
log entries recording each step) through :mod:`thawline.services.report_store`, which keeps them as
Polars frames current with the log, and groups them in Polars.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import polars as pl
from pydantic import BaseModel, Field
from sqlalchemy import text

from thawline.domain.errors import InvalidInputError
from thawline.domain.freezes import ReasonCategory
from thawline.domain.review import REASON_CODES, Decision
from thawline.domain.rules import DIAGNOSIS
from thawline.i18n import MESSAGES
from thawline.services.report_store import RULE, CaseFrames, ReportStore
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

__all__ = ["RULE", "Period", "Report", "build_report", "label", "parse_period"]

RELEASE_TARGET_HOURS = 72
DEFAULT_DAYS = 30
MAX_DAYS = 3660
# Reject reasons that name the vouchers: "failed for incomplete vouchers" (the source's 63 %).
VOUCHER_PREFIX = "voucher_"


class Period(BaseModel):
    """The cohort: freezes created in ``[since, until)``, optionally of one cause."""

    since: datetime
    until: datetime
    category: str | None = None


class DayCount(BaseModel):
    """Freezes of one cause and rule on one UTC day."""

    day: date
    category: str
    rule: str
    freezes: int


class CategoryCount(BaseModel):
    """Freezes of one cause, and where they are now."""

    category: str
    freezes: int
    active: int
    released: int
    expired: int
    released_on_appeal: int


class RuleQuality(BaseModel):
    """Per rule: freezes, those released on an approved appeal, and their ratio."""

    rule: str
    freezes: int
    released_on_appeal: int
    wrongful_rate: float | None = Field(description="released_on_appeal / freezes")


class ReleaseTimes(BaseModel):
    """Hours from the first appeal submission to the release, for cases released on appeal."""

    cases: int
    median_hours: float | None
    p90_hours: float | None
    within_72h: int
    share_within_72h: float | None


class TimeToRelease(BaseModel):
    """Release times overall, by completeness of the materials at submission, and by cause."""

    all: ReleaseTimes
    complete_materials: ReleaseTimes
    incomplete_materials: ReleaseTimes
    by_category: dict[str, ReleaseTimes]


class Appeals(BaseModel):
    """Appeal outcomes, why rejections happened, and second appeals."""

    total: int
    by_status: dict[str, int]
    first_round: int
    first_round_rejected: int
    second_round: int
    second_appeal_rate: float | None = Field(description="second-round appeals / rejected first rounds")
    rejections: int
    reject_reasons: dict[str, int]
    rejections_incomplete_vouchers: int
    share_rejections_incomplete_vouchers: float | None


class Sla(BaseModel):
    """First response within the deadline (48 h by default) after each (re)submission."""

    due_hours: float
    met: int
    breached: int
    pending: int
    compliance: float | None = Field(description="met / (met + breached)")
    expedited_met: int
    expedited_breached: int


class Vip(BaseModel):
    """Use of the VIP expedite channel."""

    expedited_appeals: int
    share_of_appeals: float | None
    accounts: int
    quota_used_by_year: dict[str, int]


class ReviewerLoad(BaseModel):
    """One reviewer's decisions and how often they agreed with the machine pre-review."""

    reviewer: str
    decisions: int
    approve: int
    reject: int
    needs_more_info: int
    agreed: int
    disagreed: int
    agreement_rate: float | None


class Reviews(BaseModel):
    """Human decisions and machine/human agreement."""

    human_decisions: int
    machine_opinions: int
    agreed: int
    disagreed: int
    agreement_rate: float | None
    reviewers: list[ReviewerLoad]


class Report(BaseModel):
    """The whole report; ``labels`` names every code it uses in English and zh-CN."""

    generated_at: datetime
    period: Period
    freezes: int
    freezes_by_day: list[DayCount]
    by_category: list[CategoryCount]
    rules: list[RuleQuality]
    time_to_release: TimeToRelease
    appeals: Appeals
    sla: Sla
    vip: Vip
    reviews: Reviews
    labels: dict[str, dict[str, str]]


# ----------------------------------------------------------------------------------------- labels

METRIC_LABELS: dict[str, tuple[str, str]] = {
    "freezes": ("Freezes", "冻结数"),
    "freezes_by_day": ("Freezes per day by cause", "按原因的每日冻结数"),
    "by_category": ("Freezes by cause", "按原因的冻结数"),
    "rules": ("Wrongful-freeze rate by rule", "各规则误冻结率"),
    "released_on_appeal": ("Released on appeal", "申诉后解封"),
    "wrongful_rate": ("Wrongful-freeze rate", "误冻结率"),
    "time_to_release": ("Time to release (from first submission)", "解封用时（自首次提交申诉起）"),
    "median_hours": ("Median (h)", "中位数（小时）"),
    "p90_hours": ("90th percentile (h)", "90 分位（小时）"),
    "share_within_72h": ("Released within 72 h", "72 小时内解封"),
    "complete_materials": ("Complete materials at submission", "提交时材料齐全"),
    "incomplete_materials": ("Incomplete materials at submission", "提交时材料不全"),
    "all": ("All released cases", "全部解封案件"),
    "appeals": ("Appeals", "申诉"),
    "second_appeal_rate": ("Second-appeal rate", "二次申诉率"),
    "reject_reasons": ("Rejection reasons", "驳回原因"),
    "share_rejections_incomplete_vouchers": ("Rejections for incomplete vouchers", "因凭证不全被驳回"),
    "sla": ("First response within 48 h", "48 小时内首次响应"),
    "compliance": ("SLA compliance", "时效达成率"),
    "met": ("Met", "按时"),
    "breached": ("Breached", "超时"),
    "pending": ("Pending", "待响应"),
    "vip": ("VIP expedites", "VIP 加急"),
    "expedited_appeals": ("Expedited appeals", "加急申诉"),
    "reviews": ("Reviewers", "审核员"),
    "agreement_rate": ("Agreement with the machine pre-review", "与机器预审一致率"),
    "decisions": ("Decisions", "决定数"),
    "reviewer_id": ("Reviewer", "审核员"),
    "approve": ("Approve", "通过"),
    "reject": ("Reject", "驳回"),
    "rule": ("Rule", "规则"),
    "category": ("Cause", "原因"),
    "cases": ("Cases", "案件数"),
    "active": ("Active", "生效中"),
    "released": ("Released", "已解封"),
    "expired": ("Expired", "已到期"),
}
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "draft": ("draft", "草稿"),
    "submitted": ("submitted", "已提交"),
    "in_review": ("in review", "审核中"),
    "second_approval": ("waiting for second approval", "待二次审批"),
    "needs_more_info": ("needs more information", "需补充材料"),
    "resubmitted": ("resubmitted", "已重新提交"),
    "approved": ("approved", "已通过"),
    "rejected": ("rejected", "已驳回"),
    "withdrawn": ("withdrawn", "已撤回"),
    "expired": ("expired", "已过期"),
}
SOURCE_LABELS: dict[str, tuple[str, str]] = {
    "reviewer": ("manual freeze by a reviewer", "审核员人工冻结"),
    "regulator_order": ("regulator order", "监管指令"),
}


def labels() -> dict[str, dict[str, str]]:
    """Every code the report uses, in English and zh-CN."""
    out: dict[str, dict[str, str]] = {}
    for key, (en, zh) in (*STATUS_LABELS.items(), *SOURCE_LABELS.items(), *METRIC_LABELS.items()):
        out[key] = {"en": en, "zh-CN": zh}
    for category, (en, zh) in DIAGNOSIS.items():
        out[category.value] = {"en": en, "zh-CN": zh}
    for codes in REASON_CODES.values():
        for code in codes:
            en_text = MESSAGES["en"].get(f"code.{code}", code.replace("_", " "))
            out[code] = {"en": en_text, "zh-CN": MESSAGES["zh-CN"].get(f"code.{code}", en_text)}
    return out


LABELS = labels()


def label(code: str, lang: str) -> str:
    """The label of ``code`` in ``lang`` (the code itself when it has none, e.g. a rule id)."""
    names = LABELS.get(code)
    return code if names is None else names.get(lang, names["en"])


# ----------------------------------------------------------------------------------------- period


def _parse_time(value: str, field: str, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` (a UTC day; as an end, inclusive) or an ISO 8601 time with a zone."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"{field} must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone, not {value!r}", field=field
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInputError(f"{field} needs a time zone, e.g. 2026-01-01T00:00:00Z", field=field)
    return parsed.astimezone(UTC)


def parse_period(since: str | None, until: str | None, now: datetime, category: str | None = None) -> Period:
    """The cohort from user input: defaults to the 30 days before ``now``; dates are UTC days."""
    end = _parse_time(until, "until", end=True) if until else now
    start = _parse_time(since, "since", end=False) if since else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidInputError("since must be before until", field="since")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidInputError(f"a report covers at most {MAX_DAYS} days", field="since")
    if category:
        try:
            category = ReasonCategory(category).value
        except ValueError:
            known = ", ".join(c.value for c in ReasonCategory)
            raise InvalidInputError(
                f"unknown cause {category!r} (known: {known})", field="category"
            ) from None
    return Period(since=start, until=end, category=category or None)


# ---------------------------------------------------------------------------------------- queries


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _release_times(frame: pl.DataFrame) -> ReleaseTimes:
    """Median, 90th percentile (linear interpolation) and the 72-hour share of ``frame['hours']``."""
    cases = frame.height
    if cases == 0:
        return ReleaseTimes(cases=0, median_hours=None, p90_hours=None, within_72h=0, share_within_72h=None)
    hours = frame.get_column("hours")
    within = int((hours <= RELEASE_TARGET_HOURS).sum())
    median = hours.quantile(0.5, "linear")
    p90 = hours.quantile(0.9, "linear")
    return ReleaseTimes(
        cases=cases,
        median_hours=None if median is None else round(float(median), 3),
        p90_hours=None if p90 is None else round(float(p90), 3),
        within_72h=within,
        share_within_72h=_ratio(within, cases),
    )


def _rows(frame: pl.DataFrame) -> list[SimpleNamespace]:
    return [SimpleNamespace(**row) for row in frame.iter_rows(named=True)]


def _figures(frames: CaseFrames, period: Period, now: datetime) -> dict[str, Any]:
    """Group the cohort's cases: one small frame (or count) per figure."""
    in_period = (pl.col("created_at") >= period.since) & (pl.col("created_at") < period.until)
    if period.category is not None:
        in_period &= pl.col("category") == period.category
    freezes = frames.freezes.filter(in_period)
    appeals, reviews = frames.appeals, frames.reviews
    if freezes.height < frames.freezes.height:  # a filter that keeps every freeze needs no join
        cohort = freezes.select("id")
        appeals = appeals.join(cohort, left_on="freeze_id", right_on="id", how="semi")
        reviews = reviews.join(cohort, left_on="freeze_id", right_on="id", how="semi")
    approved = appeals.filter(pl.col("status") == "approved").get_column("freeze_id")
    freezes = freezes.with_columns(
        on_appeal=(pl.col("status") == "released") & pl.col("id").is_in(approved.implode()),
        day=pl.col("created_at").dt.date(),
    )
    per_day = freezes.group_by("day", "category", "rule", "status", "on_appeal").agg(n=pl.len())
    # Per case released on appeal: hours from the first submission (the first machine pre-review runs
    # at it) to the release, and whether the materials were incomplete: a reviewer asked for more,
    # or rejected a round for its vouchers.
    human = pl.col("kind") == "human"
    incomplete = human & (
        (pl.col("decision") == "needs_more_info")
        | (
            (pl.col("decision") == "reject")
            & pl.col("reason_codes").str.contains(VOUCHER_PREFIX, literal=True)
        )
    )
    released_ids = freezes.filter(pl.col("on_appeal")).select("id", "category", "ended_at")
    per_case = (
        reviews.join(released_ids, left_on="freeze_id", right_on="id")
        .group_by("freeze_id")
        .agg(
            category=pl.col("category").first(),
            ended_at=pl.col("ended_at").first(),
            first_at=pl.col("created_at").min(),
            incomplete=incomplete.any(),
        )
    )
    released = per_case.select(
        "category",
        hours=(pl.col("ended_at") - pl.col("first_at")).dt.total_microseconds() / 3.6e9,
        incomplete="incomplete",
    )
    due, responded = pl.col("first_response_due"), pl.col("first_responded_at")
    outcome = (
        pl.when(due.is_null())
        .then(pl.lit(""))
        .when(responded.is_not_null())
        .then(pl.when(responded <= due).then(pl.lit("met")).otherwise(pl.lit("breached")))
        .when(due < now)
        .then(pl.lit("breached"))
        .otherwise(pl.lit("pending"))
    )
    appeal_groups = appeals.group_by("round", "status", "expedited", outcome.alias("outcome")).agg(n=pl.len())
    codes = pl.when(pl.col("decision") == "reject").then(pl.col("reason_codes")).otherwise(pl.lit(""))
    decisions = (
        reviews.filter(human)
        .group_by("reviewer", "decision", "agrees_with_machine", codes.alias("codes"))
        .agg(n=pl.len())
    )
    return {
        "freezes": _rows(per_day),
        "released": released,
        "appeals": _rows(appeal_groups),
        "reviews": _rows(decisions),
        "machine": reviews.filter(pl.col("kind") == "machine").height,
        "vip_accounts": appeals.filter(pl.col("expedited")).get_column("account_id").n_unique(),
    }


_stores: dict[str, ReportStore] = {}
_stores_lock = threading.Lock()


def store(runtime: Runtime) -> ReportStore:
    """The report store of ``runtime``'s database (one per database and data directory)."""
    settings = runtime.settings
    key = f"{settings.database_url}|{settings.data_dir}"
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = ReportStore(settings.data_dir / "reports")
        return found


def build_report(
    uow: UnitOfWork, period: Period, *, progress: Callable[[int, int], None] | None = None
) -> Report:
    """Compute the report for ``period``; ``progress(done, total)`` is called after each step."""
    now = uow.runtime.clock.now()
    frames = store(uow.runtime).frames(uow)
    if progress is not None:
        progress(1, 3)
    found = _figures(frames, period, now)
    # The expedite quota spent per year, over all accounts (quotas are per account and year).
    found["quota"] = list(
        uow.conn.execute(text("SELECT year, SUM(used) AS used FROM vip_expedite GROUP BY year"))
    )
    if progress is not None:
        progress(2, 3)
    report = _assemble(period, now, found, uow)
    if progress is not None:
        progress(3, 3)
    return report


def _assemble(period: Period, now: datetime, found: dict[str, Any], uow: UnitOfWork) -> Report:
    """Turn the grouped rows into the report."""
    per_day, frame, appeal_rows = found["freezes"], found["released"], found["appeals"]
    days: Counter[tuple[str, str, str]] = Counter()
    by_status: dict[str, Counter[str]] = defaultdict(Counter)
    per_rule: Counter[str] = Counter()
    on_appeal_cat: Counter[str] = Counter()
    on_appeal_rule: Counter[str] = Counter()
    for r in per_day:
        days[(str(r.day), r.category, r.rule)] += r.n
        by_status[r.category][r.status] += r.n
        per_rule[r.rule] += r.n
        on_appeal_cat[r.category] += r.n if r.on_appeal else 0
        on_appeal_rule[r.rule] += r.n if r.on_appeal else 0

    ttr = TimeToRelease(
        all=_release_times(frame),
        complete_materials=_release_times(frame.filter(~pl.col("incomplete"))),
        incomplete_materials=_release_times(frame.filter(pl.col("incomplete"))),
        by_category={
            c: _release_times(frame.filter(pl.col("category") == c))
            for c in sorted(set(frame.get_column("category").to_list()))
        },
    )

    appeal_status: Counter[str] = Counter()
    sla: Counter[tuple[str, bool]] = Counter()
    first = first_rejected = second = expedited = 0
    for r in appeal_rows:
        appeal_status[r.status] += r.n
        sla[(r.outcome, bool(r.expedited))] += r.n
        if r.round == 1:
            first += r.n
            first_rejected += r.n if r.status == "rejected" else 0
        else:
            second += r.n
        expedited += r.n if r.expedited else 0
    total_appeals = sum(appeal_status.values())
    reasons: Counter[str] = Counter()
    rejections = voucher_rejections = 0
    for r in found["reviews"]:
        if r.decision != Decision.REJECT.value:
            continue
        codes = str(r.codes).split()
        rejections += r.n
        voucher_rejections += r.n if any(c.startswith(VOUCHER_PREFIX) for c in codes) else 0
        for code in codes:
            reasons[code] += r.n

    met = sla[("met", False)] + sla[("met", True)]
    breached = sla[("breached", False)] + sla[("breached", True)]

    return Report(
        generated_at=now,
        period=period,
        freezes=sum(per_rule.values()),
        freezes_by_day=[
            DayCount(day=date.fromisoformat(d), category=c, rule=rule, freezes=n)
            for (d, c, rule), n in sorted(days.items())
        ],
        by_category=[
            CategoryCount(
                category=c,
                freezes=sum(s.values()),
                active=s["active"],
                released=s["released"],
                expired=s["expired"],
                released_on_appeal=on_appeal_cat[c],
            )
            for c, s in sorted(by_status.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        ],
        rules=[
            RuleQuality(
                rule=rule,
                freezes=n,
                released_on_appeal=on_appeal_rule[rule],
                wrongful_rate=_ratio(on_appeal_rule[rule], n),
            )
            for rule, n in sorted(per_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        time_to_release=ttr,
        appeals=Appeals(
            total=total_appeals,
            by_status=dict(sorted(appeal_status.items())),
            first_round=first,
            first_round_rejected=first_rejected,
            second_round=second,
            second_appeal_rate=_ratio(second, first_rejected),
            rejections=rejections,
            reject_reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            rejections_incomplete_vouchers=voucher_rejections,
            share_rejections_incomplete_vouchers=_ratio(voucher_rejections, rejections),
        ),
        sla=Sla(
            due_hours=uow.runtime.appeal_requirements.first_response.total_seconds() / 3600,
            met=met,
            breached=breached,
            pending=sla[("pending", False)] + sla[("pending", True)],
            compliance=_ratio(met, met + breached),
            expedited_met=sla[("met", True)],
            expedited_breached=sla[("breached", True)],
        ),
        vip=Vip(
            expedited_appeals=expedited,
            share_of_appeals=_ratio(expedited, total_appeals),
            accounts=int(found["vip_accounts"]),
            quota_used_by_year={str(r.year): int(r.used) for r in found["quota"]},
        ),
        reviews=_reviews(found["reviews"], int(found["machine"])),
        labels=LABELS,
    )


def _reviews(review_rows: list[Any], machine: int) -> Reviews:
    """Per-reviewer workload and agreement, busiest first."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in review_rows:
        c = per[r.reviewer]
        c["decisions"] += r.n
        c[r.decision] += r.n
        if r.agrees_with_machine is not None:
            c["agreed" if r.agrees_with_machine else "disagreed"] += r.n
    loads = [
        ReviewerLoad(
            reviewer=who,
            decisions=c["decisions"],
            approve=c[Decision.APPROVE.value],
            reject=c[Decision.REJECT.value],
            needs_more_info=c[Decision.NEEDS_MORE_INFO.value],
            agreed=c["agreed"],
            disagreed=c["disagreed"],
            agreement_rate=_ratio(c["agreed"], c["agreed"] + c["disagreed"]),
        )
        for who, c in sorted(per.items(), key=lambda kv: (-kv[1]["decisions"], kv[0]))
    ]
    agreed = sum(x.agreed for x in loads)
    disagreed = sum(x.disagreed for x in loads)
    return Reviews(
        human_decisions=sum(x.decisions for x in loads),
        machine_opinions=machine,
        agreed=agreed,
        disagreed=disagreed,
        agreement_rate=_ratio(agreed, agreed + disagreed),
        reviewers=loads,
    )
