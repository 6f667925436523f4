"""Backtests and what-ifs: replay events through two rulesets column-wise and compare the freezes.

A *freeze* here is what the rules ask for, before the engine's run-time guards: an account counts
as frozen by a ruleset when a non-shadow rule whose action is restrict or freeze fires on one of its
events in the period (per-account suppressions, circuit breakers and freezes already in place are
state of the live system, not of the rules, and are left out of a what-if). Known outcomes
(:class:`Outcomes`) say which accounts were rightly or wrongly frozen: the simulator's labels, or
appeal decisions from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from thawline.domain.features import IpRanges, Thresholds
from thawline.domain.rules import Action, Rule, Ruleset
from thawline.domain.vector_features import EXPANDED, FeatureFrame, prepare
from thawline.domain.vector_rules import condition, gate, reads, with_threshold

SIDES = ("live", "candidate")
SAMPLE = 50  # accounts listed per change; the counts are always complete


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Accounts whose freeze was wrongful (benign) or rightful (abusive); ``complete``: every
    abusive account is known (simulator labels), so recall can be computed."""

    wrongful: frozenset[str] = frozenset()
    rightful: frozenset[str] = frozenset()
    complete: bool = False
    source: str = "none"


@dataclass(frozen=True, slots=True)
class Sweep:
    """Sweep one numeric constant of one rule's condition over ``values``."""

    rule_id: str
    param: str
    values: tuple[float, ...]
    target_wrongful: float = 0.05


@dataclass(slots=True)
class Replay:
    """Per-event hits of both rulesets, and what is needed to compare them."""

    hits: pl.DataFrame  # _arrival, account_id, ts_us, _in, and one boolean column per "side|rule"
    rulesets: dict[str, Ruleset]
    frame: FeatureFrame
    sweep_sources: dict[float, str] = field(default_factory=dict)


def replay(
    events: pl.DataFrame,
    live: Ruleset,
    candidate: Ruleset,
    *,
    ip_ranges: IpRanges,
    thresholds: Thresholds | None = None,
    kyc: Mapping[str, str] | None = None,
    blacklisted: Collection[str] = (),
    sweep: Sweep | None = None,
    progress: Callable[[str], None] | None = None,
) -> Replay:
    """Compute the features both rulesets read and every rule's hit on every event.

    ``events`` may carry a boolean ``in_period`` column: rows outside it only warm the windows and
    baselines up; their hits are not counted.
    """
    step = progress or (lambda _s: None)
    sources = [r.when for rs in (live, candidate) for r in rs.rules]
    sweep_sources: dict[float, str] = {}
    if sweep is not None:
        rule = candidate.get(sweep.rule_id)
        sweep_sources = {v: with_threshold(rule.when, sweep.param, v) for v in sweep.values}
        sources += list(sweep_sources.values())
    needed = reads(sources) | {"event_type"}
    frame = prepare(
        events,
        needed,
        ip_ranges=ip_ranges,
        thresholds=thresholds,
        kyc=kyc,
        blacklisted=blacklisted,
        progress=step,
    )
    for name in sorted(EXPANDED & needed):
        step(name)
        gates = [g for s in sources if (g := gate(s, name)) is not None]
        mask = None
        if gates:
            combined = gates[0]
            for g in gates[1:]:
                combined = combined | g
            mask = frame.df.select(combined).to_series()
        frame.expand(name, mask)
    step("rules")
    columns = [
        condition(rule.when).alias(f"{side}|{rule.id}")
        for side, rs in (("live", live), ("candidate", candidate))
        for rule in rs.rules
    ]
    columns += [condition(text).alias(f"sweep|{v!r}") for v, text in sweep_sources.items()]
    period = pl.col("in_period") if "in_period" in frame.df.columns else pl.lit(True)
    hits = frame.df.select("_arrival", "account_id", "ts_us", period.alias("_in"), *columns)
    return Replay(hits, {"live": live, "candidate": candidate}, frame, sweep_sources)


def event_hits(result: Replay, ids: pl.Series, side: str) -> dict[str, frozenset[str]]:
    """Each event's id (``ids`` in the order the events were given) and the rules that fired on it."""
    columns = [c for c in result.hits.columns if c.startswith(side + "|")]
    out: dict[str, frozenset[str]] = {}
    names = [c.split("|", 1)[1] for c in columns]
    for arrival, *flags in result.hits.select("_arrival", *columns).iter_rows():
        out[ids[arrival]] = frozenset(n for n, f in zip(names, flags, strict=True) if f)
    return out


def _acting(rule: Rule) -> bool:
    return not rule.shadow and rule.action >= Action.RESTRICT


def outcome_column(rs: Ruleset, side: str) -> pl.Expr:
    """The strongest non-shadow action of each event (0 allow … 3 freeze)."""
    parts = [
        pl.when(pl.col(f"{side}|{r.id}")).then(int(r.action)).otherwise(0) for r in rs.rules if not r.shadow
    ]
    return pl.max_horizontal(*parts) if parts else pl.lit(0)


def _frozen(hits: pl.DataFrame, columns: Sequence[str]) -> set[str]:
    if not columns:
        return set()
    any_hit = pl.any_horizontal(*[pl.col(c) for c in columns])
    return set(hits.filter(any_hit)["account_id"].unique().cast(pl.String).to_list())


def _accuracy(frozen: set[str], outcomes: Outcomes) -> dict[str, Any]:
    right, wrong = frozen & outcomes.rightful, frozen & outcomes.wrongful
    known = len(right) + len(wrong)
    out: dict[str, Any] = {
        "frozen_with_known_outcome": known,
        "wrongful": len(wrong),
        "wrongful_freeze_rate": round(len(wrong) / known, 4) if known else None,
        "precision": round(len(right) / known, 4) if known else None,
    }
    if outcomes.complete:
        abusive = len(outcomes.rightful)
        out["recall"] = round(len(right) / abusive, 4) if abusive else None
    return out


def compare(result: Replay, outcomes: Outcomes, *, sample: int = SAMPLE) -> dict[str, Any]:
    """Freezes added and removed (which accounts), per rule, and accuracy against known outcomes."""
    hits = result.hits.filter(pl.col("_in"))
    summary: dict[str, Any] = {"events": hits.height, "accounts": hits["account_id"].n_unique()}
    frozen: dict[str, set[str]] = {}
    for side in SIDES:
        rs = result.rulesets[side]
        acting = [f"{side}|{r.id}" for r in rs.rules if _acting(r)]
        frozen[side] = _frozen(hits, acting)
        counts = hits.select(outcome_column(rs, side).alias("o"))["o"].value_counts()
        by_outcome = {Action(int(o)).name.lower(): int(n) for o, n in counts.iter_rows()}
        summary[side] = {
            "ruleset_sha256": rs.sha256,
            "events_by_outcome": dict(sorted(by_outcome.items())),
            "frozen_accounts": len(frozen[side]),
            **_accuracy(frozen[side], outcomes),
        }
    added = sorted(frozen["candidate"] - frozen["live"])
    removed = sorted(frozen["live"] - frozen["candidate"])
    summary["freezes_added"] = {"accounts": len(added), "sample": added[:sample]}
    summary["freezes_removed"] = {"accounts": len(removed), "sample": removed[:sample]}
    summary["added_wrongful"] = len(set(added) & outcomes.wrongful)
    summary["removed_wrongful"] = len(set(removed) & outcomes.wrongful)
    summary["rules"] = _per_rule(hits, result.rulesets, outcomes, sample)
    summary["outcomes"] = outcomes.source
    return summary


def _per_rule(
    hits: pl.DataFrame, rulesets: Mapping[str, Ruleset], outcomes: Outcomes, sample: int
) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys([r.id for s in SIDES for r in rulesets[s].rules]))
    counts = hits.select([pl.col(c).sum().alias(c) for c in hits.columns if "|" in c]).row(0, named=True)
    rows = []
    for rid in ids:
        entry: dict[str, Any] = {"rule": rid}
        accounts: dict[str, set[str]] = {}
        for side in SIDES:
            col = f"{side}|{rid}"
            if col not in hits.columns:
                entry[side] = None
                accounts[side] = set()
                continue
            rule = rulesets[side].get(rid)
            accounts[side] = _frozen(hits, [col])
            entry[side] = {
                "action": "shadow" if rule.shadow else rule.action.name.lower(),
                "events": int(counts[col]),
                "accounts": len(accounts[side]),
                "wrongful_rate": _accuracy(accounts[side], outcomes)["wrongful_freeze_rate"],
            }
        entry["accounts_added"] = sorted(accounts["candidate"] - accounts["live"])[:sample]
        entry["accounts_removed"] = sorted(accounts["live"] - accounts["candidate"])[:sample]
        entry["changed"] = accounts["candidate"] != accounts["live"] or (
            entry["live"] is not None
            and entry["candidate"] is not None
            and entry["live"]["action"] != entry["candidate"]["action"]
        )
        rows.append(entry)
    return rows


def sweep_table(result: Replay, sweep: Sweep, outcomes: Outcomes) -> dict[str, Any]:
    """For each value: the rule's accounts and wrongful rate, the ruleset's; and a recommendation.

    The recommended value is the one whose rule-level wrongful-freeze rate meets the target and that
    freezes the most rightly frozen accounts (ties: fewer wrongful, then the earlier value).
    """
    hits = result.hits.filter(pl.col("_in"))
    rs = result.rulesets["candidate"]
    rule = rs.get(sweep.rule_id)
    others = [f"candidate|{r.id}" for r in rs.rules if _acting(r) and r.id != rule.id]
    base = _frozen(hits, others)
    rows = []
    for value in sweep.values:
        mine = _frozen(hits, [f"sweep|{value!r}"])
        total = base | mine if _acting(rule) else base
        rule_acc = _accuracy(mine, outcomes)
        rows.append(
            {
                "value": value,
                "condition": result.sweep_sources[value],
                "accounts": len(mine),
                "rightful": len(mine & outcomes.rightful),
                "wrongful": len(mine & outcomes.wrongful),
                "wrongful_freeze_rate": rule_acc["wrongful_freeze_rate"],
                "ruleset_frozen_accounts": len(total),
                "ruleset_wrongful_freeze_rate": _accuracy(total, outcomes)["wrongful_freeze_rate"],
            }
        )
    meeting = [
        r
        for r in rows
        if r["wrongful_freeze_rate"] is not None and r["wrongful_freeze_rate"] <= sweep.target_wrongful
    ]
    best = max(meeting, key=lambda r: (r["rightful"], -r["wrongful"]), default=None) if meeting else None
    if best is not None:
        best = min(
            (r for r in meeting if (r["rightful"], r["wrongful"]) == (best["rightful"], best["wrongful"])),
            key=rows.index,
        )
    return {
        "rule": rule.id,
        "param": sweep.param,
        "target_wrongful": sweep.target_wrongful,
        "rows": rows,
        "recommended": None if best is None else best["value"],
        "recommended_condition": None if best is None else best["condition"],
    }
