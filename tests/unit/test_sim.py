"""The synthetic world: determinism, schema, ground truth, identifiers, scenario shapes, late arrivals."""

from __future__ import annotations

import ast
import csv
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import Any

import orjson
import phonenumbers
import polars as pl
import pytest
from pydantic import TypeAdapter
from stdnum import luhn
from stdnum.cn import ric

import thawline.sim
from thawline.domain import identity
from thawline.domain.events import Event
from thawline.sim import ABUSE_LABELS, LABELS, LOOKALIKE_TAGS, SimConfig, SimConfigError, World, write_dataset
from thawline.sim.identity import IdentityFactory, luhn_check_digit, ric_check_digit

EVENTS = TypeAdapter(list[Event])
CONFIG = SimConfig(
    seed=11,
    accounts=360,
    days=10,
    start=date(2026, 11, 5),  # 11-11 is day 6
    abuse_rate=0.1,
    lookalike_rate=0.1,
    late_fraction=0.02,
    max_late_seconds=1800,
)
HOLDER_DATA = ("accounts.jsonl", "events.jsonl", "labels.jsonl", "blocklist.csv")


@dataclass
class Dataset:
    """A written world, read back."""

    dir: Path
    world: World
    summary: dict[str, Any]
    accounts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    labels: dict[str, dict[str, Any]]
    blocklist: list[dict[str, str]]

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        return {e["id"]: e for e in self.events}

    def of(self, account_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["account_id"] == account_id]

    def with_label(self, label: str) -> list[dict[str, Any]]:
        return [lab for lab in self.labels.values() if lab["label"] == label]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _write(out: Path, config: SimConfig, fmt: str = "jsonl") -> Dataset:
    world = World(config)
    summary = write_dataset(world, out, fmt)  # type: ignore[arg-type]
    with open(out / "blocklist.csv", encoding="utf-8", newline="") as f:
        blocklist = list(csv.DictReader(f))
    return Dataset(
        dir=out,
        world=world,
        summary=summary,
        accounts=_jsonl(out / "accounts.jsonl"),
        events=_jsonl(out / "events.jsonl") if fmt == "jsonl" else [],
        labels={lab["account_id"]: lab for lab in _jsonl(out / "labels.jsonl")},
        blocklist=blocklist,
    )


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _write(tmp_path_factory.mktemp("sim"), CONFIG)


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    small = replace(CONFIG, accounts=80, days=4)
    a = _write(tmp_path / "a", small)
    b = _write(tmp_path / "b", small)
    c = _write(tmp_path / "c", replace(small, seed=12))
    for name in HOLDER_DATA:
        assert (a.dir / name).read_bytes() == (b.dir / name).read_bytes(), name
    strip = lambda s: {k: v for k, v in s.items() if k != "generation"}  # noqa: E731
    assert strip(orjson.loads((a.dir / "summary.json").read_bytes())) == strip(b.summary)
    for name in HOLDER_DATA:
        assert (a.dir / name).read_bytes() != (c.dir / name).read_bytes(), name


def test_a_world_streams_once() -> None:
    world = World(replace(CONFIG, accounts=5, days=1))
    with pytest.raises(RuntimeError, match="stream the events first"):
        list(world.labels())
    list(world.stream())
    with pytest.raises(RuntimeError, match="once"):
        list(world.stream())


# -- the event contract ---------------------------------------------------------------------------


def test_every_event_validates_against_the_schema(ds: Dataset) -> None:
    raw = (ds.dir / "events.jsonl").read_bytes()
    parsed = EVENTS.validate_json(b"[" + b",".join(raw.splitlines()) + b"]")
    assert len(parsed) == len(ds.events) == ds.summary["events"]["total"]
    assert {e.type for e in parsed} == {
        "login",
        "transaction",
        "profile_change",
        "kyc_update",
        "device_binding",
    }
    assert all(e.occurred_at.utcoffset() == timedelta(hours=8) for e in parsed)
    assert Counter(e.type for e in parsed) == ds.summary["events"]["by_type"]


def test_event_ids_are_unique_and_amounts_are_decimal_strings(ds: Dataset) -> None:
    assert len({e["id"] for e in ds.events}) == len(ds.events)
    txns = [e for e in ds.events if e["type"] == "transaction"]
    assert len({e["transaction_id"] for e in txns}) == len(txns)
    assert all(isinstance(e["amount"], str) and Decimal(e["amount"]) > 0 for e in txns)
    assert {e["account_id"] for e in ds.events} <= {a["id"] for a in ds.accounts}


def test_parquet_holds_the_same_events(ds: Dataset, tmp_path: Path) -> None:
    pq = _write(tmp_path, CONFIG, "parquet")
    assert not list(tmp_path.glob("*.parts"))
    frame = pl.read_parquet(tmp_path / "events.parquet")
    assert frame.schema["amount"] == pl.Decimal(18, 2)
    assert frame.schema["occurred_at"] == pl.Datetime("ms", "Asia/Shanghai")
    rows = [{k: v for k, v in row.items() if v is not None} for row in frame.to_dicts()]
    parsed = EVENTS.validate_python(rows)
    assert [e.id for e in parsed] == [e["id"] for e in ds.events]
    expected = EVENTS.validate_python(ds.events)
    assert parsed == expected
    assert pq.summary["events"]["total"] == len(ds.events)


# -- ground truth ---------------------------------------------------------------------------------


def test_labels_cover_every_account_and_name_real_events(ds: Dataset) -> None:
    assert list(ds.labels) == [a["id"] for a in ds.accounts]
    by_id = ds.by_id
    for lab in ds.labels.values():
        assert lab["label"] in LABELS
        for eid in lab["abuse_event_ids"]:
            assert by_id[eid]["account_id"] == lab["account_id"]
        if lab["label"] == "benign":
            assert lab["abuse_event_ids"] == []
        elif lab["label"] != "blacklisted":
            assert lab["abuse_event_ids"], lab
    assert ds.summary["events"]["abusive"] == sum(len(lab["abuse_event_ids"]) for lab in ds.labels.values())


def test_each_scenario_appears_at_the_requested_rate(ds: Dataset) -> None:
    counts = Counter(lab["label"] for lab in ds.labels.values())
    per_abuse = CONFIG.accounts * CONFIG.abuse_rate / len(ABUSE_LABELS)
    per_tag = CONFIG.accounts * CONFIG.lookalike_rate / len(LOOKALIKE_TAGS)
    for label in ABUSE_LABELS:
        assert abs(counts[label] - per_abuse) <= 1, (label, counts)
    assert sum(counts[label] for label in ABUSE_LABELS) == round(CONFIG.accounts * CONFIG.abuse_rate)
    tags = Counter(t for lab in ds.labels.values() for t in lab["tags"] if t in LOOKALIKE_TAGS)
    for tag in LOOKALIKE_TAGS:
        assert abs(tags[tag] - per_tag) <= 1, (tag, tags)
    lookalikes = [lab for lab in ds.labels.values() if set(lab["tags"]) & set(LOOKALIKE_TAGS)]
    assert all(lab["label"] == "benign" for lab in lookalikes)
    assert ds.summary["labels"] == {label: counts.get(label, 0) for label in LABELS}


def test_no_abuse_when_the_rate_is_zero() -> None:
    world = World(replace(CONFIG, accounts=50, days=1, abuse_rate=0.0, lookalike_rate=0.0))
    assert world.label_counts()["benign"] == 50


# -- scenario shapes ------------------------------------------------------------------------------


def test_account_takeover_is_an_odd_hour_foreign_login_then_security_changes_then_large_debits(
    ds: Dataset,
) -> None:
    for lab in ds.with_label("account_takeover"):
        abuse = [ds.by_id[i] for i in lab["abuse_event_ids"]]
        logins = [e for e in abuse if e["type"] == "login" and e["success"]]
        assert len(logins) == 1
        login = logins[0]
        assert login["geo"]["country"] != "CN"
        assert 1 <= _at(login).hour <= 5
        holder = next(h for h in ds.world.holders if h.account_id == lab["account_id"])
        assert login["device_id"] not in {d.id for d in holder.devices}
        fields = [e["field"] for e in abuse if e["type"] == "profile_change"]
        assert fields == ["phone", "password"]
        debits = [e for e in abuse if e["type"] == "transaction"]
        assert debits
        assert all(e["direction"] == "debit" and Decimal(e["amount"]) >= 5000 for e in debits)
        assert all(e["device_id"] == login["device_id"] and e["ip"] == login["ip"] for e in debits)
        assert min(_at(e) for e in debits) > max(_at(e) for e in abuse if e["type"] == "profile_change")


def test_card_testing_is_a_burst_of_tiny_debits_with_many_cards(ds: Dataset) -> None:
    for lab in ds.with_label("card_testing"):
        abuse = [ds.by_id[i] for i in lab["abuse_event_ids"]]
        tiny = sorted((e for e in abuse if Decimal(e["amount"]) < 10), key=_at)
        assert len(tiny) >= 15
        assert _at(tiny[-1]) - _at(tiny[0]) <= timedelta(minutes=20)
        assert len({e["card_ref"] for e in tiny}) == len(tiny)
        own_cards = {
            e.get("card_ref") for e in ds.of(lab["account_id"]) if e["id"] not in lab["abuse_event_ids"]
        }
        assert not own_cards & {e["card_ref"] for e in tiny}


def test_mule_rings_share_devices_and_a_sink_and_move_money_quickly(ds: Dataset) -> None:
    rings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lab in ds.with_label("mule"):
        (ring,) = [t for t in lab["tags"] if t.startswith("ring:")]
        rings[ring].append(lab)
    assert rings
    for members in rings.values():
        sinks, devices = set(), []
        for lab in members:
            abuse = sorted((ds.by_id[i] for i in lab["abuse_event_ids"]), key=_at)
            credits = [e for e in abuse if e["type"] == "transaction" and e["direction"] == "credit"]
            debits = [e for e in abuse if e["type"] == "transaction" and e["direction"] == "debit"]
            assert len(credits) == len(debits) >= 1
            for c, d in zip(credits, debits, strict=True):
                assert timedelta(0) < _at(d) - _at(c) <= timedelta(minutes=30)
                assert Decimal("0.89") * Decimal(c["amount"]) <= Decimal(d["amount"]) <= Decimal(c["amount"])
            sinks |= {e["counterparty"] for e in debits}
            devices.append({e["device_id"] for e in abuse if e["type"] == "login"})
        assert len(sinks) == 1
        if len(members) > 1:
            assert set.intersection(*devices) or len(set.union(*devices)) <= 2


def test_structuring_stays_just_under_the_threshold(ds: Dataset) -> None:
    threshold = Decimal(CONFIG.reporting_threshold)
    near = Decimal(CONFIG.reporting_threshold - 1000)
    for lab in ds.with_label("structuring"):
        abuse = [ds.by_id[i] for i in lab["abuse_event_ids"]]
        assert len(abuse) >= 4
        assert all(near <= Decimal(e["amount"]) < threshold for e in abuse)
        assert max(_at(e) for e in abuse) - min(_at(e) for e in abuse) <= timedelta(days=6)
    # nobody else comes near the threshold band
    low = threshold * Decimal("0.9")
    structuring = {lab["account_id"] for lab in ds.with_label("structuring")}
    others = [e for e in ds.events if e["type"] == "transaction" and e["account_id"] not in structuring]
    assert not [e for e in others if low <= Decimal(e["amount"]) < threshold]


def test_large_transfers_dwarf_the_holders_norm(ds: Dataset) -> None:
    for lab in ds.with_label("large_transfer"):
        abuse = [ds.by_id[i] for i in lab["abuse_event_ids"]]
        usual = [
            Decimal(e["amount"])
            for e in ds.of(lab["account_id"])
            if e["type"] == "transaction"
            and e["direction"] == "debit"
            and e["id"] not in lab["abuse_event_ids"]
        ]
        for e in abuse:
            assert Decimal(e["amount"]) >= 20_000
            if usual:
                assert Decimal(e["amount"]) >= 10 * median(usual)


def test_blacklisted_identities_are_on_the_blocklist_with_decoys(ds: Dataset) -> None:
    assert ds.blocklist
    assert set(ds.blocklist[0]) == {"kind", "value", "reason"}
    assert (ds.dir / "blocklist.csv").read_text(encoding="utf-8").startswith("kind,value,reason\n")
    listed = {(row["kind"], row["value"]) for row in ds.blocklist}
    holders = {a["id"]: a["holder"] for a in ds.accounts}
    hits = 0
    for account_id, holder in holders.items():
        mine = {("resident_id", holder["resident_id"]), ("phone", holder["phone"])}
        mine |= {("bank_card", c) for c in holder["bank_cards"]}
        hit = bool(mine & listed)
        assert hit == (ds.labels[account_id]["label"] == "blacklisted"), account_id
        hits += hit
    assert hits == len(ds.with_label("blacklisted")) < len(ds.blocklist)
    for lab in ds.with_label("blacklisted"):
        txns = {e["id"] for e in ds.of(lab["account_id"]) if e["type"] == "transaction"}
        assert set(lab["abuse_event_ids"]) == txns


def test_benign_look_alikes_have_their_shapes(ds: Dataset) -> None:
    tagged = {t: [a for a, lab in ds.labels.items() if t in lab["tags"]] for t in LOOKALIKE_TAGS}
    festival = CONFIG.start + timedelta(days=ds.world.festival_day)
    assert festival == date(2026, 11, 11)
    holders = {h.account_id: h for h in ds.world.holders}
    assert tagged["travel"]
    for account_id in tagged["travel"]:
        abroad = [e for e in ds.of(account_id) if e["type"] == "login" and e["geo"]["country"] != "CN"]
        known = {d.id for d in holders[account_id].devices}
        assert all(e["device_id"] in known for e in abroad)
        assert abroad or holders[account_id].login_rate < 1.5
    for account_id in tagged["shopping_festival"]:
        on_day = [e for e in ds.of(account_id) if e["type"] == "transaction" and _at(e).date() == festival]
        assert len(on_day) >= 15
        assert all(Decimal(e["amount"]) <= 20_000 for e in on_day)
    for account_id in tagged["salary_day"]:
        payroll = [e for e in ds.of(account_id) if e.get("channel") == "payroll"]
        big = max(payroll, key=lambda e: Decimal(e["amount"]))
        assert Decimal(big["amount"]) >= 25_000
        same_day = [
            e for e in ds.of(account_id) if e["type"] == "transaction" and _at(e).date() == _at(big).date()
        ]
        assert len(same_day) >= 9
    for account_id in tagged["new_phone"]:
        binds = [e for e in ds.of(account_id) if e["type"] == "device_binding" and e["action"] == "bind"]
        assert len(binds) == 1
        later = [e for e in ds.of(account_id) if e["type"] == "login" and _at(e) > _at(binds[0])]
        assert later
        assert later[0]["device_id"] == binds[0]["device_id"]
        assert all(e["geo"]["country"] == "CN" for e in later)


# -- identities -----------------------------------------------------------------------------------


def test_holder_identifiers_are_valid(ds: Dataset) -> None:
    for account in ds.accounts:
        holder = account["holder"]
        assert ric.validate(holder["resident_id"]) == holder["resident_id"]
        assert identity.resident_id(holder["resident_id"]) == holder["resident_id"]
        number = phonenumbers.parse(holder["phone"], "CN")
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) == "CN"
        assert identity.phone(holder["phone"]) == holder["phone"]
        assert holder["bank_cards"]
        for card in holder["bank_cards"]:
            assert luhn.is_valid(card)
            assert identity.bank_card(card) == card
        assert 2 <= len(holder["name"]) <= 4
        assert all("\u4e00" <= ch <= "\u9fff" for ch in holder["name"])
        assert account["kyc_level"] in {"none", "basic", "full"}
        assert 0 <= account["vip_tier"] <= 9
        assert account["language"] in {"zh-CN", "en"}
    for row in ds.blocklist:
        validate = {"resident_id": ric.is_valid, "phone": identity.phone, "bank_card": luhn.is_valid}[
            row["kind"]
        ]
        assert validate(row["value"])


def test_holder_identifiers_never_appear_in_events(ds: Dataset) -> None:
    text = (ds.dir / "events.jsonl").read_text(encoding="utf-8")
    secret: set[str] = set()
    for account in ds.accounts:
        holder = account["holder"]
        secret |= {
            holder["resident_id"],
            holder["phone"],
            holder["phone"].removeprefix("+86"),
            holder["name"],
        }
        secret |= set(holder["bank_cards"])
    digit_runs = set(re.findall(r"\+?\d{11,19}X?", text))
    assert not digit_runs & secret
    assert not re.search(r"[\u4e00-\u9fff]", text)  # no names (the only CJK text anywhere in a holder)


def test_check_digits_match_the_reference_implementations() -> None:
    rng = random.Random(5)
    for _ in range(500):
        born = date(1970, 1, 1) + timedelta(days=rng.randrange(35 * 365))
        first17 = f"110101{born:%Y%m%d}{rng.randrange(1000):03d}"
        assert ric_check_digit(first17) == ric.calc_check_digit(first17 + "0")
        partial = "".join(str(rng.randrange(10)) for _ in range(rng.randrange(11, 19)))
        assert luhn_check_digit(partial) == luhn.calc_check_digit(partial)
    factory = IdentityFactory(random.Random(1))
    ids = [factory.resident_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(ric.is_valid(i) for i in ids)


# -- ordering -------------------------------------------------------------------------------------


def test_events_arrive_in_time_order_except_the_late_fraction(ds: Dataset) -> None:
    newest = None
    late = 0
    max_delay = timedelta(seconds=CONFIG.max_late_seconds)
    for e in ds.events:
        at = _at(e)
        if newest is not None and at < newest:
            late += 1
            assert newest - at <= max_delay
        else:
            newest = at
    fraction = late / len(ds.events)
    assert 0.5 * CONFIG.late_fraction <= fraction <= 1.5 * CONFIG.late_fraction
    assert late <= ds.summary["events"]["late"]


def test_without_late_arrivals_events_are_sorted(tmp_path: Path) -> None:
    world = World(replace(CONFIG, accounts=60, days=3, late_fraction=0.0))
    times = [_at(e) for chunk in world.stream() for e in chunk]
    assert times == sorted(times)
    assert world.late_events == 0


# -- configuration and layering -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"accounts": 0},
        {"days": 0},
        {"abuse_rate": 1.5},
        {"abuse_rate": 0.6, "lookalike_rate": 0.6},
        {"late_fraction": 0.9},
        {"reporting_threshold": 100},
        {"currency": "cny"},
    ],
)
def test_bad_configurations_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(SimConfigError):
        replace(CONFIG, **bad)


def test_the_simulator_imports_only_the_domain() -> None:
    package = Path(thawline.sim.__file__).parent
    forbidden = ("thawline.services", "thawline.adapters", "thawline.api", "thawline.cli")
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
