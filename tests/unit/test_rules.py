"""The rule language is safe and exact; features follow the events; rulesets refuse what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thawline.domain.events import Login, ProfileChange, Transaction
from thawline.domain.expr import ExpressionError, compile_all, compile_expression
from thawline.domain.features import FEATURES, AccountState, IpRanges, Thresholds
from thawline.domain.rules import Action, Ruleset, RulesetError
from thawline.services.engine import default_ip_ranges, default_ruleset_text

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def test_conditions_compute_with_dynamic_thresholds() -> None:
    cond = compile_expression(
        "amount > max(5000, amount_median + 6 * amount_mad)", {"amount", "amount_median", "amount_mad"}
    )
    assert cond({"amount": 5001, "amount_median": 100, "amount_mad": 10}) is True
    assert cond({"amount": 7000, "amount_median": 1000, "amount_mad": 1000}) is False
    chained = compile_expression(
        "1 <= hour < 6 and event_type in ['login', 'transaction']", {"hour", "event_type"}
    )
    assert chained({"hour": 3, "event_type": "login"}) is True
    assert chained({"hour": 6, "event_type": "login"}) is False


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "amount.__class__",
        "open('x')",
        "[a for a in amount]",
        "lambda: 1",
        "amount[0]",
        "amount if amount else 0",
        "amount ** 1000000",
    ],
)
def test_anything_outside_the_language_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source, {"amount"})


def test_unknown_features_are_refused_when_loading_not_when_an_event_arrives() -> None:
    with pytest.raises(ExpressionError, match=r"unknown feature.*amout"):
        compile_expression("amout > 5", FEATURES)


@given(a=st.integers(-1000, 1000), b=st.integers(-1000, 1000), c=st.integers(1, 1000))
def test_arithmetic_matches_python(a: int, b: int, c: int) -> None:
    cond = compile_expression("a + b * c - (a % c) / c > min(a, b)", {"a", "b", "c"})
    assert cond({"a": a, "b": b, "c": c}) == (a + b * c - (a % c) / c > min(a, b))


def test_the_default_ruleset_loads_and_covers_every_trigger_of_the_source_document() -> None:
    rs = Ruleset.from_yaml(default_ruleset_text())
    categories = {r.category.value for r in rs.rules}
    assert {
        "abnormal_login",
        "high_frequency",
        "amount_anomaly",
        "ip_device",
        "blacklist",
        "behavior",
        "linked_risk",
        "kyc_incomplete",
        "aml",
    } <= categories
    assert all(r.explanation["zh-CN"] and r.explanation["en"] for r in rs.rules)


TEXTS = "name: {en: a, zh-CN: b}, explanation: {en: a, zh-CN: b}"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("rules: []", "non-empty"),
        ("rules: [{id: x}]", "'category' is required"),
        (
            f"rules: [{{id: x, category: nope, {TEXTS}, when: 'true', action: freeze}}]",
            "unknown category 'nope'",
        ),
        (
            "rules: [{id: x, category: manual, name: {en: a}, explanation: {en: a, zh-CN: b}, when: 'true', "
            "action: freeze}]",
            "'name' needs 'en' and 'zh-CN'",
        ),
        (
            f"rules: [{{id: x, category: manual, {TEXTS}, when: 'amount >', action: freeze}}]",
            "rule 'x': syntax error",
        ),
        (
            f"rules: [{{id: x, category: manual, {TEXTS}, when: 'true', action: restrict}}]",
            "restrict needs a scope",
        ),
    ],
)
def test_a_bad_ruleset_names_the_rule_and_the_field(yaml_text: str, message: str) -> None:
    with pytest.raises(RulesetError, match=message):
        Ruleset.from_yaml(yaml_text)


def _txn(i: int, at: datetime, amount: str, **extra: Any) -> Transaction:
    return Transaction(
        id=f"e{i}", account_id="a", occurred_at=at, transaction_id=f"t{i}", amount=Decimal(amount),
        currency="CNY", direction="debit", **extra,
    )  # fmt: skip


def test_windows_slide_and_baselines_adapt() -> None:
    st_ = AccountState("a")
    ranges, th = IpRanges(), Thresholds()
    f: dict[str, Any] = {}
    for i in range(20):
        f = st_.observe(_txn(i, T0 + timedelta(minutes=i), "100"), ranges, th)
    assert (f["txn_count_1m"], f["txn_count_10m"], f["txn_count_1h"]) == (1, 10, 20)
    assert f["txn_sum_1h"] == 2000.0
    assert (f["amount_median"], f["amount_mad"]) == (100.0, 0.0)
    later = st_.observe(_txn(99, T0 + timedelta(days=2), "100"), ranges, th)
    assert (later["txn_count_24h"], later["txn_count_7d"]) == (1, 21)


def test_new_devices_ips_and_sensitive_changes_are_seen() -> None:
    st_ = AccountState("a")
    ranges = default_ip_ranges()
    th = Thresholds()
    login = Login(id="l1", account_id="a", occurred_at=T0, ip="10.0.0.1", device_id="d1")
    assert st_.observe(login, ranges, th)["new_device"] is False  # the first device is not "new"
    odd = Login(
        id="l2", account_id="a", occurred_at=T0 + timedelta(minutes=30), ip="198.51.100.7", device_id="d2"
    )
    f = st_.observe(odd, ranges, th)
    assert (f["new_device"], f["new_ip"], f["ip_is_proxy"], f["ip_changes_1h"]) == (True, True, True, 1)
    change = ProfileChange(id="p1", account_id="a", occurred_at=T0 + timedelta(hours=2), field="phone")
    assert st_.observe(change, ranges, th)["sensitive_changes_24h"] == 1


def test_rules_fire_on_their_features() -> None:
    rs = Ruleset.from_yaml(default_ruleset_text())
    st_ = AccountState("a", kyc_level="full")
    hits = []
    for i in range(9):
        f = st_.observe(_txn(i, T0 + timedelta(seconds=30 * i), "1.00"), IpRanges(), Thresholds())
        hits = rs.evaluate(f)
    assert [h.rule.id for h in hits] == ["card_testing"]
    assert hits[0].rule.action is Action.FREEZE
    assert hits[0].values == {"event_type": "transaction", "small_txn_count_10m": 9}


@given(
    amount=st.floats(0, 100_000, allow_nan=False),
    median_=st.floats(0, 5000, allow_nan=False),
    mad=st.floats(0, 1000, allow_nan=False),
    count=st.integers(0, 50),
    kind=st.sampled_from(["transaction", "login", "profile_change"]),
    direction=st.sampled_from(["debit", "credit"]),
)
def test_the_compiled_ruleset_fires_exactly_the_rules_the_closures_fire(
    amount: float, median_: float, mad: float, count: int, kind: str, direction: str
) -> None:
    rs = Ruleset.from_yaml(default_ruleset_text())
    features: dict[str, Any] = dict.fromkeys(FEATURES, 0)
    features.update(
        event_type=kind, direction=direction, amount=amount, amount_median=median_, amount_mad=mad,
        amount_max=median_ * 2, txn_count_10m=count, small_txn_count_10m=count, history_txns=count,
        near_threshold_7d=count % 5, credit_sum_1h=amount * 1.1, new_counterparty=count % 2 == 0,
        sensitive_changes_24h=count % 3, success=True, blacklisted=count == 7,
    )  # fmt: skip
    fast = [h.rule.id for h in rs.evaluate(features)]
    slow = [r.id for r in rs.rules if r.condition(features)]
    assert fast == slow


def test_text_outside_the_language_never_reaches_the_generated_function() -> None:
    with pytest.raises(ExpressionError):
        compile_all(["amount > 1", "__import__('os').system('id')"], {"amount"})
    with pytest.raises(ExpressionError):
        compile_all(["amount > 1) or (1"], {"amount"})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("amount > 1e999", "too large"),
        ("-" * 300 + "amount > 1", "nests deeper"),
        ("'x' * 4000000000 == amount", "text cannot be used in arithmetic"),
    ],
)
def test_conditions_that_would_break_evaluation_are_refused_at_load(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        compile_expression(source, {"amount"})
    with pytest.raises(RulesetError):
        Ruleset.from_yaml(f"rules: [{{id: x, category: manual, {TEXTS}, when: {source!r}, action: review}}]")


def test_a_condition_that_fails_at_runtime_does_not_stop_the_other_rules() -> None:
    text = (
        f"rules: [{{id: bad, category: manual, {TEXTS}, when: 'amount % amount_mad > 1', action: review}},"
        f" {{id: good, category: manual, {TEXTS}, when: 'amount > 1', action: review}}]"
    )
    rs = Ruleset.from_yaml(text)
    features = dict.fromkeys(FEATURES, 0) | {"event_type": "transaction", "amount": 5, "amount_mad": 0}
    assert [h.rule.id for h in rs.evaluate(features)] == ["good"]


def test_a_late_event_lands_in_the_windows_by_its_time_and_does_not_start_a_day() -> None:
    st_ = AccountState("a")
    ranges, th = IpRanges(), Thresholds()
    for i in range(10):
        st_.observe(_txn(i, T0 + timedelta(days=1, minutes=i), "100"), ranges, th)
    late = st_.observe(_txn(99, T0, "100"), ranges, th)  # a day late
    assert (late["txn_count_1m"], late["txn_count_10m"], late["txn_count_7d"]) == (1, 10, 11)
    assert late["today_txn_count"] == 10
    after = st_.observe(_txn(100, T0 + timedelta(days=1, minutes=10), "100"), ranges, th)
    assert (after["txn_count_10m"], after["today_txn_count"]) == (10, 11)
