"""Appeals over HTTP: upload by content, the checklist, and a 422 that lists what is missing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_api_accounts import ACCOUNT, FREEZE
from tests.files import pdf, png
from thawline.services.runtime import Runtime


@pytest.fixture
def client(client_with: ClientFactory) -> TestClient:
    """A client whose key has the scopes these tests need."""
    return client_with("accounts:write", "freezes:write", "appeals:write")


def test_an_appeal_from_draft_to_submitted(client: TestClient) -> None:
    client.post("/v1/accounts", json=ACCOUNT)
    freeze_id = client.post("/v1/accounts/acc_42/freezes", json=FREEZE).json()["id"]
    opened = client.post(
        f"/v1/freezes/{freeze_id}/appeals",
        json={"explanation": "Payroll day.", "contact": {"channel": "phone", "value": "13800138000"}},
    )
    assert opened.status_code == 201, opened.text
    appeal_id = opened.json()["id"]
    retried = client.post(
        f"/v1/freezes/{freeze_id}/appeals",
        json={"explanation": "Payroll day.", "contact": {"channel": "phone", "value": "13800138000"}},
    )
    assert (retried.status_code, retried.json()["id"]) == (200, appeal_id)
    checklist = client.get(f"/v1/appeals/{appeal_id}/completeness?lang=zh-CN").json()
    assert checklist["flagged_transactions"] == ["tx_9001"]
    assert [m["message"] for m in checklist["missing"]] == [
        "缺少材料：签名的情况说明",
        "缺少以下交易的交易凭证：tx_9001",
    ]
    assert checklist["guidance"][0].startswith("请使用常用")

    early = client.post(f"/v1/appeals/{appeal_id}/submit")
    assert early.status_code == 422
    assert early.headers["content-type"] == "application/problem+json"
    assert [e["code"] for e in early.json()["errors"]] == ["material_missing", "voucher_missing"]

    fake = client.put(
        f"/v1/appeals/{appeal_id}/materials?kind=explanation_letter", content=b"MZ\x90\x00binary"
    )
    assert fake.status_code == 422
    assert fake.json()["errors"][0]["field"] == "file"
    letter = client.put(f"/v1/appeals/{appeal_id}/materials?kind=explanation_letter", content=pdf())
    assert letter.status_code == 201, letter.text
    assert letter.json()["media_type"] == "application/pdf"
    voucher = client.put(
        f"/v1/appeals/{appeal_id}/materials?kind=transaction_voucher&transaction_ids=tx_9001", content=png()
    )
    assert voucher.json()["transaction_ids"] == ["tx_9001"]

    submitted = client.post(f"/v1/appeals/{appeal_id}/submit")
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["status"] == "submitted"
    assert body["first_response_due"] is not None
    assert len(body["materials"]) == 2
    assert client.post(f"/v1/appeals/{appeal_id}/submit").status_code == 409
    assert client.get("/v1/accounts/acc_42/expedite-quota").json()["remaining"] == 0  # not a VIP
    assert client.post(f"/v1/appeals/{appeal_id}/expedite").status_code == 409


def test_uploads_over_the_limit_are_refused_before_they_are_read(
    client: TestClient, runtime: Runtime
) -> None:
    client.post("/v1/accounts", json=ACCOUNT)
    freeze_id = client.post("/v1/accounts/acc_42/freezes", json=FREEZE).json()["id"]
    appeal_id = client.post(
        f"/v1/freezes/{freeze_id}/appeals", json={"contact": {"channel": "in_site"}}
    ).json()["id"]
    too_big = b"%PDF-1.4\n" + b"0" * runtime.settings.max_upload_bytes
    response = client.put(f"/v1/appeals/{appeal_id}/materials?kind=bank_statement", content=too_big)
    assert response.status_code == 422
    assert "limit" in response.json()["detail"]
