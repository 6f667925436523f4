"""Ruleset versions as analysts manage them: the history, a diff between versions, restoring an
earlier version, what each rule did lately (shadow-mode statistics), and per-account suppressions.

Loading a version is :func:`thawline.services.engine.load_ruleset` (every version is kept; restoring
an old one loads its text again as a new version, so the history only grows). Suppressions stop one
rule acting on one account until a time; setting and lifting one are logged with the reason's
SHA-256 only (a reason may quote the holder).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import func, select

from thawline.adapters.db.schema import account, risk_decision, rule_suppression, ruleset
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.domain.rules import Action, Ruleset
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services.engine import load_ruleset
from thawline.services.unit_of_work import UnitOfWork

MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class RulesetVersion:
    """One stored version of the ruleset (its text is read with :func:`source`)."""

    version: int
    sha256: str
    active: bool
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RuleChange:
    """How one rule differs between two versions: ``added``, ``removed`` or ``changed`` (with fields)."""

    rule_id: str
    change: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """A version against the one before it: rule-level changes and the unified text diff."""

    version: int
    previous: int | None
    rules: tuple[RuleChange, ...]
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleStats:
    """What one rule did in a period: hits by what was applied, and the distinct accounts it hit."""

    rule_id: str
    hits: int
    accounts: int
    applied: dict[str, int]

    @property
    def shadow(self) -> int:
        """Hits recorded in shadow mode (evaluated, never acted on)."""
        return self.applied.get("shadow", 0)


@dataclass(frozen=True, slots=True)
class Suppression:
    """One rule not acting on one account until ``until``."""

    account_id: str
    rule_id: str
    until: datetime
    reason: str
    created_by: str
    created_at: datetime


def versions(uow: UnitOfWork) -> list[RulesetVersion]:
    """Every stored version, newest first."""
    rows = uow.conn.execute(
        select(
            ruleset.c.version, ruleset.c.sha256, ruleset.c.active, ruleset.c.created_by, ruleset.c.created_at
        ).order_by(ruleset.c.version.desc())
    )
    return [RulesetVersion(r.version, r.sha256, bool(r.active), r.created_by, r.created_at) for r in rows]


def source(uow: UnitOfWork, version: int) -> str:
    """The YAML text of one version (NotFoundError if there is none)."""
    text = uow.conn.execute(select(ruleset.c.source).where(ruleset.c.version == version)).scalar()
    if text is None:
        raise NotFoundError(f"ruleset version {version} does not exist")
    return str(text)


def _rules_by_id(text: str) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(text) or {}
    rules = doc.get("rules", []) if isinstance(doc, dict) else []
    return {str(r["id"]): r for r in rules if isinstance(r, dict) and "id" in r}


def rule_rows(text: str) -> list[dict[str, Any]]:
    """The rules of a ruleset text as plain values (id, category, names, condition, action, …)."""
    return [
        {
            "id": r.id,
            "category": r.category.value,
            "name": dict(r.name),
            "when": r.when,
            "action": r.action.name.lower() + (f":{r.scope.value}" if r.action is Action.RESTRICT else ""),
            "severity": r.severity,
            "shadow": r.shadow,
            "materials": list(r.materials),
        }
        for r in Ruleset.from_yaml(text).rules
    ]


def compare(old_text: str | None, new_text: str) -> tuple[tuple[RuleChange, ...], tuple[str, ...]]:
    """Rule-level changes from ``old_text`` to ``new_text`` and their unified line diff."""
    old = _rules_by_id(old_text) if old_text else {}
    new = _rules_by_id(new_text)
    changes = [RuleChange(i, "added") for i in new if i not in old]
    changes += [RuleChange(i, "removed") for i in old if i not in new]
    for rule_id in new.keys() & old.keys():
        fields = sorted(
            k for k in new[rule_id].keys() | old[rule_id].keys() if new[rule_id].get(k) != old[rule_id].get(k)
        )
        if fields:
            changes.append(RuleChange(rule_id, "changed", tuple(fields)))
    lines = difflib.unified_diff(
        (old_text or "").splitlines(), new_text.splitlines(), "before", "after", lineterm="", n=2
    )
    return tuple(sorted(changes, key=lambda c: (c.change, c.rule_id))), tuple(lines)


def diff(uow: UnitOfWork, version: int) -> VersionDiff:
    """``version`` against the version before it (everything is "added" for the first)."""
    text = source(uow, version)
    previous = uow.conn.execute(
        select(func.max(ruleset.c.version)).where(ruleset.c.version < version)
    ).scalar()
    before = source(uow, int(previous)) if previous is not None else None
    rules, lines = compare(before, text)
    return VersionDiff(version, int(previous) if previous is not None else None, rules, lines)


def restore(uow: UnitOfWork, version: int, actor: Actor) -> int:
    """Make an earlier version's text active again, as a new version (the history only grows)."""
    text = source(uow, version)
    active = uow.conn.execute(select(ruleset.c.version).where(ruleset.c.active.is_(True))).scalar()
    if active == version:
        raise ConflictError(f"ruleset version {version} is already the active one")
    return load_ruleset(uow, text, actor, note=f"restored from version {version}")


def rule_stats(uow: UnitOfWork, since: datetime) -> dict[str, RuleStats]:
    """Per rule since ``since``: hits by what was applied (shadow, freeze, restrict, suppressed, …)."""
    d = risk_decision
    rows = uow.conn.execute(
        select(d.c.rule_id, d.c.applied, func.count())
        .where(d.c.created_at >= since)
        .group_by(d.c.rule_id, d.c.applied)
    ).all()
    accounts: dict[str, int] = {
        rule_id: int(n)
        for rule_id, n in uow.conn.execute(  # distinct accounts per rule over every kind of hit
            select(d.c.rule_id, func.count(d.c.account_id.distinct()))
            .where(d.c.created_at >= since)
            .group_by(d.c.rule_id)
        )
    }
    stats: dict[str, RuleStats] = {}
    for rule_id, applied, hits in rows:
        s = stats.get(rule_id) or RuleStats(rule_id, 0, int(accounts.get(rule_id, 0)), {})
        s.applied[applied] = int(hits)
        stats[rule_id] = replace(s, hits=s.hits + int(hits))
    return stats


def _active_rule_ids(uow: UnitOfWork) -> set[str]:
    text = uow.conn.execute(select(ruleset.c.source).where(ruleset.c.active.is_(True))).scalar()
    if text is None:
        from thawline.services.engine import default_ruleset_text  # noqa: PLC0415 — only before first use

        text = default_ruleset_text()
    return set(_rules_by_id(str(text)))


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text or len(text) > MAX_REASON:
        raise InvalidInputError(f"give a reason of 1 to {MAX_REASON} characters", field="reason")
    return text


def suppress(
    uow: UnitOfWork, account_id: str, rule_id: str, *, until: datetime, reason: str, actor: Actor
) -> Suppression:
    """Stop ``rule_id`` acting on ``account_id`` until ``until`` (replaces an earlier suppression)."""
    why = _reason(reason)
    if until.tzinfo is None:
        raise InvalidInputError("until needs a time zone", field="until")
    now = uow.runtime.clock.now()
    if until <= now:
        raise InvalidInputError("until must be in the future", field="until")
    if uow.conn.execute(select(account.c.id).where(account.c.id == account_id)).first() is None:
        raise NotFoundError(f"account {account_id} does not exist")
    if rule_id not in _active_rule_ids(uow):
        raise InvalidInputError(f"no rule '{rule_id}' in the active ruleset", field="rule_id")
    table = rule_suppression
    where = (table.c.account_id == account_id, table.c.rule_id == rule_id)
    before = uow.conn.execute(select(table.c.until).where(*where)).scalar()
    uow.conn.execute(table.delete().where(*where))
    uow.conn.execute(
        table.insert().values(
            account_id=account_id,
            rule_id=rule_id,
            until=until,
            reason=why,
            created_by=actor.ref,
            created_at=now,
        )
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="rule.suppressed",
            actor=actor,
            subject=Subject(account_id=account_id, ref=f"rule:{rule_id}"),
            state_before={"until": before.isoformat() if before else None},
            state_after={"until": until.isoformat()},
            details={"reason_sha256": hashlib.sha256(why.encode()).hexdigest()},
        )
    )
    return Suppression(account_id, rule_id, until, why, actor.ref, now)


def lift(uow: UnitOfWork, account_id: str, rule_id: str, reason: str, actor: Actor) -> None:
    """End a suppression now: the rule acts on the account again."""
    why = _reason(reason)
    table = rule_suppression
    where = (table.c.account_id == account_id, table.c.rule_id == rule_id)
    before = uow.conn.execute(select(table.c.until).where(*where)).scalar()
    if before is None:
        raise NotFoundError(f"rule {rule_id} is not suppressed for account {account_id}")
    uow.conn.execute(table.delete().where(*where))
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="rule.suppression_lifted",
            actor=actor,
            subject=Subject(account_id=account_id, ref=f"rule:{rule_id}"),
            state_before={"until": before.isoformat()},
            state_after={"until": None},
            details={"reason_sha256": hashlib.sha256(why.encode()).hexdigest()},
        )
    )


def suppressions(uow: UnitOfWork, *, include_expired: bool = False, limit: int = 200) -> list[Suppression]:
    """Suppressions, the ones ending soonest first (only those still in force unless told)."""
    table = rule_suppression
    query = select(table).order_by(table.c.until, table.c.account_id).limit(limit)
    if not include_expired:
        query = query.where(table.c.until > uow.runtime.clock.now())
    return [
        Suppression(r.account_id, r.rule_id, r.until, r.reason, r.created_by, r.created_at)
        for r in uow.conn.execute(query)
    ]


def default_since(now: datetime) -> datetime:
    """The period the rules page shows by default: the last seven days."""
    return now - timedelta(days=7)
