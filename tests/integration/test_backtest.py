"""Backtests: the vectorised replay agrees with the live engine, what-ifs count exactly, sweeps
recommend the right threshold, and the database path reads stored events and appeal outcomes."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest
from pydantic import TypeAdapter
from sqlalchemy import select

from tests import lifecycle as lc
from thawline.adapters.db.schema import appeal, risk_decision
from thawline.domain import vector_features
from thawline.domain.backtest import Outcomes, Sweep, compare, event_hits, replay, sweep_table
from thawline.domain.events import Event, Transaction
from thawline.domain.features import AccountState, IpRanges, Thresholds
from thawline.domain.rules import Action, Ruleset
from thawline.domain.vector_features import EVENT_SCHEMA
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import backtest as service
from thawline.services import engine
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.sim import SimConfig, World, write_dataset

DEFAULT = engine.default_ruleset_text()
ANALYST = Actor(ActorKind.SYSTEM, "analyst")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated world (JSON Lines) with every abuse scenario and benign look-alikes."""
    out = tmp_path_factory.mktemp("world")
    write_dataset(World(SimConfig(seed=3, accounts=300, days=12, abuse_rate=0.06)), out, "jsonl")
    return out


def _python_engine(world: Path, rules: Ruleset) -> dict[str, frozenset[str]]:
    """Every event's fired rules from the live engine's own code, one event at a time, in time order
    (the order in which the engine evaluates a batch)."""
    history = service.load_files(world / "events.jsonl")
    raw = [orjson.loads(line) for line in (world / "events.jsonl").read_bytes().splitlines() if line]
    events = TypeAdapter(list[Event]).validate_python(raw)
    ranges, thresholds = engine.default_ip_ranges(), Thresholds()
    states: dict[str, AccountState] = {}
    out = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level=history.kyc[e.account_id])
        features = st.observe(e, ranges, thresholds)
        features["blacklisted"] = e.account_id in history.blacklisted
        out[e.id] = frozenset(h.rule.id for h in rules.evaluate(features))
    return out


def _frozen(hits: dict[str, frozenset[str]], rules: Ruleset, account_of: dict[str, str]) -> set[str]:
    acting = {r.id for r in rules.rules if not r.shadow and r.action >= Action.RESTRICT}
    return {account_of[e] for e, fired in hits.items() if fired & acting}


def _ids(world: Path) -> pl.Series:
    return pl.read_ndjson(world / "events.jsonl", schema={"id": pl.String})["id"]


def test_the_vectorised_live_ruleset_reproduces_the_live_engine_event_by_event(world: Path) -> None:
    rules = Ruleset.from_yaml(DEFAULT)
    expected = _python_engine(world, rules)
    history = service.load_files(world / "events.jsonl")
    result = replay(
        history.events,
        rules,
        rules,
        ip_ranges=engine.default_ip_ranges(),
        kyc=history.kyc,
        blacklisted=history.blacklisted,
    )
    got = event_hits(result, _ids(world), "live")
    assert got.keys() == expected.keys()
    differing = [e for e in expected if expected[e] != got[e]]
    assert differing == []
    fired = {r for v in expected.values() for r in v}
    assert len(fired) >= 6, fired  # the comparison covers many rules, not only "nothing fired"


def _variant(old: str, new: str) -> Ruleset:
    assert old in DEFAULT
    return Ruleset.from_yaml(DEFAULT.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("kyc_rank == 0 and txn_sum_24h > 10000", "kyc_rank == 0 and txn_sum_24h > 2000"),  # lower: more
        ("amount > max(4 * amount_max", "amount > max(1.5 * amount_max"),  # lower: more
        ("amount > 5000 and direction", "amount > 500000 and direction"),  # higher: fewer
        ("near_threshold_7d >= 3", "near_threshold_7d >= 30"),  # higher: fewer
    ],
)
def test_a_candidate_threshold_adds_or_removes_exactly_the_freezes_the_engine_would(
    world: Path, old: str, new: str
) -> None:
    live, candidate = Ruleset.from_yaml(DEFAULT), _variant(old, new)
    account_of = {
        r["id"]: r["account_id"]
        for r in (orjson.loads(x) for x in (world / "events.jsonl").read_bytes().splitlines() if x)
    }
    before = _frozen(_python_engine(world, live), live, account_of)
    after = _frozen(_python_engine(world, candidate), candidate, account_of)
    history = service.load_files(world / "events.jsonl")
    report = service.run(history, live, candidate)
    assert report["live"]["frozen_accounts"] == len(before)
    assert report["candidate"]["frozen_accounts"] == len(after)
    assert report["freezes_added"]["accounts"] == len(after - before)
    assert report["freezes_removed"]["accounts"] == len(before - after)
    assert set(report["freezes_added"]["sample"]) == set(sorted(after - before)[:50])
    assert report["added_wrongful"] == len((after - before) & history.outcomes.wrongful)
    assert after != before  # the case changes something
    changed = {r["rule"] for r in report["rules"] if r["changed"]}
    assert changed <= {r.id for r in live.rules}


def _burst_events(sizes: dict[str, int]) -> pl.DataFrame:
    """Account ``a`` makes ``sizes[a]`` payments 10 s apart; nothing else happens."""
    rows = []
    for account, n in sizes.items():
        for i in range(n):
            rows.append(
                {
                    "id": f"{account}-{i}",
                    "account_id": account,
                    "type": "transaction",
                    "ts_us": 1_790_000_000_000_000 + i * 10_000_000,
                    "hour": 9,
                    "amount": 100.0,
                    "currency": "CNY",
                    "direction": "debit",
                    "counterparty": f"shop-{i}",
                }
            )
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in EVENT_SCHEMA.items() if c not in frame.columns]
    ).select(list(EVENT_SCHEMA))


RULE = """
rules:
  - id: burst
    category: high_frequency
    name: {en: Burst, zh-CN: 高频}
    explanation: {en: Many payments., zh-CN: 交易过多。}
    when: event_type == "transaction" and txn_count_10m >= 8
    action: freeze
"""


def test_a_sweep_is_monotonic_and_recommends_the_loosest_threshold_meeting_the_target() -> None:
    # Accounts with 1..12 payments in a burst; those with 7 or more are abusive, one benign has 9.
    sizes = {f"a{n:02d}": n for n in range(1, 13)} | {"b09": 9}
    abusive = frozenset(a for a, n in sizes.items() if n >= 7 and a != "b09")
    outcomes = Outcomes(wrongful=frozenset(sizes) - abusive, rightful=abusive, complete=True, source="test")
    rules = Ruleset.from_yaml(RULE)
    plan = Sweep("burst", "txn_count_10m", tuple(float(v) for v in range(1, 14)), target_wrongful=0.2)
    result = replay(_burst_events(sizes), rules, rules, ip_ranges=IpRanges(), sweep=plan)
    table = sweep_table(result, plan, outcomes)
    counts = [row["accounts"] for row in table["rows"]]
    assert counts == [sum(1 for n in sizes.values() if n >= v) for v in range(1, 14)]
    assert counts == sorted(counts, reverse=True)
    # At 7: a07..a12 and b09 → 1 wrongful of 7 (14%) ≤ 20%, every abusive account caught.
    # At 6: a06 joins → 2 of 8 (25%) > 20%.
    assert table["recommended"] == 7.0
    assert "txn_count_10m >= 7" in table["recommended_condition"]
    assert (
        sweep_table(result, Sweep("burst", "txn_count_10m", plan.values, 0.0), outcomes)["recommended"]
        == 10.0
    )
    report = compare(result, outcomes)
    assert report["live"]["frozen_accounts"] == sum(1 for n in sizes.values() if n >= 8)


def _card_test(runtime: Runtime, account: str, n: int = 9) -> list[Transaction]:
    t0 = runtime.clock.now()
    return [
        Transaction(
            id=f"{account}-e{i}",
            account_id=account,
            occurred_at=t0 + timedelta(seconds=20 * i),
            transaction_id=f"{account}-t{i}",
            amount=Decimal("1.50"),
            currency="CNY",
            direction="debit",
        )
        for i in range(n)
    ]


def _decided_appeal(runtime: Runtime, account: str, decision: lc.Decision) -> None:
    with UnitOfWork(runtime, read_only=True) as uow:
        freeze_id = uow.conn.execute(
            select(risk_decision.c.freeze_id)
            .where(risk_decision.c.account_id == account, risk_decision.c.freeze_id.is_not(None))
            .distinct()
        ).scalar_one()
    appeal_id = lc.submit_appeal(runtime, freeze_id)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE, decision)
    with UnitOfWork(runtime, read_only=True) as uow:
        status = uow.conn.execute(select(appeal.c.status).where(appeal.c.id == appeal_id)).scalar_one()
    if status == "second_approval":  # four eyes where the category needs them
        lc.claim(runtime, appeal_id, lc.BOB)
        lc.decide(runtime, appeal_id, lc.BOB, decision)


def _stored_rules(runtime: Runtime) -> set[tuple[str, str]]:
    with UnitOfWork(runtime, read_only=True) as uow:
        rows = uow.conn.execute(select(risk_decision.c.event_id, risk_decision.c.rule_id))
        return {(r.event_id, r.rule_id) for r in rows}


def test_a_backtest_from_the_database_replays_stored_events_with_appeal_outcomes(runtime: Runtime) -> None:
    for account in ("acc_1", "acc_2", "acc_3"):
        lc.register(runtime, account, kyc="full")
    gateway = Actor(ActorKind.INTEGRATOR, "ak_gateway")
    risk = engine.RiskEngine(runtime)
    risk.ingest(
        _card_test(runtime, "acc_1") + _card_test(runtime, "acc_2") + _card_test(runtime, "acc_3", 5), gateway
    )
    _decided_appeal(runtime, "acc_1", lc.Decision.REJECT)
    _decided_appeal(runtime, "acc_2", lc.Decision.APPROVE)
    history = service.load_database(runtime)
    assert history.outcomes.rightful == {"acc_1"}
    assert history.outcomes.wrongful == {"acc_2"}
    _version, live = service.live_ruleset(runtime)
    result = replay(history.events, live, live, ip_ranges=engine.default_ip_ranges(), kyc=history.kyc)
    ids = history.events["id"]
    replayed = {(e, r) for e, fired in event_hits(result, ids, "live").items() for r in fired}
    assert replayed == _stored_rules(runtime)  # the same rules fired on the same stored events
    stricter = Ruleset.from_yaml(DEFAULT.replace("small_txn_count_10m >= 8", "small_txn_count_10m >= 10"))
    report = service.run(history, live, stricter)
    assert report["live"]["frozen_accounts"] == 2
    assert report["freezes_removed"] == {"accounts": 2, "sample": ["acc_1", "acc_2"]}
    assert report["live"]["wrongful_freeze_rate"] == 0.5
    assert report["removed_wrongful"] == 1
    service.record(runtime, ANALYST, report, _version)
    with UnitOfWork(runtime, read_only=True) as uow:
        entries = [decode_entry(d) for _s, d, _c in uow.oplog.entries()]
    logged = [e for e in entries if e["action"] == "rules.backtested"]
    assert logged[-1]["details"]["freezes_removed"] == 2
    assert logged[-1]["details"]["wrongful_rate_live"] == "0.5"


FEATURE_RULES = """
rules:
""" + "".join(
    f"""  - id: {rid}
    category: behavior
    name: {{en: {rid}, zh-CN: {rid}}}
    explanation: {{en: Test., zh-CN: 测试。}}
    when: '{when}'
    action: review
"""
    for rid, when in {
        "dev": "new_device and known_devices >= 2",
        "dev_failed": 'event_type == "login" and not success and new_device',
        "ip": "new_ip or ip_is_proxy or ip_bad_reputation",
        "cp": "new_counterparty and amount > 100",
        "median": 'event_type == "transaction" and amount > 3 * amount_median',
        "mad": "history_txns >= 3 and amount > amount_median + 2 * amount_mad",
        "max": "history_txns >= 2 and amount >= amount_max",
        "hour": "history_events >= 5 and hour_share < 0.15",
        "kyc": "kyc_rank == 1 and txn_sum_24h > 500",
        "daily": "today_txn_count >= 3 and today_txn_count >= 2 * daily_count_ewma",
        "ip_changes": "ip_changes_1h >= 2",
        "fanout": "distinct_counterparties_1h > 2.5",
        "profile": "sensitive_changes_24h >= 1 and 2 <= profile_changes_24h",
        "near": "near_threshold_24h >= 2 or near_threshold_7d >= 3",
        "failures": "login_failures_1h > 1.5",
        "credit": 'credit_sum_1h >= 1000 and direction == "debit" and amount >= 0.5 * credit_sum_1h',
        "small": "small_txn_count_10m >= 3 or txn_count_1m >= 3",
        "field": 'profile_field in ["phone", "bank_card"] and txn_count_7d + 1 > 5',
    }.items()
)


def _random_history(seed: int) -> list[dict[str, object]]:
    """A few accounts' dense, repetitive history (devices, addresses and counterparties from small
    pools, unbinds, failed logins, KYC changes, near-threshold and tiny payments), sent partly out of
    time order."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for a in range(12):
        account = f"acc_{a}"
        t = 1_790_000_000 + rng.randrange(3600)
        for i in range(rng.randrange(40, 160)):
            t += rng.choice([1, 5, 20, 60, 300, 900, 3600, 5 * 3600])
            at = datetime.fromtimestamp(t + rng.random(), tz=timezone(timedelta(hours=8))).isoformat()
            base = {"id": f"{account}-{i}", "account_id": account, "occurred_at": at}
            device = f"dev_{rng.randrange(4)}"
            ip = rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3", "198.51.100.7", "203.0.113.9"])
            kind = rng.choices(["transaction", "login", "profile_change", "kyc_update", "device_binding"],
                               [60, 30, 5, 2, 3])[0]  # fmt: skip
            if kind == "transaction":
                amount = rng.choice([rng.uniform(1, 9), rng.uniform(10, 500), rng.uniform(500, 5000),
                                     rng.uniform(45_000, 49_999)])  # fmt: skip
                row = {"transaction_id": f"{account}-t{i}", "amount": f"{amount:.2f}", "currency": "CNY",
                       "direction": rng.choice(["debit", "credit"]), "counterparty": f"cp_{rng.randrange(6)}",
                       "channel": "app", "ip": ip, "device_id": device}  # fmt: skip
            elif kind == "login":
                row = {"ip": ip, "device_id": device, "success": rng.random() > 0.3}
            elif kind == "profile_change":
                row = {"field": rng.choice(["phone", "email", "password", "bank_card", "address"])}
            elif kind == "kyc_update":
                row = {"level": rng.choice(["none", "basic", "full"])}
            else:
                row = {"device_id": device, "action": rng.choice(["bind", "unbind"])}
            rows.append(base | {"type": kind} | row)
    rows.sort(key=lambda r: str(r["occurred_at"]))
    for i in range(0, len(rows) - 3, 17):  # some events arrive after later ones
        rows[i], rows[i + 3] = rows[i + 3], rows[i]
    return rows


@pytest.mark.parametrize(("seed", "expand"), [(1, True), (2, True), (3, True), (1, False), (4, False)])
def test_every_feature_agrees_with_the_live_engine_on_a_dense_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, expand: bool
) -> None:
    if not expand:  # the whole-history methods (rolling statistics, one sort by hour) instead
        monkeypatch.setattr(vector_features, "_EXPAND_LIMIT", 0)
    rows = _random_history(seed)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    (tmp_path / "accounts.jsonl").write_bytes(
        b"\n".join(orjson.dumps({"id": f"acc_{a}", "kyc_level": ["none", "basic"][a % 2]}) for a in range(12))
    )
    rules = Ruleset.from_yaml(FEATURE_RULES)
    ranges = IpRanges.parse(["198.51.100.0/24"], ["203.0.113.0/24"])
    history = service.load_files(path)
    events = TypeAdapter(list[Event]).validate_python(rows)
    states: dict[str, AccountState] = {}
    expected = {}
    for e in sorted(events, key=lambda e: e.occurred_at):
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level=history.kyc[e.account_id])
        expected[e.id] = frozenset(h.rule.id for h in rules.evaluate(st.observe(e, ranges, Thresholds())))
    result = replay(history.events, rules, rules, ip_ranges=ranges, kyc=history.kyc)
    got = event_hits(result, history.events["id"], "live")
    assert {e: (expected[e], got[e]) for e in expected if expected[e] != got[e]} == {}
    fired = {r for v in expected.values() for r in v}
    assert len(fired) >= 14, sorted({r.id for r in rules.rules} - fired)


def test_addresses_are_classified_column_wise_as_the_engine_classifies_them() -> None:
    rng = random.Random(5)
    parts = ([10, 198, 203, 192, 1], [0, 51, 168], [100, 113, 1], range(256))
    ips = [".".join(str(rng.choice(p)) for p in parts) for _ in range(2000)]
    ips += ["01.2.3.4", "1.2.3", "256.1.1.1", "2001:db8::1", "::1", "not an ip", " 1.2.3.4", "0.0.0.0"]
    ranges = IpRanges.parse(
        ["198.51.100.0/24", "10.0.0.0/8", "2001:db8::/32"], ["203.0.113.0/24", "192.168.1.128/25"]
    )
    proxy, bad = vector_features.classify(pl.Series(list(dict.fromkeys(ips))), ranges)
    assert set(proxy) == {ip for ip in ips if ranges.classify(ip)[0]}
    assert set(bad) == {ip for ip in ips if ranges.classify(ip)[1]}
    assert proxy  # both kinds occur
    assert bad
