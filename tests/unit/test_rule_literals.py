"""The constants ``true`` and ``false`` in rule conditions are constants, not features: a rule using
them compiles, fires through the fast path and through the one-by-one path, and its hit lists only the
features it really read."""

from __future__ import annotations

from thawline.domain.expr import names
from thawline.domain.rules import Ruleset

RULES = """
rules:
  - id: every_login
    category: abnormal_login
    name: {en: "Every login", zh-CN: "每次登录"}
    explanation: {en: "x", zh-CN: "x"}
    when: event_type == "login" and true and not false and success
    action: review
    severity: low
    materials: []
"""


def test_true_and_false_are_not_features() -> None:
    assert names('event_type == "login" and true and not false and success') == {"event_type", "success"}


def test_a_rule_with_true_and_false_fires_on_both_paths() -> None:
    rules = Ruleset.from_yaml(RULES)
    assert rules.rules[0].reads == ("event_type", "success")
    features = {"event_type": "login", "success": True}
    for static in (False, True):
        (hit,) = rules.evaluate(features, static=static)
        assert hit.rule.id == "every_login"
        assert hit.values == {"event_type": "login", "success": True}
    assert rules.evaluate({"event_type": "login", "success": False}) == []
