"""Event intake over HTTP: per-item errors, replays, decisions, diagnosis, rulesets, suppression."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.e2e.conftest import ClientFactory
from thawline.services.runtime import Runtime

ACCOUNT = {"id": "acc_e", "holder": {"name": "王芳", "phone": "13900139000"}, "kyc_level": "full"}
PROBLEM = "application/problem+json"


def _burst(runtime: Runtime, n: int, prefix: str = "e") -> list[dict[str, Any]]:
    t0 = runtime.clock.now()
    return [
        {
            "id": f"{prefix}{i}",
            "type": "transaction",
            "account_id": "acc_e",
            "occurred_at": (t0 + timedelta(seconds=15 * i)).isoformat(),
            "transaction_id": f"t{prefix}{i}",
            "amount": "2.00",
            "currency": "CNY",
            "direction": "debit",
            "order_ref": f"O-{i}",
        }
        for i in range(n)
    ]


def test_a_batch_with_bad_items_keeps_the_good_ones_and_says_why(
    client_with: ClientFactory, runtime: Runtime
) -> None:
    c = client_with("accounts:write", "accounts:read", "events:write", "authz:check")
    assert c.post("/v1/accounts", json=ACCOUNT).status_code == 201
    batch = _burst(runtime, 9)
    batch.insert(
        3, {"id": "x1", "type": "transaction", "account_id": "acc_e", "occurred_at": "2026-01-01T00:00:00Z"}
    )
    batch.insert(5, {"id": "x2", "type": "teleport", "account_id": "acc_e"})
    batch.append({**batch[0], "id": "x3", "account_id": "acc_nobody"})
    answer = c.post("/v1/events", json={"events": batch})
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert [(r["index"], r["id"], r["field"]) for r in body["rejected"]] == [
        (3, "x1", "transaction_id"),
        (5, "x2", "type"),
        (11, "x3", "account_id"),
    ]
    assert len(body["accepted"]) == 9
    frozen = [a for a in body["accepted"] if a["outcome"] == "freeze"]
    assert frozen[0]["rules"] == ["card_testing"]
    assert (
        c.post(
            "/v1/authorize",
            json={"account_id": "acc_e", "direction": "debit", "amount": "1", "currency": "CNY"},
        ).json()["code"]
        == "frozen"
    )
    replay = c.post("/v1/events", json={"events": batch})
    assert (replay.status_code, len(replay.json()["duplicates"]), replay.json()["accepted"]) == (207, 9, [])
    why = c.get(f"/v1/events/{frozen[0]['id']}/diagnosis").json()
    assert why["reasons"][0]["rule"] == "card_testing"
    assert why["reasons"][0]["values"] == {"event_type": "transaction", "small_txn_count_10m": 8}
    log = c.get("/v1/accounts/acc_e/events", params={"limit": 3}).json()
    assert [e["id"] for e in log] == ["e0", "e1", "e2"]


def test_nothing_valid_is_a_422_naming_the_field(client_with: ClientFactory) -> None:
    c = client_with("events:write")
    answer = c.post("/v1/events", json={"events": [{"id": "x", "type": "login"}]})
    assert (answer.status_code, answer.headers["content-type"]) == (422, PROBLEM)
    assert answer.json()["errors"][0]["field"] == "events"
    too_many = c.post("/v1/events", json={"events": [{}] * 10_001})
    assert too_many.status_code == 422
    assert client_with("accounts:read").post("/v1/events", json={"events": []}).status_code == 403


def test_a_new_ruleset_version_and_a_suppression(client_with: ClientFactory, runtime: Runtime) -> None:
    c = client_with("accounts:write", "accounts:read", "events:write", "rules:write")
    assert c.post("/v1/accounts", json=ACCOUNT).status_code == 201
    current = c.get("/v1/rules").json()
    assert current["version"] == 1
    bad = c.post("/v1/rules", json={"yaml": "rules: [{id: x}]"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "ruleset")
    until = (runtime.clock.now() + timedelta(days=7)).isoformat()
    suppressed = c.post(
        "/v1/accounts/acc_e/suppressions",
        json={"rule_id": "card_testing", "until": until, "reason": "test merchant"},
    )
    assert suppressed.status_code == 201
    body = c.post("/v1/events", json={"events": _burst(runtime, 9, "s")}).json()
    assert {a["outcome"] for a in body["accepted"]} == {"allow"}  # nothing was done …
    assert all(a["freeze_id"] is None for a in body["accepted"])
    fired = [a for a in body["accepted"] if a["rules"]]
    why = c.get(f"/v1/events/{fired[0]['id']}/diagnosis").json()  # … though the rule fired
    assert (why["outcome"], why["reasons"][0]["applied"]) == ("allow", "suppressed")
