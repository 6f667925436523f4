"""Declarative rules (YAML): conditions over features, actions, explanations, and the diagnosis.

A ruleset is a YAML document with a ``rules`` list. Each rule has an ``id``, a reason ``category``
(the freeze categories), ``name`` and holder-facing ``explanation`` in en and zh-CN, a condition
``when`` in the expression language of :mod:`thawline.domain.expr` (dynamic thresholds over the
account's baselines), an optional ``static`` condition (the same rule on fixed thresholds, used to
measure what dynamic thresholds buy), an ``action`` (allow, review, restrict:<scope>, freeze), a
``severity``, the ``materials`` an appeal will need, ``shadow`` (evaluate and record, never act) and
a circuit ``breaker`` (at most ``max`` automated freezes per ``per_minutes``; beyond it, hits go to
review and an alert is raised).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import yaml

from thawline.domain.expr import (
    Compiled,
    ExpressionError,
    compile_all,
    compile_expression,
    names,
    required_value,
)
from thawline.domain.features import FEATURES
from thawline.domain.freezes import FreezeScope, ReasonCategory


class Action(IntEnum):
    """What a rule asks for, weakest first (an event's outcome is its strongest hit)."""

    ALLOW = 0
    REVIEW = 1
    RESTRICT = 2
    FREEZE = 3


DIAGNOSIS = {
    ReasonCategory.ABNORMAL_LOGIN: ("abnormal login", "异常登录"),
    ReasonCategory.HIGH_FREQUENCY: ("high-frequency transactions", "高频交易"),
    ReasonCategory.AMOUNT_ANOMALY: ("amount anomaly", "金额异常"),
    ReasonCategory.IP_DEVICE: ("IP or device anomaly", "IP/设备异常"),
    ReasonCategory.BLACKLIST: ("blacklisted identity", "命中黑名单"),
    ReasonCategory.BEHAVIOR: ("unusual behaviour", "行为异常"),
    ReasonCategory.LINKED_RISK: ("linked risk account", "关联风险账户"),
    ReasonCategory.KYC_INCOMPLETE: ("incomplete identity verification", "实名信息不完整"),
    ReasonCategory.AML: ("anti-money-laundering", "反洗钱"),
    ReasonCategory.REGULATOR: ("regulator order", "监管要求"),
    ReasonCategory.MANUAL: ("manual", "人工"),
}


class RulesetError(ValueError):
    """A ruleset that cannot be loaded; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class Breaker:
    """At most ``max`` automated freezes per ``per_minutes`` minutes for one rule."""

    max: int
    per_minutes: int


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule."""

    id: str
    category: ReasonCategory
    name: Mapping[str, str]
    explanation: Mapping[str, str]
    when: str
    static_when: str | None
    action: Action
    scope: FreezeScope
    severity: str
    materials: tuple[str, ...]
    shadow: bool
    breaker: Breaker | None
    reads: tuple[str, ...]
    condition: Compiled = field(repr=False, compare=False)
    static_condition: Compiled | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, and the feature values it read."""

    rule: Rule
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A loaded, compiled ruleset.

    Rules whose condition starts with ``event_type == "<type>" and`` are only tried on events of that
    type (``by_type``); the rest on every event. The result and its order are those of trying all.
    """

    rules: tuple[Rule, ...]
    sha256: str
    source: str
    by_type: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)
    static_by_type: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)
    fast: dict[str, Callable[[Mapping[str, Any]], list[int]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    dispatch: dict[str, tuple[tuple[Rule, ...], Callable[[Mapping[str, Any]], list[int]]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_yaml(cls, text: str) -> Ruleset:
        """Parse, check and compile; every problem names the rule and field."""
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesetError(f"not valid YAML: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list) or not doc["rules"]:
            raise RulesetError("a ruleset needs a non-empty 'rules' list")
        rules, seen = [], set()
        for i, raw in enumerate(doc["rules"]):
            rule = _rule(raw, i)
            if rule.id in seen:
                raise RulesetError(f"rule '{rule.id}' is defined twice")
            seen.add(rule.id)
            rules.append(rule)
        by_type = _by_type(rules, static=False)
        try:
            # Per event type, with the event type's own tests decided once, at load.
            fast = {
                t: compile_all([r.when for r in group], FEATURES, constants={"event_type": t} if t else None)
                for t, group in by_type.items()
            }
        except ExpressionError as exc:
            raise RulesetError(str(exc)) from None
        return cls(
            tuple(rules),
            hashlib.sha256(text.encode()).hexdigest(),
            text,
            by_type,
            _by_type(rules, static=True),
            fast,
            {t: (group, fast[t]) for t, group in by_type.items()},
        )

    def evaluate(self, features: Mapping[str, Any], *, static: bool = False) -> list[Hit]:
        """Every rule that fires on ``features`` (``static``: use the fixed-threshold conditions)."""
        if not static and self.dispatch:
            group, fast = self.dispatch.get(features["event_type"]) or self.dispatch[""]
            try:
                fired = fast(features)
            except Exception:
                return self._one_by_one(features, static=False)
            if not fired:
                return []
            return [Hit(rule, {n: features[n] for n in rule.reads}) for rule in map(group.__getitem__, fired)]
        return self._one_by_one(features, static=static)

    def _one_by_one(self, features: Mapping[str, Any], *, static: bool) -> list[Hit]:
        """Each rule on its own; a rule whose condition raises (e.g. ``x % 0``) does not fire."""
        table = self.static_by_type if static else self.by_type
        candidates = table.get(features["event_type"], table.get("", self.rules))
        hits = []
        for rule in candidates:
            cond = rule.static_condition if static and rule.static_condition is not None else rule.condition
            try:
                fired = cond(features)
            except Exception:  # noqa: S112 — a condition that cannot be evaluated does not fire
                continue
            if fired:
                hits.append(Hit(rule, {n: features[n] for n in rule.reads}))
        return hits

    def get(self, rule_id: str) -> Rule:
        """One rule by id (KeyError if absent)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


EVENT_TYPES = ("login", "transaction", "profile_change", "kyc_update", "device_binding")


def _by_type(rules: list[Rule], *, static: bool) -> dict[str, tuple[Rule, ...]]:
    """For each event type, the rules that can fire on it, in ruleset order ("" = unknown type)."""
    needs = {}
    for rule in rules:
        source = rule.static_when if static and rule.static_when else rule.when
        needs[rule.id] = required_value(source, "event_type")
    table = {t: tuple(r for r in rules if needs[r.id] in (None, t)) for t in EVENT_TYPES}
    table[""] = tuple(rules)
    return table


_KEYS = {
    "id",
    "category",
    "name",
    "explanation",
    "when",
    "static",
    "action",
    "severity",
    "materials",
    "shadow",
    "breaker",
}


def _rule(raw: Any, index: int) -> Rule:  # noqa: PLR0912 — field-by-field checks, precise messages
    if not isinstance(raw, dict):
        raise RulesetError(f"rules[{index}] must be a mapping")
    rid = str(raw.get("id", f"rules[{index}]"))
    where = f"rule '{rid}'"
    extra = set(raw) - _KEYS
    if extra:
        raise RulesetError(f"{where}: unknown keys {sorted(extra)}")
    for key in ("id", "category", "name", "explanation", "when", "action"):
        if key not in raw:
            raise RulesetError(f"{where}: '{key}' is required")
    try:
        category = ReasonCategory(raw["category"])
    except ValueError:
        raise RulesetError(f"{where}: unknown category '{raw['category']}'") from None
    for key in ("name", "explanation"):
        if not isinstance(raw[key], dict) or not {"en", "zh-CN"} <= set(raw[key]):
            raise RulesetError(f"{where}: '{key}' needs 'en' and 'zh-CN' texts")
    action_text = str(raw["action"])
    kind, _, scope_text = action_text.partition(":")
    try:
        action = Action[kind.upper()]
        scope = FreezeScope(scope_text) if scope_text else FreezeScope.FULL
    except (KeyError, ValueError):
        raise RulesetError(f"{where}: action must be allow, review, restrict:<scope> or freeze") from None
    if action is Action.RESTRICT and not scope_text:
        raise RulesetError(f"{where}: restrict needs a scope, e.g. restrict:debit")
    if scope not in (FreezeScope.FULL, FreezeScope.DEBIT, FreezeScope.CREDIT):
        raise RulesetError(f"{where}: a rule can restrict full, debit or credit")
    try:
        condition = compile_expression(str(raw["when"]), FEATURES)
        static = compile_expression(str(raw["static"]), FEATURES) if "static" in raw else None
    except ExpressionError as exc:
        raise RulesetError(f"{where}: {exc}") from None
    breaker = raw.get("breaker")
    if breaker is not None:
        if not isinstance(breaker, dict) or set(breaker) != {"max", "per_minutes"}:
            raise RulesetError(f"{where}: breaker needs 'max' and 'per_minutes'")
        try:
            breaker = Breaker(int(breaker["max"]), int(breaker["per_minutes"]))
        except (TypeError, ValueError):
            raise RulesetError(f"{where}: breaker 'max' and 'per_minutes' must be whole numbers") from None
    severity = str(raw.get("severity", "medium"))
    if severity not in ("low", "medium", "high"):
        raise RulesetError(f"{where}: severity must be low, medium or high")
    return Rule(
        id=rid,
        category=category,
        name=dict(raw["name"]),
        explanation=dict(raw["explanation"]),
        when=str(raw["when"]),
        static_when=str(raw["static"]) if "static" in raw else None,
        action=action,
        scope=scope,
        severity=severity,
        materials=_materials(raw.get("materials", []), where),
        shadow=bool(raw.get("shadow", False)),
        breaker=breaker,
        reads=tuple(sorted(names(str(raw["when"])))),
        condition=condition,
        static_condition=static,
    )


def _materials(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise RulesetError(f"{where}: materials must be a list of material kinds")
    return tuple(value)
