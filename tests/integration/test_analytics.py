"""The report over real freezes, appeals, reviews and releases, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.lifecycle import (
    ALICE,
    BOB,
    CREATOR,
    HOLDER,
    claim,
    decide,
    last_code,
    pass_face,
    register,
    submit_appeal,
)
from thawline.domain.clock import FakeClock
from thawline.domain.errors import InvalidInputError
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.domain.review import Decision
from thawline.services import analytics, expedite, freezes, verification
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def rule_freeze(runtime: Runtime, account_id: str, rule: str, category: ReasonCategory) -> str:
    """A full freeze made by ``rule``."""
    with UnitOfWork(runtime) as uow:
        made, _ = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                account_id,
                Restriction(FreezeScope.FULL),
                category,
                ("CODE_1",),
                SourceKind.RULE,
                rule,
                "terms §4",
                "internal reason",
                "holder reason",
                rule_version=1,
            ),
            CREATOR,
        )
        uow.commit()
    return made.id


def release_on_appeal(runtime: Runtime, appeal_id: str, account_id: str) -> None:
    """The holder passes both second-verification steps: the freeze is released."""
    with UnitOfWork(runtime) as uow:
        verification.send_code(uow, appeal_id, HOLDER)
        uow.commit()
    with UnitOfWork(runtime) as uow:
        assert verification.check_code(uow, appeal_id, last_code(runtime, account_id), HOLDER).passed
        uow.commit()
    pass_face(runtime, appeal_id)


def build_world(runtime: Runtime, clock: FakeClock) -> dict[str, str]:
    """Four rule freezes at T0 and what followed each of them, at known times.

    - acc_1 (burst): appeal at +1 h, approved at +2 h, released at +10 h (9 h after submission).
    - acc_2 (burst): appeal at +1 h, first response at +50 h (SLA breached), rejected for its vouchers;
      second appeal at +60 h, approved and released at +100 h (99 h after the first submission).
    - acc_3 (burst): never appealed.
    - acc_4 (ip_hop): VIP, expedited appeal at +1 h, rejected at +3 h (risk confirmed).
    """
    for n in (1, 2, 3):
        register(runtime, f"acc_{n}")
    register(runtime, "acc_4", vip=1)
    ids = {f"f{n}": rule_freeze(runtime, f"acc_{n}", "burst", ReasonCategory.BEHAVIOR) for n in (1, 2, 3)}
    ids["f4"] = rule_freeze(runtime, "acc_4", "ip_hop", ReasonCategory.IP_DEVICE)
    clock.advance(HOUR)
    a1 = submit_appeal(runtime, ids["f1"])
    a2 = submit_appeal(runtime, ids["f2"])
    a4 = submit_appeal(runtime, ids["f4"])
    with UnitOfWork(runtime) as uow:
        expedite.expedite(uow, a4, HOLDER)
        uow.commit()
    clock.advance(HOUR)  # +2 h
    claim(runtime, a1, ALICE)
    decide(runtime, a1, ALICE, Decision.APPROVE, "false_positive")
    clock.advance(HOUR)  # +3 h
    claim(runtime, a4, BOB)
    decide(runtime, a4, BOB, Decision.REJECT, "risk_confirmed")
    clock.advance(7 * HOUR)  # +10 h
    release_on_appeal(runtime, a1, "acc_1")
    clock.advance(40 * HOUR)  # +50 h: the first response to a2 was due at +49 h
    claim(runtime, a2, ALICE)
    decide(runtime, a2, ALICE, Decision.REJECT, "voucher_mismatch")
    clock.advance(10 * HOUR)  # +60 h
    b2 = submit_appeal(runtime, ids["f2"])
    clock.advance(HOUR)
    claim(runtime, b2, BOB)
    decide(runtime, b2, BOB, Decision.APPROVE, "evidence_sufficient")
    clock.advance(39 * HOUR)  # +100 h
    release_on_appeal(runtime, b2, "acc_2")
    return ids


@pytest.fixture
def world(runtime: Runtime, clock: FakeClock) -> dict[str, str]:
    """The four cases above."""
    assert clock.now() == T0
    return build_world(runtime, clock)


def report(runtime: Runtime, category: str | None = None) -> analytics.Report:
    """The report over January 2026."""
    period = analytics.parse_period("2026-01-01", "2026-01-31", T0, category)
    with UnitOfWork(runtime, read_only=True) as uow:
        return analytics.build_report(uow, period)


def test_wrongful_freeze_rate_is_releases_on_appeal_over_the_rules_freezes(
    runtime: Runtime, world: dict[str, str]
) -> None:
    got = {r.rule: r for r in report(runtime).rules}
    assert (got["burst"].freezes, got["burst"].released_on_appeal) == (3, 2)
    assert got["burst"].wrongful_rate == pytest.approx(2 / 3, abs=1e-6)
    assert (got["ip_hop"].freezes, got["ip_hop"].released_on_appeal, got["ip_hop"].wrongful_rate) == (
        1,
        0,
        0.0,
    )


def test_freezes_are_counted_per_day_cause_and_rule_with_their_status(
    runtime: Runtime, world: dict[str, str]
) -> None:
    r = report(runtime)
    assert r.freezes == 4
    assert [(d.day.isoformat(), d.category, d.rule, d.freezes) for d in r.freezes_by_day] == [
        ("2026-01-01", "behavior", "burst", 3),
        ("2026-01-01", "ip_device", "ip_hop", 1),
    ]
    behavior = next(c for c in r.by_category if c.category == "behavior")
    assert (behavior.freezes, behavior.active, behavior.released, behavior.released_on_appeal) == (3, 1, 2, 2)


def test_time_to_release_runs_from_the_first_submission_and_splits_by_materials(
    runtime: Runtime, world: dict[str, str]
) -> None:
    ttr = report(runtime).time_to_release
    assert ttr.all.cases == 2
    assert ttr.all.median_hours == pytest.approx(54.0)  # 9 h and 99 h
    assert ttr.all.p90_hours == pytest.approx(9 + 0.9 * 90)
    assert (ttr.all.within_72h, ttr.all.share_within_72h) == (1, 0.5)
    assert (ttr.complete_materials.cases, ttr.complete_materials.median_hours) == (1, pytest.approx(9.0))
    assert (ttr.incomplete_materials.cases, ttr.incomplete_materials.median_hours) == (1, pytest.approx(99.0))
    assert ttr.incomplete_materials.share_within_72h == 0.0
    assert set(ttr.by_category) == {"behavior"}


def test_appeal_outcomes_rejection_reasons_and_second_appeals(
    runtime: Runtime, world: dict[str, str]
) -> None:
    a = report(runtime).appeals
    assert a.total == 4
    assert a.by_status == {"approved": 2, "rejected": 2}
    assert (a.first_round, a.first_round_rejected, a.second_round, a.second_appeal_rate) == (3, 2, 1, 0.5)
    assert a.reject_reasons == {"risk_confirmed": 1, "voucher_mismatch": 1}
    assert (a.rejections, a.rejections_incomplete_vouchers, a.share_rejections_incomplete_vouchers) == (
        2,
        1,
        0.5,
    )


def test_first_response_sla_vip_and_reviewer_agreement(runtime: Runtime, world: dict[str, str]) -> None:
    r = report(runtime)
    assert (r.sla.met, r.sla.breached, r.sla.pending, r.sla.compliance) == (3, 1, 0, 0.75)
    assert (r.sla.expedited_met, r.sla.expedited_breached, r.sla.due_hours) == (1, 0, 48.0)
    assert (r.vip.expedited_appeals, r.vip.share_of_appeals, r.vip.accounts) == (1, 0.25, 1)
    assert r.vip.quota_used_by_year == {"2026": 1}
    loads = {x.reviewer: x for x in r.reviews.reviewers}
    assert set(loads) == {ALICE.ref, BOB.ref}
    assert (loads[ALICE.ref].decisions, loads[ALICE.ref].approve, loads[ALICE.ref].reject) == (2, 1, 1)
    # The machine recommended approving every appeal (complete, contact verified, no vouchers to check):
    # the two approvals agree with it, the two rejections do not.
    assert (r.reviews.human_decisions, r.reviews.machine_opinions) == (4, 4)
    assert (r.reviews.agreed, r.reviews.disagreed, r.reviews.agreement_rate) == (2, 2, 0.5)


def test_a_cause_filter_and_a_period_narrow_the_cohort(runtime: Runtime, world: dict[str, str]) -> None:
    only = report(runtime, "ip_device")
    assert (only.freezes, [x.rule for x in only.rules], only.appeals.total) == (1, ["ip_hop"], 1)
    assert only.time_to_release.all.cases == 0
    assert only.time_to_release.all.median_hours is None
    later = analytics.parse_period("2026-01-02", "2026-01-31", T0)
    with UnitOfWork(runtime, read_only=True) as uow:
        empty = analytics.build_report(uow, later)
    assert (empty.freezes, empty.rules, empty.appeals.total, empty.sla.compliance) == (0, [], 0, None)


def test_the_report_is_json_with_bilingual_labels(runtime: Runtime, world: dict[str, str]) -> None:
    doc = report(runtime).model_dump(mode="json")
    assert doc["period"] == {
        "since": "2026-01-01T00:00:00Z",
        "until": "2026-02-01T00:00:00Z",
        "category": None,
    }
    assert doc["labels"]["behavior"]["zh-CN"] == "行为异常"
    assert doc["labels"]["voucher_mismatch"]["en"].startswith("the vouchers")
    assert analytics.label("share_within_72h", "zh-CN") == "72 小时内解封"


@pytest.mark.parametrize(
    ("since", "until", "category", "field"),
    [
        ("2026-13-01", None, None, "since"),
        (None, "2026-01-01T00:00:00", None, "until"),
        ("2026-02-01", "2026-01-01", None, "since"),
        (None, None, "weather", "category"),
    ],
)
def test_bad_periods_name_the_field(
    since: str | None, until: str | None, category: str | None, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        analytics.parse_period(since, until, T0, category)
    assert caught.value.field == field


def test_open_appeals_count_as_pending_until_their_deadline(runtime: Runtime, clock: FakeClock) -> None:
    register(runtime, "acc_9")
    frozen = rule_freeze(runtime, "acc_9", "burst", ReasonCategory.BEHAVIOR)
    submit_appeal(runtime, frozen)
    assert (report(runtime).sla.pending, report(runtime).sla.breached) == (1, 0)
    clock.advance(49 * HOUR)
    assert (report(runtime).sla.pending, report(runtime).sla.breached) == (0, 1)


def test_the_report_follows_cases_that_change_after_it_was_built(
    runtime: Runtime, clock: FakeClock, world: dict[str, str]
) -> None:
    before = {r.rule: r for r in report(runtime).rules}
    assert before["burst"].released_on_appeal == 2
    appeal = submit_appeal(runtime, world["f3"])  # acc_3 appeals now, and is released
    claim(runtime, appeal, ALICE)
    decide(runtime, appeal, ALICE, Decision.APPROVE, "false_positive")
    clock.advance(HOUR)
    release_on_appeal(runtime, appeal, "acc_3")
    after = report(runtime)
    burst = next(r for r in after.rules if r.rule == "burst")
    assert (burst.released_on_appeal, burst.wrongful_rate) == (3, 1.0)
    assert after.time_to_release.all.cases == 3
    # Another process starts from the frames on disk and catches up from the log the same way.
    analytics._stores.clear()
    assert report(runtime).model_dump(exclude={"generated_at"}) == after.model_dump(exclude={"generated_at"})


def test_frames_of_another_database_in_the_same_data_directory_are_not_used(
    runtime: Runtime, world: dict[str, str], tmp_path: Path
) -> None:
    assert report(runtime).freezes == 4
    other = build_runtime(make_settings(f"sqlite:///{tmp_path / 'other.db'}", tmp_path), clock=FakeClock(T0))
    try:
        register(other, "acc_x")
        rule_freeze(other, "acc_x", "solo", ReasonCategory.AML)
        assert [r.rule for r in report(other).rules] == ["solo"]
    finally:
        other.close()
