"""The features and the default ruleset decide exactly as they did before the speed work (issue #4).

``test_features_golden.json.gz`` holds a small simulated world (``thawline simulate --seed 11
--accounts 120 --days 9 --abuse-rate 0.2 --lookalike-rate 0.2 --late-fraction 0.03``: every abuse
scenario, look-alikes and late events) and what the engine made of it before ``observe`` and the rule
evaluation were optimised: for each event, the rules that fire with the values they read (dynamic and
fixed thresholds), and per account a digest of every feature value (type included) of every event.
Faster code must reproduce all of it — the plain module and, where it is built, the compiled one
(``tools/build_accel.py``) alike. Regenerate only for an intended change of behaviour:
``python -m tests.unit.test_features_golden``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from thawline.domain import features as active
from thawline.domain.events import Event
from thawline.domain.rules import Ruleset
from thawline.services.engine import default_ip_ranges, default_ruleset_text

GOLDEN = Path(__file__).with_name("test_features_golden.json.gz")
EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def load_golden() -> dict[str, Any]:
    """The stored world (events, accounts, blocklist) and the expected outcomes."""
    doc: dict[str, Any] = orjson.loads(gzip.decompress(GOLDEN.read_bytes()))
    return doc


def _kyc(account_id: str) -> str:
    """Every seventh account without KYC, so that the KYC rule has something to see."""
    return "none" if int(account_id.rsplit("_", 1)[1]) % 7 == 0 else "full"


def plain_module() -> ModuleType:
    """``features.py`` loaded as plain Python under another name (never swapped for the compiled build)."""
    name = "thawline_features_plain"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, active.__file__)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(params=["active", "plain"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The features module as the engine uses it (compiled where built), and the plain one."""
    if request.param == "plain":
        return plain_module()
    return active


def test_the_plain_module_is_plain() -> None:
    plain = plain_module()
    assert not plain.ACCELERATED
    assert plain.AccountState.__module__ == "thawline_features_plain"


def evaluate_world(world: dict[str, Any], impl: ModuleType = active) -> dict[str, Any]:
    """Run every event through features and the default ruleset, in file order, one state per account."""
    events = EVENTS.validate_python(world["events"])
    listed = set(world["blacklisted"])
    rules = Ruleset.from_yaml(default_ruleset_text())
    AccountState = impl.AccountState  # noqa: N806 - the class of the implementation under test
    ranges, thresholds = default_ip_ranges(), impl.Thresholds()
    states: dict[str, Any] = {}
    digests: dict[str, Any] = {}
    hits: dict[str, list[Any]] = {}
    static: dict[str, list[str]] = {}
    for e in events:
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level=_kyc(e.account_id))
            digests[e.account_id] = hashlib.sha256()
        features = st.observe(e, ranges, thresholds)
        features["blacklisted"] = e.account_id in listed
        fired = rules.evaluate(features)
        if fired:
            hits[e.id] = [[h.rule.id, h.values] for h in fired]
        fixed = [h.rule.id for h in rules.evaluate(features, static=True)]
        if fixed:
            static[e.id] = fixed
        digests[e.account_id].update(orjson.dumps(features.complete(), option=orjson.OPT_SORT_KEYS) + b"\n")
    # Through JSON and back, so that the comparison sees what the stored file can hold.
    out: dict[str, Any] = orjson.loads(
        orjson.dumps(
            {
                "hits": hits,
                "static": static,
                "features": {a: d.hexdigest() for a, d in sorted(digests.items())},
            }
        )
    )
    return out


def test_every_event_fires_the_same_rules_with_the_same_values_as_before(impl: ModuleType) -> None:
    golden = load_golden()
    got = evaluate_world(golden, impl)
    want = golden["expected"]
    assert len(want["hits"]) > 100  # the world exercises the rules (checked, not assumed)
    assert {r for hs in want["hits"].values() for r, _v in hs} >= {
        "card_testing", "amount_spike", "structuring", "blacklisted_identity", "pass_through",
        "login_new_device_odd_hour", "kyc_volume",
    }  # fmt: skip
    for event_id, expected in want["hits"].items():
        assert got["hits"].get(event_id) == expected, event_id
    assert got["hits"].keys() == want["hits"].keys()
    assert got["static"] == want["static"]


def test_every_feature_value_of_every_event_is_unchanged(impl: ModuleType) -> None:
    golden = load_golden()
    got = evaluate_world(golden, impl)["features"]
    changed = sorted(a for a, d in golden["expected"]["features"].items() if got.get(a) != d)
    assert not changed, f"feature values differ for accounts {changed[:10]}"
    assert got.keys() == golden["expected"]["features"].keys()


if __name__ == "__main__":  # regenerate the expected part (only for an intended change of behaviour)
    doc = load_golden()
    doc["expected"] = evaluate_world(doc)
    GOLDEN.write_bytes(gzip.compress(orjson.dumps(doc), compresslevel=9, mtime=0))
