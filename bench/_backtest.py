"""Benchmark the backtest: events per second through the vectorised replay, and agreement with the engine.

    python bench/_backtest.py [--quick]

Prints one JSON object (``bench/analytics.py`` merges :func:`measure`'s dict into its own):

- ``backtest_events_per_s``: events replayed per second (the median of three timed runs) through the
  live (default) ruleset and a candidate (one threshold lowered) — features of both, every rule, the
  comparison — on a simulated world's Parquet, tiled (account ids suffixed) to ``backtest_events``
  events. Reading Parquet is timed separately (``backtest_load_seconds``).
- ``backtest_stage_seconds``: where the replay's time went (sort, rules, compare).
- ``backtest_events_per_s_runs``: the rate of each of the timed runs (the median is the figure above;
  the machine is shared, so the spread is part of the result).
- ``backtest_agreement_rate``: on a smaller world, the share of events whose fired rules are the same
  in the vectorised replay and in the live engine's own code (one event at a time, time order).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from pydantic import TypeAdapter

from thawline.domain.backtest import event_hits, replay
from thawline.domain.events import Event
from thawline.domain.features import AccountState, Thresholds
from thawline.domain.rules import Ruleset
from thawline.services import backtest as service
from thawline.services.engine import default_ip_ranges, default_ruleset_text
from thawline.sim import SimConfig, World, write_dataset

CANDIDATE_CHANGE = ("txn_sum_24h > 10000", "txn_sum_24h > 5000")
STAGES = ("sort", "rules", "compare")
RUNS = 3  # timed runs after the warm-up; the median is reported, every run's rate too


def _world(out: Path, accounts: int, days: int, fmt: str) -> Path:
    write_dataset(World(SimConfig(seed=11, accounts=accounts, days=days)), out, fmt)  # type: ignore[arg-type]
    return out


def _tile(history: service.History, copies: int) -> service.History:
    """The same world ``copies`` times over, each copy's accounts renamed (a bigger, alike population)."""
    frames = [
        history.events.with_columns(
            (pl.col("account_id") + f"~{i}").alias("account_id"), (pl.col("id") + f"~{i}").alias("id")
        )
        if i
        else history.events
        for i in range(copies)
    ]
    kyc = {f"{a}~{i}" if i else a: v for i in range(copies) for a, v in history.kyc.items()}
    return service.History(pl.concat(frames), history.outcomes, kyc, history.blacklisted, history.source)


def agreement(world: Path) -> float:
    """Share of events on which the replay and the live engine fire the same rules."""
    rules = Ruleset.from_yaml(default_ruleset_text())
    history = service.load_files(world / "events.jsonl")
    raw = [orjson.loads(x) for x in (world / "events.jsonl").read_bytes().splitlines() if x]
    events = TypeAdapter(list[Event]).validate_python(raw)
    ranges, thresholds = default_ip_ranges(), Thresholds()
    states: dict[str, AccountState] = {}
    live = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level=history.kyc[e.account_id])
        features = st.observe(e, ranges, thresholds)
        features["blacklisted"] = e.account_id in history.blacklisted
        live[e.id] = frozenset(h.rule.id for h in rules.evaluate(features))
    result = replay(
        history.events, rules, rules, ip_ranges=ranges, kyc=history.kyc, blacklisted=history.blacklisted
    )
    got = event_hits(result, pl.Series([e.id for e in events]), "live")
    same = sum(1 for k, v in live.items() if got.get(k) == v)
    return same / len(live)


def measure(quick: bool) -> dict[str, Any]:
    """Run the benchmark; ``quick`` keeps it under about 30 seconds."""
    accounts, copies, small = (1500, 2, 150) if quick else (5000, 14, 600)
    live = Ruleset.from_yaml(default_ruleset_text())
    candidate = Ruleset.from_yaml(default_ruleset_text().replace(*CANDIDATE_CHANGE))
    with tempfile.TemporaryDirectory() as tmp:
        world = _world(Path(tmp) / "big", accounts, 30, "parquet")
        started = time.perf_counter()
        history = service.load_files(world / "events.parquet")
        load = time.perf_counter() - started
        history = _tile(history, copies)
        service.run(history, live, candidate)  # warm-up: imports, Polars' thread pool
        runs = []  # (seconds, seconds by stage, report) of each timed run
        for _ in range(RUNS):
            stages: dict[str, float] = {}
            marks = [("start", time.perf_counter())]

            def lap(stage: str, _done: int, _total: int, stages: dict[str, float] = stages,
                    marks: list[tuple[str, float]] = marks) -> None:  # fmt: skip
                now = time.perf_counter()
                stages[marks[-1][0]] = stages.get(marks[-1][0], 0.0) + now - marks[-1][1]
                marks.append((stage, now))

            started = time.perf_counter()
            report = service.run(history, live, candidate, progress=lap)
            seconds = time.perf_counter() - started
            lap("end", 0, 0)
            runs.append((seconds, stages, report))
        runs.sort(key=lambda r: r[0])
        seconds, stages, report = runs[len(runs) // 2]  # the median run
        rate = agreement(_world(Path(tmp) / "small", small, 30, "jsonl"))
    events = history.events.height
    return {
        "backtest_events_per_s": round(events / seconds),
        "backtest_events_per_s_runs": [round(events / r[0]) for r in runs],
        "backtest_events": events,
        "backtest_seconds": round(seconds, 3),
        "backtest_load_seconds": round(load * copies, 3),
        # sort: ordering and gathering the columns; rules: testing every condition, features included;
        # compare: freezes added and removed, per rule, accuracy
        "backtest_stage_seconds": {k: round(stages[k], 3) for k in STAGES if k in stages},
        "backtest_agreement_rate": round(rate, 6),
        "backtest_freezes_added": report["freezes_added"]["accounts"],
        "backtest_threads": pl.thread_pool_size(),
    }


def main() -> None:
    """Command-line entry: print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller world, under about 30 s")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick)))


if __name__ == "__main__":
    main()
