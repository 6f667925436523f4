"""Backtests and what-ifs: replay events through two rulesets column-wise and compare the freezes.

A *freeze* here is what the rules ask for, before the engine's run-time guards: an account counts
as frozen by a ruleset when a non-shadow rule whose action is restrict or freeze fires on one of its
events in the period (per-account suppressions, circuit breakers and freezes already in place are
state of the live system, not of the rules, and are left out of a what-if). Known outcomes
(:class:`Outcomes`) say which accounts were rightly or wrongly frozen: the simulator's labels, or
appeal decisions from the database.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from thawline.domain.features import IpRanges, Thresholds
from thawline.domain.rules import Action, Rule, Ruleset
from thawline.domain.vector_features import BOUNDED, COUNTS, TYPES, FeatureFrame, prepare
from thawline.domain.vector_rules import (
    cost,
    count_test,
    read_by,
    reads,
    tree,
    truth,
    type_test,
    with_threshold,
)

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
    """Where each rule of both rulesets fired, and what is needed to compare them."""

    fired: dict[str, pl.Series]  # "side|rule" (or "sweep|value") -> sorted positions in frame order
    rulesets: dict[str, Ruleset]
    frame: FeatureFrame
    sweep_sources: dict[float, str] = field(default_factory=dict)

    def counted(self, column: str) -> pl.Series:
        """The positions where ``column``'s rule fired on an event of the period."""
        rows = self.fired[column]
        return rows.filter(self.frame.col("_in").gather(rows))

    def accounts(self, columns: Sequence[str]) -> set[str]:
        """The accounts on which any of ``columns`` fired in the period."""
        if not columns:
            return set()
        rows = pl.concat([self.counted(c) for c in columns]).unique()
        return set(self.frame.account_ids(rows).unique().cast(pl.String).to_list())


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
    """Find every rule's hits on every event, testing each condition as the engine would.

    ``events`` may carry a boolean ``in_period`` column: rows outside it only warm the windows and
    baselines up; their hits are not counted. A condition is tested lazily, like the engine's: the
    operands of an ``and`` cheapest first, each only on the rows the earlier ones left, so the costly
    features are computed on few rows.
    """
    step = progress or (lambda _s: None)
    columns = {
        f"{side}|{rule.id}": rule.when
        for side, rs in (("live", live), ("candidate", candidate))
        for rule in rs.rules
    }
    sweep_sources: dict[float, str] = {}
    if sweep is not None:
        rule = candidate.get(sweep.rule_id)
        sweep_sources = {v: with_threshold(rule.when, sweep.param, v) for v in sweep.values}
        columns |= {f"sweep|{v!r}": text for v, text in sweep_sources.items()}
    trees = {text: tree(text) for text in dict.fromkeys(columns.values())}
    frame = prepare(
        events,
        reads(list(trees)),
        ip_ranges=ip_ranges,
        thresholds=thresholds,
        kyc=kyc,
        blacklisted=blacklisted,
        progress=step,
    )
    tester = _Tester(frame)
    by_text = {}
    for i, (text, node) in enumerate(trees.items()):
        step(f"rules {i}/{len(trees)}")
        by_text[text] = tester.fires(node, None)
    fired = {column: by_text[text] for column, text in columns.items()}
    return Replay(fired, {"live": live, "candidate": candidate}, frame, sweep_sources)


class _Tester:
    """Tests conditions on a frame: ``and`` narrows the rows cheapest operand first, ``or`` unites."""

    def __init__(self, frame: FeatureFrame) -> None:
        self.frame = frame
        self.everywhere: dict[str, pl.Series] = {}  # a test's rows, when tested on every row

    def fires(self, node: ast.expr, rows: pl.Series | None) -> pl.Series:
        """The positions (of ``rows``, or of all rows when None) where ``node`` is truthy."""
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                for part in sorted(node.values, key=cost):
                    rows = self.fires(part, rows)
                    if rows.is_empty():
                        break
                return self._all() if rows is None else rows
            found = [self.fires(part, rows) for part in node.values]
            return pl.concat(found).unique().sort()
        if rows is None:
            key = ast.dump(node)
            got = self.everywhere.get(key)
            if got is None:
                got = self.everywhere[key] = self._test(node, None)
            return got
        return self._test(node, rows)

    def _all(self) -> pl.Series:
        return self.frame.col("_row")

    def _test(self, node: ast.expr, rows: pl.Series | None) -> pl.Series:
        frame = self.frame
        positions = self._all() if rows is None else rows
        kind = type_test(node)
        if kind is not None and kind[0] in TYPES:
            same = frame.type_is(kind[0], rows)
            return positions.filter(same if kind[1] else ~same)
        counted = count_test(node)
        if counted is not None:
            name, k = counted
            if name in COUNTS:
                members, span = COUNTS[name]
                return positions.filter(frame.at_least(members, span, k, rows))
            members, span, offset = BOUNDED[name]
            if k > 0:  # at least k distinct values need at least k (+ offset) members
                positions = positions.filter(frame.at_least(members, span, k + offset, rows))
                rows = positions
        if positions.is_empty():
            return positions
        values = pl.DataFrame({name: frame.at(name, rows) for name in sorted(read_by(node))})
        if not values.width:
            values = pl.DataFrame({"_": pl.repeat(0, positions.len(), eager=True)})
        return positions.filter(values.select(truth(node)).to_series())


def event_hits(result: Replay, ids: pl.Series, side: str) -> dict[str, frozenset[str]]:
    """Each event's id (``ids`` in the order the events were given) and the rules that fired on it."""
    fired: dict[int, set[str]] = {}
    arrival = result.frame.df["_arrival"]
    for column, rows in result.fired.items():
        if not column.startswith(side + "|"):
            continue
        name = column.split("|", 1)[1]
        for i in arrival.gather(rows).to_list():
            fired.setdefault(i, set()).add(name)
    return {ids[i]: frozenset(fired.get(i, ())) for i in range(ids.len())}


def _acting(rule: Rule) -> bool:
    return not rule.shadow and rule.action >= Action.RESTRICT


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
    frame = result.frame
    period = frame.col("_in")
    summary: dict[str, Any] = {
        "events": int(period.sum()),
        "accounts": frame.df["_acct"].filter(period).n_unique(),
    }
    frozen: dict[str, set[str]] = {}
    for side in SIDES:
        rs = result.rulesets[side]
        frozen[side] = result.accounts([f"{side}|{r.id}" for r in rs.rules if _acting(r)])
        summary[side] = {
            "ruleset_sha256": rs.sha256,
            "events_by_outcome": _by_outcome(result, rs, side, summary["events"]),
            "frozen_accounts": len(frozen[side]),
            **_accuracy(frozen[side], outcomes),
        }
    added = sorted(frozen["candidate"] - frozen["live"])
    removed = sorted(frozen["live"] - frozen["candidate"])
    summary["freezes_added"] = {"accounts": len(added), "sample": added[:sample]}
    summary["freezes_removed"] = {"accounts": len(removed), "sample": removed[:sample]}
    summary["added_wrongful"] = len(set(added) & outcomes.wrongful)
    summary["removed_wrongful"] = len(set(removed) & outcomes.wrongful)
    summary["rules"] = _per_rule(result, outcomes, sample)
    summary["outcomes"] = outcomes.source
    return summary


def _by_outcome(result: Replay, rs: Ruleset, side: str, events: int) -> dict[str, int]:
    """Events of the period by their strongest non-shadow action (allow when nothing fired)."""
    parts = [
        result.counted(f"{side}|{r.id}")
        .cast(pl.Int64)
        .to_frame("row")
        .with_columns(o=pl.lit(int(r.action), pl.Int8))
        for r in rs.rules
        if not r.shadow
    ]
    strongest = pl.concat(parts).group_by("row").agg(pl.col("o").max()) if parts else pl.DataFrame()
    counts = {} if strongest.is_empty() else dict(strongest["o"].value_counts().iter_rows())
    counts[int(Action.ALLOW)] = counts.get(int(Action.ALLOW), 0) + events - strongest.height
    return {
        Action(int(o)).name.lower(): int(n)
        for o, n in sorted(counts.items(), key=lambda kv: Action(kv[0]).name.lower())
        if n
    }


def _per_rule(result: Replay, outcomes: Outcomes, sample: int) -> list[dict[str, Any]]:
    rulesets = result.rulesets
    ids = list(dict.fromkeys([r.id for s in SIDES for r in rulesets[s].rules]))
    rows = []
    for rid in ids:
        entry: dict[str, Any] = {"rule": rid}
        accounts: dict[str, set[str]] = {}
        for side in SIDES:
            col = f"{side}|{rid}"
            if col not in result.fired:
                entry[side] = None
                accounts[side] = set()
                continue
            rule = rulesets[side].get(rid)
            accounts[side] = result.accounts([col])
            entry[side] = {
                "action": "shadow" if rule.shadow else rule.action.name.lower(),
                "events": result.counted(col).len(),
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
    rs = result.rulesets["candidate"]
    rule = rs.get(sweep.rule_id)
    base = result.accounts([f"candidate|{r.id}" for r in rs.rules if _acting(r) and r.id != rule.id])
    rows = []
    for value in sweep.values:
        mine = result.accounts([f"sweep|{value!r}"])
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
