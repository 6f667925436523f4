"""Block- and allow-lists over HTTP (and the CLI): import, list without values, erroneous removal, scopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_cli import thawline

PROBLEM = "application/problem+json"
CSV_HEADERS = {"Content-Type": "text/csv"}
ACCOUNT = {
    "id": "acc_7",
    "holder": {"name": "张三", "phone": "+86 138 0013 8000", "bank_cards": ["4111 1111 1111 1111"]},
}
BLOCKLIST = (
    "kind,value,reason\n"
    "phone,13800138000,fraud ring\n"
    "name,张 三,sanctions list\n"
    "bank_card,4111111111111112,not a card\n"
)


@pytest.fixture
def client(client_with: ClientFactory) -> TestClient:
    """A client whose key manages lists, accounts and freezes."""
    return client_with("lists:write", "accounts:write", "freezes:write")


def _freeze_for(client: TestClient, entry_id: str) -> str:
    body = {
        "restriction": {"scope": "full"},
        "category": "blacklist",
        "reason_codes": ["BLOCKLIST_HIT"],
        "source": "rule",
        "source_ref": "blocklist",
        "rule_version": 1,
        "legal_basis": "AML policy §3",
        "internal_reason": "block-list hit",
        "holder_reason": "Your account matches a restricted list",
        "evidence": [{"kind": "list_entry", "id": entry_id}],
    }
    made = client.post("/v1/accounts/acc_7/freezes", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_import_list_and_remove_as_erroneous(client: TestClient) -> None:
    imported = client.post(
        "/v1/lists/block/import",
        content=BLOCKLIST.encode(),
        headers=CSV_HEADERS,
        params={"source": "feed.csv"},
    )
    assert imported.status_code == 200, imported.text
    body = imported.json()
    assert (body["version"], body["imported"], body["rejected"]) == (1, 2, 1)
    assert body["errors"] == [
        {"line": 4, "field": "value", "message": "not a valid bank-card number (12-19 digits, Luhn check)"}
    ]

    listed = client.get("/v1/lists", params={"list_type": "block"})
    assert listed.status_code == 200
    entries = {e["kind"]: e for e in listed.json()}
    assert set(entries) == {"phone", "name"}
    assert entries["name"]["masked_name"] == "张*"
    assert entries["phone"]["masked_name"] is None
    for secret in ("13800138000", "张三", "张 三"):
        assert secret not in listed.text
    assert [e["kind"] for e in client.get("/v1/lists", params={"kind": "phone"}).json()] == ["phone"]
    assert client.get("/v1/lists", params={"list_type": "allow"}).json() == []

    assert client.post("/v1/accounts", json=ACCOUNT).status_code == 201
    phone_entry = entries["phone"]["id"]
    freeze_id = _freeze_for(client, phone_entry)
    removed = client.delete(
        f"/v1/lists/entries/{phone_entry}", params={"erroneous": "true", "reason": "provider withdrew it"}
    )
    assert removed.status_code == 200, removed.text
    out = removed.json()
    assert out["freezes"] == [{"freeze_id": freeze_id, "account_id": "acc_7", "action": "rereview"}]
    assert out["entry"]["active"] is False
    assert out["entry"]["erroneous"] is True
    assert out["version"] == 2
    again = client.delete(f"/v1/lists/entries/{phone_entry}", params={"reason": "again"})
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert client.delete("/v1/lists/entries/le_missing", params={"reason": "x"}).status_code == 404
    every = client.get("/v1/lists", params={"include_removed": "true"}).json()
    assert {e["id"]: e["active"] for e in every}[phone_entry] is False


def test_add_an_entry_to_the_allow_list(client: TestClient) -> None:
    office = {"kind": "ip", "value": "10.0.0.1", "reason": "office"}
    made = client.post("/v1/lists/allow/entries", json=office)
    assert made.status_code == 201, made.text
    assert (made.json()["list_type"], made.json()["kind"]) == ("allow", "ip")
    dup = client.post("/v1/lists/allow/entries", json={"kind": "ip", "value": "10.0.0.1", "reason": "again"})
    assert dup.status_code == 409
    bad = client.post("/v1/lists/allow/entries", json={"kind": "phone", "value": "12345", "reason": "x"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "value"


def test_a_file_with_nothing_valid_is_a_problem_naming_each_line(client: TestClient) -> None:
    response = client.post(
        "/v1/lists/block/import", content=b"phone,12345,x\nnot,enough\n", headers=CSV_HEADERS
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(1, "value"), (2, "line")]
    assert "12345" not in response.text
    assert client.get("/v1/lists").json() == []


def test_bad_bodies_and_list_types_are_problems(client: TestClient) -> None:
    not_utf8 = client.post("/v1/lists/block/import", content=b"\xff\xfe\x00", headers=CSV_HEADERS)
    assert (not_utf8.status_code, not_utf8.headers["content-type"]) == (422, PROBLEM)
    empty = client.post("/v1/lists/block/import", content=b"", headers=CSV_HEADERS)
    assert (empty.status_code, empty.headers["content-type"]) == (422, PROBLEM)
    grey = client.post("/v1/lists/grey/import", content=BLOCKLIST.encode(), headers=CSV_HEADERS)
    assert (grey.status_code, grey.headers["content-type"]) == (422, PROBLEM)


def test_lists_need_the_lists_write_scope(client_with: ClientFactory) -> None:
    reader = client_with("accounts:read", "freezes:write")
    for response in (
        reader.post("/v1/lists/block/import", content=BLOCKLIST.encode(), headers=CSV_HEADERS),
        reader.get("/v1/lists"),
        reader.delete("/v1/lists/entries/le_x", params={"reason": "x"}),
    ):
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM
    anonymous = client_with("lists:write")
    del anonymous.headers["Authorization"]
    assert anonymous.get("/v1/lists").status_code == 401


def test_the_command_line_imports_shows_and_removes(tmp_path: Path) -> None:
    csv_file = tmp_path / "feed.csv"
    csv_file.write_text(BLOCKLIST, encoding="utf-8")
    imported = thawline(tmp_path, "lists", "import", str(csv_file), "--list", "block")
    assert json.loads(imported.stdout)["imported"] == 2
    assert "line 4: value" in imported.stderr
    shown = json.loads(thawline(tmp_path, "lists", "show", "--kind", "name").stdout)
    assert [e["masked_name"] for e in shown["entries"]] == ["张*"]
    entry_id = shown["entries"][0]["id"]
    removed = thawline(tmp_path, "lists", "remove", entry_id, "--erroneous", "--reason", "wrong person")
    assert json.loads(removed.stdout)["entry"]["erroneous"] is True
    (tmp_path / "bad.csv").write_text("phone,1,x\n", encoding="utf-8")
    failed = thawline(tmp_path, "lists", "import", str(tmp_path / "bad.csv"), "--list", "allow", ok=False)
    assert failed.returncode == 1
    assert "line 1: value" in failed.stderr
