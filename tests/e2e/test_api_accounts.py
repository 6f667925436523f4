"""Accounts, freezes and the authorisation check over HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

PROBLEM = "application/problem+json"
ACCOUNT = {
    "id": "acc_42",
    "holder": {
        "name": "王芳",
        "resident_id": "11010519491231002X",
        "phone": "+86 138 0013 8000",
        "bank_cards": ["4111-1111-1111-1111"],
    },
    "kyc_level": "basic",
    "language": "en",
}
FREEZE = {
    "restriction": {"scope": "debit"},
    "category": "high_frequency",
    "reason_codes": ["HF_10MIN"],
    "source": "rule",
    "source_ref": "high_frequency",
    "rule_version": 3,
    "legal_basis": "Merchant agreement §7.2",
    "internal_reason": "42 card payments in 10 minutes",
    "holder_reason": "Unusually many payments in a short time",
    "evidence": [{"kind": "transaction", "id": "tx_9001"}],
}
PAY = {"account_id": "acc_42", "direction": "debit", "amount": "88.50", "currency": "CNY", "channel": "card"}


@pytest.fixture
def client(client_with: ClientFactory) -> TestClient:
    """A client whose key has the scopes these tests need."""
    return client_with("accounts:write", "accounts:read", "freezes:write", "authz:check")


def test_register_freeze_check_release_check(client: TestClient) -> None:
    created = client.post("/v1/accounts", json=ACCOUNT)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active"
    assert "resident_id" not in created.text
    assert client.post("/v1/accounts", json=ACCOUNT).status_code == 200  # a retry
    assert client.post("/v1/authorize", json=PAY).json() == {
        "allowed": True,
        "code": "allowed",
        "freeze_id": None,
        "category": None,
        "holder_reason": None,
    }
    frozen = client.post("/v1/accounts/acc_42/freezes", json=FREEZE, headers={"Idempotency-Key": "k-1"})
    assert frozen.status_code == 201, frozen.text
    freeze_id = frozen.json()["id"]
    again = client.post("/v1/accounts/acc_42/freezes", json=FREEZE, headers={"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()["id"]) == (200, freeze_id)
    denied = client.post("/v1/authorize", json=PAY).json()
    assert denied["allowed"] is False
    assert denied["freeze_id"] == freeze_id
    assert denied["holder_reason"] == "Unusually many payments in a short time"
    assert client.get("/v1/accounts/acc_42").json()["status"] == "restricted"
    released = client.post(f"/v1/freezes/{freeze_id}/release", json={"reason": "payroll run, documented"})
    assert released.json()["status"] == "released"
    assert client.post("/v1/authorize", json=PAY).json()["allowed"] is True
    twice = client.post(f"/v1/freezes/{freeze_id}/release", json={"reason": "again"})
    assert twice.status_code == 409
    assert twice.headers["content-type"] == PROBLEM


def test_bad_input_names_the_field_and_changes_nothing(client: TestClient, runtime: Runtime) -> None:
    bad = dict(ACCOUNT, holder=dict(ACCOUNT["holder"], resident_id="110105194912310021"))  # type: ignore[arg-type]
    response = client.post("/v1/accounts", json=bad)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "holder.resident_id"
    with UnitOfWork(runtime, read_only=True) as uow:
        assert list(uow.oplog.entries(action="account.registered")) == []
    client.post("/v1/accounts", json=ACCOUNT)
    no_channel = dict(FREEZE, restriction={"scope": "channel"})
    response = client.post("/v1/accounts/acc_42/freezes", json=no_channel)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "restriction.channel"
    amount = client.post("/v1/authorize", json=dict(PAY, amount="-1"))
    assert amount.status_code == 422
    assert amount.json()["errors"][0]["field"] == "amount"


def test_unknown_accounts_are_404_not_allowed(client: TestClient) -> None:
    response = client.post("/v1/authorize", json=dict(PAY, account_id="acc_unknown"))
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_the_timeline_is_plain_for_the_holder_and_complete_for_staff(client: TestClient) -> None:
    client.post("/v1/accounts", json=ACCOUNT)
    aml = dict(FREEZE, category="aml", internal_reason="structuring pattern across 3 accounts")
    freeze_id = client.post("/v1/accounts/acc_42/freezes", json=aml).json()["id"]
    holder = client.get("/v1/accounts/acc_42/timeline").json()
    assert [i["action"] for i in holder] == ["account.registered", "account.frozen"]
    assert holder[1]["summary"].startswith("Account restricted: Your account is restricted")
    assert "structuring" not in str(holder)
    assert "aml" not in str(holder)
    assert all(i["entry"] is None for i in holder)
    zh = client.get("/v1/accounts/acc_42/timeline?lang=zh-CN").json()
    assert zh[1]["summary"].startswith("账户受限：")
    staff = client.get("/v1/accounts/acc_42/timeline?audience=staff").json()
    assert staff[1]["freeze_id"] == freeze_id
    assert staff[1]["entry"]["details"]["category"] == "aml"
    assert "neutral" in staff[1]["summary"]
