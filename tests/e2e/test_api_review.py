"""Review over HTTP: four eyes, conflicts, illegal moves, signed callbacks, self-service KYC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_api_lifecycle import (
    ACCOUNT,
    FREEZE,
    PROBLEM,
    VOUCHER,
    actions,
    face_callback,
    key_id,
    last_code,
    log_size,
    open_and_submit,
    pay,
)
from thawline.adapters import face
from thawline.api.app import create_app
from thawline.domain.clock import FakeClock
from thawline.services.runtime import Runtime

APPROVE = {"decision": "approve", "reason_codes": ["evidence_sufficient"], "note": "ok"}
AML = dict(
    FREEZE,
    category="aml",
    reason_codes=["AML_STRUCT"],
    source="reviewer",
    source_ref="compliance-7",
    rule_version=None,
    internal_reason="structuring pattern across 3 accounts",
    transactions=[],
)
AML_MATERIALS = [{"kind": "id_document"}, {"kind": "source_of_funds"}, {"kind": "bank_statement"}]


@pytest.fixture
def staff(client_with: ClientFactory) -> TestClient:
    """An integrator key that also reviews: it creates freezes, so it may not review them."""
    return client_with(
        "accounts:write", "accounts:read", "freezes:write", "appeals:write", "authz:check", "reviews:write"
    )


@pytest.fixture
def lead(client_with: ClientFactory) -> TestClient:
    """A review lead (and nothing else)."""
    return client_with("reviews:lead")


@pytest.fixture
def provider(runtime: Runtime) -> Iterator[TestClient]:
    """The face provider: no API key."""
    with TestClient(create_app(runtime, background=False)) as c:
        yield c


def _frozen(client: TestClient, freeze: dict[str, Any] = FREEZE) -> str:
    assert client.post("/v1/accounts", json=ACCOUNT).status_code == 201
    made = client.post("/v1/accounts/acc_7/freezes", json=freeze)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _appealed(client: TestClient) -> str:
    return open_and_submit(client, _frozen(client), [{"kind": "explanation_letter"}, VOUCHER])


def _approved(client: TestClient, reviewer: TestClient) -> str:
    appeal_id = _appealed(client)
    assert reviewer.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    assert reviewer.post(f"/v1/appeals/{appeal_id}/decision", json=APPROVE).status_code == 200
    return appeal_id


def test_a_high_severity_release_needs_two_different_reviewers(
    staff: TestClient, lead: TestClient, client_with: ClientFactory, runtime: Runtime
) -> None:
    first, second, linked = (client_with("reviews:write") for _ in range(3))
    appeal_id = open_and_submit(staff, _frozen(staff, AML), AML_MATERIALS)
    item = first.get("/v1/review/queue").json()[0]
    assert (item["category"], item["high_severity"]) == ("aml", True)
    assert item["machine_recommendation"] == "approve"

    # Whoever froze the account may not review it.
    own = staff.post(f"/v1/appeals/{appeal_id}/claim")
    assert own.status_code == 409
    assert own.headers["content-type"] == PROBLEM
    assert "created the freeze" in own.json()["detail"]

    # A reviewer linked to the account is barred.
    conflict = {"reviewer": f"reviewer:{key_id(linked)}", "account_id": "acc_7", "note": "cousin"}
    assert first.post("/v1/reviewers/conflicts", json=conflict).status_code == 403  # leads only
    assert lead.post("/v1/reviewers/conflicts", json=conflict).status_code == 201
    assert lead.post("/v1/reviewers/conflicts", json=conflict).status_code == 200  # already known
    barred = linked.post(f"/v1/appeals/{appeal_id}/claim")
    assert barred.status_code == 403
    assert barred.headers["content-type"] == PROBLEM

    # The first approval waits for a second reviewer.
    assert first.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    once = first.post(f"/v1/appeals/{appeal_id}/decision", json=APPROVE)
    assert once.status_code == 200, once.text
    assert (once.json()["status"], once.json()["first_approver"]) == (
        "second_approval",
        f"reviewer:{key_id(first)}",
    )
    assert staff.get(f"/v1/appeals/{appeal_id}/verification").status_code == 404
    assert first.get("/v1/review/queue").json()[0]["status"] == "second_approval"

    # The same reviewer cannot give the second approval, not even when a lead assigns it.
    twice = first.post(f"/v1/appeals/{appeal_id}/claim")
    assert twice.status_code == 409
    assert "four eyes" in twice.json()["detail"]
    assigned = lead.post(f"/v1/appeals/{appeal_id}/assign", json={"reviewer": f"reviewer:{key_id(first)}"})
    assert assigned.status_code == 409

    assert second.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    done = second.post(f"/v1/appeals/{appeal_id}/decision", json=APPROVE)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "approved"
    assert staff.get(f"/v1/appeals/{appeal_id}/verification").json()["status"] == "pending"
    opinions = second.get(f"/v1/appeals/{appeal_id}/reviews").json()
    assert [(r["kind"], r["decision"]) for r in opinions] == [
        ("machine", "approve"),
        ("human", "approve"),
        ("human", "approve"),
    ]
    assert actions(runtime, "appeal.first_approval") == 1
    assert actions(runtime, "reviewer.conflict_declared") == 1


def test_illegal_moves_are_409_problems_and_record_nothing(
    staff: TestClient, client_with: ClientFactory, runtime: Runtime
) -> None:
    reviewer = client_with("reviews:write")
    appeal_id = _appealed(staff)
    before = log_size(runtime)
    unclaimed = reviewer.post(f"/v1/appeals/{appeal_id}/decision", json=APPROVE)
    assert unclaimed.status_code == 409
    assert unclaimed.headers["content-type"] == PROBLEM
    assert "claim" in unclaimed.json()["detail"]
    assert reviewer.post(f"/v1/appeals/{appeal_id}/unclaim").status_code == 409
    assert log_size(runtime) == before

    assert staff.post(f"/v1/appeals/{appeal_id}/withdraw").status_code == 200
    before = log_size(runtime)
    for move in ("claim", "decision"):
        response = reviewer.post(f"/v1/appeals/{appeal_id}/{move}", json=APPROVE)
        assert response.status_code == 409, move
        assert response.headers["content-type"] == PROBLEM
        assert "withdrawn" in response.json()["detail"]
    assert log_size(runtime) == before
    assert reviewer.get("/v1/review/queue").json() == []


def test_decisions_need_known_reason_codes(staff: TestClient, client_with: ClientFactory) -> None:
    reviewer = client_with("reviews:write")
    appeal_id = _appealed(staff)
    assert reviewer.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    for codes in (["looks_fine"], ["voucher_mismatch"], []):
        bad = reviewer.post(f"/v1/appeals/{appeal_id}/decision", json=dict(APPROVE, reason_codes=codes))
        assert bad.status_code == 422, codes
        assert bad.headers["content-type"] == PROBLEM
        assert bad.json()["errors"][0]["field"] == "reason_codes"
    unknown = reviewer.post(f"/v1/appeals/{appeal_id}/decision", json=dict(APPROVE, decision="maybe"))
    assert unknown.json()["errors"][0]["field"] == "decision"
    more = reviewer.post(
        f"/v1/appeals/{appeal_id}/decision",
        json={"decision": "needs_more_info", "reason_codes": ["statement_needed"]},
    )
    assert more.json()["status"] == "needs_more_info"


def test_claims_assignments_and_unclaims(
    staff: TestClient, lead: TestClient, client_with: ClientFactory
) -> None:
    ann, bob = client_with("reviews:write"), client_with("reviews:write")
    appeal_id = _appealed(staff)
    to_bob = {"reviewer": f"reviewer:{key_id(bob)}"}
    assert ann.post(f"/v1/appeals/{appeal_id}/assign", json=to_bob).status_code == 403
    assert lead.post(f"/v1/appeals/{appeal_id}/assign", json={"reviewer": "bob"}).status_code == 422
    assigned = lead.post(f"/v1/appeals/{appeal_id}/assign", json=to_bob)
    assert (assigned.json()["assignee"], assigned.json()["status"]) == (to_bob["reviewer"], "in_review")
    assert assigned.json()["first_responded_at"] is None  # an assignment is not a response
    assert [i["appeal_id"] for i in bob.get("/v1/review/queue?mine=true").json()] == [appeal_id]
    assert bob.get("/v1/review/queue?unassigned=true").json() == []
    released = lead.post(f"/v1/appeals/{appeal_id}/unclaim")  # a lead may unclaim anyone's
    assert (released.status_code, released.json()["assignee"]) == (200, None)

    assert ann.post(f"/v1/appeals/{appeal_id}/claim").json()["first_responded_at"] is not None
    assert ann.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200  # a retry
    taken = bob.post(f"/v1/appeals/{appeal_id}/claim")
    assert taken.status_code == 409
    assert bob.post(f"/v1/appeals/{appeal_id}/unclaim").status_code == 409  # not bob's
    back = ann.post(f"/v1/appeals/{appeal_id}/unclaim")
    assert (back.status_code, back.json()["assignee"]) == (200, None)
    assert len(bob.get("/v1/review/queue?unassigned=true").json()) == 1


def test_a_declared_voucher_that_does_not_match_is_flagged_by_the_machine(
    staff: TestClient, client_with: ClientFactory
) -> None:
    reviewer = client_with("reviews:write")
    wrong = dict(VOUCHER, amount="8850.00")
    appeal_id = open_and_submit(staff, _frozen(staff), [{"kind": "explanation_letter"}, wrong])
    assert reviewer.get("/v1/review/queue").json()[0]["machine_recommendation"] == "reject"
    machine = reviewer.get(f"/v1/appeals/{appeal_id}/reviews").json()[0]
    assert machine["reason_codes"] == ["voucher_mismatch"]
    assert any(f["outcome"] == "fail" and "8850.00" in f["detail"] for f in machine["findings"])
    # The reviewer may disagree; the disagreement is kept.
    assert reviewer.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    reviewer.post(f"/v1/appeals/{appeal_id}/decision", json=dict(APPROVE, reason_codes=["false_positive"]))
    assert reviewer.get(f"/v1/appeals/{appeal_id}/reviews").json()[1]["agrees_with_machine"] is False


def test_a_bad_callback_signature_is_refused_and_changes_nothing(
    staff: TestClient, client_with: ClientFactory, provider: TestClient, runtime: Runtime
) -> None:
    appeal_id = _approved(staff, client_with("reviews:write"))
    session_id = staff.post(f"/v1/appeals/{appeal_id}/verification/face").json()["session_id"]
    before = log_size(runtime)
    forged = face_callback(runtime, session_id, key=b"not the provider's key")
    stale = face_callback(runtime, session_id, age=600)
    body, headers = face_callback(runtime, session_id)
    tampered = (body.replace(b'"score":0.97', b'"score":0.99'), headers)
    assert tampered[0] != body
    unsigned = (body, {"Content-Type": "application/json"})
    for content, sent_headers in (forged, stale, tampered, unsigned):
        refused = provider.post("/v1/callbacks/face", content=content, headers=sent_headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == PROBLEM
    assert log_size(runtime) == before
    view = staff.get(f"/v1/appeals/{appeal_id}/verification").json()
    assert (view["face_verified"], view["status"], view["face_session"]) == (False, "pending", session_id)

    # A failed match is recorded; a fresh session can then pass.
    body, headers = face_callback(runtime, session_id, passed=False)
    failed = provider.post("/v1/callbacks/face", content=body, headers=headers)
    assert (failed.status_code, failed.json()["face_verified"]) == (200, False)
    assert actions(runtime, "verification.face_failed") == 1
    again = staff.post(f"/v1/appeals/{appeal_id}/verification/face").json()["session_id"]
    body, headers = face_callback(runtime, again)
    assert provider.post("/v1/callbacks/face", content=body, headers=headers).json()["face_verified"] is True
    assert staff.get("/v1/accounts/acc_7").json()["status"] == "frozen"  # the SMS step is still due


def test_a_signed_but_malformed_callback_names_the_field(
    staff: TestClient, client_with: ClientFactory, provider: TestClient, runtime: Runtime
) -> None:
    appeal_id = _approved(staff, client_with("reviews:write"))
    staff.post(f"/v1/appeals/{appeal_id}/verification/face")
    timestamp = int(runtime.clock.now().timestamp())
    body = b'{"session_id": "fs_x", "passed": "perhaps", "score": 0.5}'
    headers = {
        face.TIMESTAMP_HEADER: str(timestamp),
        face.SIGNATURE_HEADER: face.sign(runtime.face_callback_key, timestamp, body),
    }
    response = provider.post("/v1/callbacks/face", content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "passed"


def test_sms_codes_wear_out_after_five_wrong_tries(
    staff: TestClient, client_with: ClientFactory, runtime: Runtime
) -> None:
    appeal_id = _approved(staff, client_with("reviews:write"))
    check = f"/v1/appeals/{appeal_id}/verification/sms/check"
    assert staff.post(check, json={"code": "123456"}).status_code == 409  # nothing sent yet
    assert staff.post(check, json={"code": "12ab"}).json()["errors"][0]["field"] == "code"
    staff.post(f"/v1/appeals/{appeal_id}/verification/sms")
    code = last_code(runtime)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    left = [staff.post(check, json={"code": wrong}).json()["errors"][0]["attempts_left"] for _ in range(5)]
    assert left == [4, 3, 2, 1, 0]
    spent = staff.post(check, json={"code": code})
    assert spent.status_code == 409
    assert "new one" in spent.json()["detail"]
    assert actions(runtime, "verification.code_rejected") == 5


def test_finishing_kyc_releases_a_kyc_freeze_without_a_reviewer(staff: TestClient, runtime: Runtime) -> None:
    kyc = dict(FREEZE, category="kyc_incomplete", reason_codes=["KYC_MISSING"], transactions=[])
    freeze_id = _frozen(staff, kyc)
    appeal = staff.post(f"/v1/freezes/{freeze_id}/appeals", json={"contact": {"channel": "in_site"}})
    assert appeal.status_code == 409
    assert "finish_kyc" in appeal.json()["detail"]
    partial = staff.post("/v1/accounts/acc_7/kyc", json={"kyc_level": "basic"})
    assert partial.json() == {"account_id": "acc_7", "kyc_level": "basic", "released_freezes": []}
    bad = staff.post("/v1/accounts/acc_7/kyc", json={"kyc_level": "platinum"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "kyc_level")
    done = staff.post("/v1/accounts/acc_7/kyc", json={"kyc_level": "full"})
    assert done.status_code == 200, done.text
    assert done.json()["released_freezes"] == [freeze_id]
    account = staff.get("/v1/accounts/acc_7").json()
    assert (account["status"], account["kyc_level"], account["probation_until"]) == ("active", "full", None)
    assert actions(runtime, "account.kyc_updated") == 1  # "basic" was already the level
    assert staff.post("/v1/accounts/acc_7/kyc", json={"kyc_level": "full"}).json()["released_freezes"] == []


def test_a_rereview_keeps_a_freeze_with_a_new_date_or_releases_it(
    staff: TestClient, client_with: ClientFactory, clock: FakeClock
) -> None:
    reviewer = client_with("reviews:write")
    freeze_id = _frozen(staff)
    kept = reviewer.post(
        f"/v1/freezes/{freeze_id}/rereview",
        json={"keep": True, "next_review_by": "2026-03-01T00:00:00Z", "note": "pattern persists"},
    )
    assert kept.status_code == 200, kept.text
    assert (kept.json()["status"], kept.json()["review_by"]) == ("active", "2026-03-01T00:00:00Z")
    assert kept.json()["internal_reason"] is None  # reviews:write alone does not see it
    naive = reviewer.post(
        f"/v1/freezes/{freeze_id}/rereview",
        json={"keep": True, "next_review_by": "2026-03-01T00:00:00", "note": "x"},
    )
    assert (naive.status_code, naive.json()["errors"][0]["field"]) == (422, "next_review_by")
    past = reviewer.post(
        f"/v1/freezes/{freeze_id}/rereview",
        json={"keep": True, "next_review_by": "2025-01-01T00:00:00Z", "note": "x"},
    )
    assert (past.status_code, past.json()["errors"][0]["field"]) == (422, "next_review_by")
    early = reviewer.post(f"/v1/freezes/{freeze_id}/rereview", json={"keep": False, "note": "resolved"})
    assert (early.status_code, "not due" in early.json()["detail"]) == (409, True)
    clock.advance(timedelta(days=60))  # past the new re-review date
    released = reviewer.post(f"/v1/freezes/{freeze_id}/rereview", json={"keep": False, "note": "resolved"})
    assert released.json()["status"] == "released"
    assert staff.post("/v1/authorize", json=pay("60000")).json()["allowed"] is True  # no probation
    aml_id = staff.post("/v1/accounts/acc_7/freezes", json=AML).json()["id"]
    refused = reviewer.post(f"/v1/freezes/{aml_id}/rereview", json={"keep": False, "note": "fine"})
    assert refused.status_code == 409
    assert "four-eyes" in refused.json()["detail"]


def test_openapi_documents_the_callback_body_and_no_key(provider: TestClient) -> None:
    paths = provider.get("/openapi.json").json()["paths"]
    callback = paths["/v1/callbacks/face"]["post"]
    schema = callback["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"session_id", "passed", "score"}
    assert "401" in callback["responses"]
    for path in (
        "/v1/review/queue",
        "/v1/appeals/{appeal_id}/claim",
        "/v1/appeals/{appeal_id}/decision",
        "/v1/appeals/{appeal_id}/verification/sms/check",
        "/v1/reviewers/conflicts",
        "/v1/freezes/{freeze_id}/rereview",
        "/v1/accounts/{account_id}/kyc",
    ):
        assert path in paths


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [("v1=é", None), ("v1=00", "²"), ("v1=00", "9" * 400), ("v1=00", "-1"), ("", "")],
)
def test_odd_callback_headers_are_a_401_not_a_crash(
    runtime: Runtime, signature: str, timestamp: str | None
) -> None:
    with TestClient(create_app(runtime, background=False), raise_server_exceptions=False) as c:
        body, headers = face.callback_request(
            runtime.face_callback_key,
            session_id="fs_x",
            passed=True,
            score=0.9,
            timestamp=int(runtime.clock.now().timestamp()),
        )
        headers[face.SIGNATURE_HEADER] = signature
        if timestamp is not None:
            headers[face.TIMESTAMP_HEADER] = timestamp
        answer = c.post(
            "/v1/callbacks/face", content=body, headers={k: v.encode() for k, v in headers.items()}
        )
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == PROBLEM


def test_the_holder_side_does_not_see_who_holds_the_case(
    staff: TestClient, client_with: ClientFactory
) -> None:
    reviewer = client_with("reviews:write")
    holder_side = client_with("appeals:write")
    appeal_id = _appealed(staff)
    assert reviewer.post(f"/v1/appeals/{appeal_id}/claim").status_code == 200
    seen_by_holder = holder_side.get(f"/v1/appeals/{appeal_id}").json()
    assert (seen_by_holder["status"], seen_by_holder["assignee"]) == ("in_review", None)
    assert staff.get(f"/v1/appeals/{appeal_id}").json()["assignee"] == f"reviewer:{key_id(reviewer)}"
