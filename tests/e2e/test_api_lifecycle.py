"""The whole freeze lifecycle over HTTP: freeze, appeal, review, second verification, probation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from tests.files import pdf, png
from thawline.adapters import face
from thawline.adapters.sms import LocalSmsOutbox
from thawline.api.app import create_app
from thawline.domain.clock import FakeClock
from thawline.services import scheduler
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

PROBLEM = "application/problem+json"
PHONE = "13800138000"
ACCOUNT: dict[str, Any] = {
    "id": "acc_7",
    "holder": {"name": "李雷", "phone": "+86 138 0013 8000"},
    "kyc_level": "basic",
    "language": "en",
}
FREEZE: dict[str, Any] = {
    "restriction": {"scope": "full"},
    "category": "high_frequency",
    "reason_codes": ["HF_10MIN"],
    "source": "rule",
    "source_ref": "high_frequency",
    "rule_version": 3,
    "legal_basis": "Merchant agreement §7.2",
    "internal_reason": "42 card payments in 10 minutes",
    "holder_reason": "Unusually many payments in a short time",
    "transactions": [
        {
            "id": "tx_1",
            "amount": "88.50",
            "currency": "CNY",
            "occurred_at": "2025-12-31T10:00:00Z",
            "order_ref": "20251231-0001",
        }
    ],
}
VOUCHER = {
    "kind": "transaction_voucher",
    "transaction_ids": "tx_1",
    "order_ref": "20251231-0001",
    "amount": "88.50",
    "occurred_at": "2025-12-31T10:03:00Z",
}


def pay(amount: str, account_id: str = "acc_7") -> dict[str, str]:
    """An authorisation request for a CNY card payment."""
    return {
        "account_id": account_id,
        "direction": "debit",
        "amount": amount,
        "currency": "CNY",
        "channel": "card",
    }


def key_id(client: TestClient) -> str:
    """The id of the API key a client presents (``tlk_<id>.<secret>``)."""
    return str(client.headers["Authorization"]).split("_", 1)[1].split(".")[0]


def log_size(runtime: Runtime) -> int:
    """How many entries the operation log holds."""
    with UnitOfWork(runtime, read_only=True) as uow:
        return uow.oplog.count()


def actions(runtime: Runtime, action: str) -> int:
    """How many log entries record ``action``."""
    with UnitOfWork(runtime, read_only=True) as uow:
        return len(list(uow.oplog.entries(action=action)))


def last_code(runtime: Runtime, account_id: str = "acc_7") -> str:
    """The six digits of the last SMS the holder received."""
    outbox = runtime.sms
    assert isinstance(outbox, LocalSmsOutbox)
    found = re.search(r"\b(\d{6})\b", outbox.messages(account_id)[-1].text)
    assert found is not None
    return found.group(1)


def face_callback(
    runtime: Runtime, session_id: str, *, passed: bool = True, key: bytes | None = None, age: int = 0
) -> tuple[bytes, dict[str, str]]:
    """A provider's signed callback (``age`` seconds old)."""
    return face.callback_request(
        runtime.face_callback_key if key is None else key,
        session_id=session_id,
        passed=passed,
        score=0.97 if passed else 0.12,
        timestamp=int(runtime.clock.now().timestamp()) - age,
        provider_ref="local-1",
    )


def open_and_submit(client: TestClient, freeze_id: str, uploads: list[dict[str, str]]) -> str:
    """Open an appeal against ``freeze_id``, upload materials (query params each), submit; the appeal id."""
    opened = client.post(
        f"/v1/freezes/{freeze_id}/appeals",
        json={"explanation": "Those were my shop's orders.", "contact": {"channel": "phone", "value": PHONE}},
    )
    assert opened.status_code == 201, opened.text
    appeal_id: str = opened.json()["id"]
    for params in uploads:
        content = png() if params["kind"] == "transaction_voucher" else pdf()
        uploaded = client.put(f"/v1/appeals/{appeal_id}/materials", params=params, content=content)
        assert uploaded.status_code == 201, uploaded.text
    assert client.get(f"/v1/appeals/{appeal_id}/completeness").json()["complete"] is True
    submitted = client.post(f"/v1/appeals/{appeal_id}/submit")
    assert submitted.status_code == 200, submitted.text
    return appeal_id


@pytest.fixture
def integrator(client_with: ClientFactory) -> TestClient:
    """The integrator: registers, freezes, appeals on the holder's behalf and asks for authorisation."""
    return client_with("accounts:write", "accounts:read", "freezes:write", "appeals:write", "authz:check")


@pytest.fixture
def reviewer(client_with: ClientFactory) -> TestClient:
    """A reviewer."""
    return client_with("reviews:write")


@pytest.fixture
def provider(runtime: Runtime) -> Iterator[TestClient]:
    """The face provider: no API key at all."""
    with TestClient(create_app(runtime, background=False)) as c:
        yield c


def test_the_whole_lifecycle_over_http(
    integrator: TestClient, reviewer: TestClient, provider: TestClient, runtime: Runtime, clock: FakeClock
) -> None:
    # Register, freeze with the flagged transaction's facts.
    assert integrator.post("/v1/accounts", json=ACCOUNT).status_code == 201
    frozen = integrator.post("/v1/accounts/acc_7/freezes", json=FREEZE)
    assert frozen.status_code == 201, frozen.text
    freeze_id = frozen.json()["id"]
    account = integrator.get("/v1/accounts/acc_7").json()
    assert (account["status"], account["probation_until"]) == ("frozen", None)
    assert integrator.post("/v1/authorize", json=pay("10")).json()["code"] == "frozen"

    # The holder appeals with an explanation and a voucher that declares what it shows.
    appeal_id = open_and_submit(integrator, freeze_id, [{"kind": "explanation_letter"}, VOUCHER])

    # The queue shows the case with the machine's recommendation.
    queue = reviewer.get("/v1/review/queue").json()
    assert [i["appeal_id"] for i in queue] == [appeal_id]
    item = queue[0]
    assert item["machine_recommendation"] == "approve"
    assert (item["category"], item["high_severity"], item["status"]) == ("high_frequency", False, "submitted")
    assert (item["assignee"], item["breached"], item["expedited"]) == (None, False, False)
    assert item["first_response_due"] is not None
    assert reviewer.get("/v1/review/queue?mine=true").json() == []
    machine = reviewer.get(f"/v1/appeals/{appeal_id}/reviews").json()
    assert [(r["kind"], r["decision"]) for r in machine] == [("machine", "approve")]
    assert float(machine[0]["confidence"]) > 0.5
    voucher_ok = {"check": "voucher", "outcome": "ok", "detail": "tx_1: matches the recorded transaction"}
    assert voucher_ok in machine[0]["findings"]

    # A reviewer claims and approves.
    me = f"reviewer:{key_id(reviewer)}"
    claimed = reviewer.post(f"/v1/appeals/{appeal_id}/claim")
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["status"], claimed.json()["assignee"]) == ("in_review", me)
    assert claimed.json()["first_responded_at"] is not None
    assert [i["appeal_id"] for i in reviewer.get("/v1/review/queue?mine=true").json()] == [appeal_id]
    assert reviewer.get("/v1/review/queue?unassigned=true").json() == []
    approved = reviewer.post(
        f"/v1/appeals/{appeal_id}/decision",
        json={"decision": "approve", "reason_codes": ["evidence_sufficient"], "note": "Orders match."},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_at"] is not None
    assert approved.json()["assignee"] is None
    assert reviewer.get("/v1/review/queue").json() == []
    opinions = reviewer.get(f"/v1/appeals/{appeal_id}/reviews").json()
    assert [(r["kind"], r["reviewer"], r["agrees_with_machine"]) for r in opinions] == [
        ("machine", "system:pre_review", None),
        ("human", me, True),
    ]

    # Second verification: the freeze still binds until it is passed.
    pending = integrator.get(f"/v1/appeals/{appeal_id}/verification").json()
    assert (pending["status"], pending["required"]) == ("pending", ["sms_code", "face"])
    assert integrator.post("/v1/authorize", json=pay("10")).json()["code"] == "frozen"

    sent = integrator.post(f"/v1/appeals/{appeal_id}/verification/sms")
    assert sent.status_code == 200, sent.text
    assert sent.json()["attempts_left"] == 5
    code = last_code(runtime)
    throttled = integrator.post(f"/v1/appeals/{appeal_id}/verification/sms")
    assert throttled.status_code == 409
    assert throttled.headers["content-type"] == PROBLEM
    assert "try again in 60 s" in throttled.json()["detail"]
    assert throttled.headers["retry-after"] == "60"

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    before = log_size(runtime)
    refused = integrator.post(f"/v1/appeals/{appeal_id}/verification/sms/check", json={"code": wrong})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["errors"] == [
        {"field": "code", "message": "the code is wrong; 4 attempt(s) left", "attempts_left": 4}
    ]
    assert log_size(runtime) == before + 1  # the failed attempt is committed and recorded
    assert actions(runtime, "verification.code_rejected") == 1
    assert integrator.get(f"/v1/appeals/{appeal_id}/verification").json()["attempts_left"] == 4

    passed = integrator.post(f"/v1/appeals/{appeal_id}/verification/sms/check", json={"code": code})
    assert passed.status_code == 200, passed.text
    assert (passed.json()["sms_verified"], passed.json()["status"]) == (True, "pending")

    started = integrator.post(f"/v1/appeals/{appeal_id}/verification/face")
    assert started.status_code == 200, started.text
    session_id = started.json()["session_id"]
    assert started.json()["url"].endswith(session_id)
    body, headers = face_callback(runtime, session_id)
    result = provider.post("/v1/callbacks/face", content=body, headers=headers)
    assert result.status_code == 200, result.text
    assert result.json() == {"session_id": session_id, "status": "completed", "face_verified": True}

    # A provider retry is harmless.
    before = log_size(runtime)
    again = provider.post("/v1/callbacks/face", content=body, headers=headers)
    assert (again.status_code, again.json()["status"]) == (200, "completed")
    assert log_size(runtime) == before

    # Released into probation: large payments wait, small ones go through.
    account = integrator.get("/v1/accounts/acc_7").json()
    assert account["status"] == "active"
    assert account["freezes"][0]["status"] == "released"
    assert account["probation_until"] is not None
    large = integrator.post("/v1/authorize", json=pay("60000")).json()
    assert (large["allowed"], large["code"]) == (False, "probation")
    assert integrator.post("/v1/authorize", json=pay("88.50")).json()["allowed"] is True

    clock.advance(timedelta(hours=25))
    assert scheduler.run_due(runtime)["probations_ended"] == 1
    assert integrator.get("/v1/accounts/acc_7").json()["probation_until"] is None
    assert integrator.post("/v1/authorize", json=pay("60000")).json()["allowed"] is True

    steps = [
        "account.frozen",
        "appeal.submitted",
        "appeal.pre_reviewed",
        "appeal.claimed",
        "appeal.approved",
        "verification.started",
        "verification.code_sent",
        "verification.sms_passed",
        "verification.face_started",
        "verification.face_passed",
        "verification.completed",
        "freeze.released",
        "probation.started",
        "probation.ended",
    ]
    assert [actions(runtime, a) for a in steps] == [1] * len(steps)
    report = verify_log(runtime, deep=True)
    assert report.ok, report
