"""The holder portal over HTTP: one-time entry, the account page, CSRF, headers, the way back out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests import lifecycle as lc
from tests.e2e.conftest import issue_key
from thawline.api.app import create_app
from thawline.domain.clock import FakeClock
from thawline.oplog.entry import decode_entry
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


@pytest.fixture
def browser_like(runtime: Runtime) -> Iterator[TestClient]:
    """A client over https (the session cookie is Secure), without an API key."""
    with TestClient(create_app(runtime, background=False), base_url="https://testserver") as c:
        yield c


def _link(runtime: Runtime, account_id: str = "acc_1") -> str:
    with TestClient(create_app(runtime, background=False)) as api:
        api.headers["Authorization"] = f"Bearer {issue_key(runtime, 'accounts:write')}"
        issued = api.post(f"/v1/accounts/{account_id}/portal-links")
        assert issued.status_code == 201, issued.text
        url = issued.json()["url"]
    return url[url.index("/portal/") :]


def _actions(runtime: Runtime, prefix: str) -> list[str]:
    with UnitOfWork(runtime, read_only=True) as uow:
        found = [str(decode_entry(d)["action"]) for _s, d, _c in uow.oplog.entries(account_id="acc_1")]
    return [a for a in found if a.startswith(prefix)]


def test_a_one_time_link_opens_the_holders_page_with_reason_materials_progress_and_messages(
    runtime: Runtime, browser_like: TestClient
) -> None:
    lc.register(runtime)
    lc.flagged_hf(runtime)
    entered = browser_like.get(_link(runtime), follow_redirects=False)
    assert entered.status_code == 303
    cookie = entered.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=lax" in cookie.lower()  # holders arrive from another site's link
    page = browser_like.get("/portal/account")
    assert page.status_code == 200
    html = page.text
    assert "您的账户已被冻结" in html  # zh-CN: the holder's language
    assert "holder reason" in html
    assert "交易凭证" in html  # the exact materials: a voucher per flagged transaction
    assert 'id="timeline"' in html
    assert "1 未读" in html.replace("</span> ", " ").replace('<span id="unread">', "")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    english = browser_like.get("/portal/account?lang=en").text
    assert "Your account is frozen" in english
    assert _actions(runtime, "portal.") == ["portal.link_issued", "portal.signed_in"]


def test_a_link_works_once_and_nothing_is_shown_without_a_session(
    runtime: Runtime, browser_like: TestClient
) -> None:
    lc.register(runtime)
    link = _link(runtime)
    assert browser_like.get(link, follow_redirects=False).status_code == 303
    with TestClient(create_app(runtime, background=False), base_url="https://testserver") as stranger:
        again = stranger.get(link, follow_redirects=False)
        assert again.status_code == 403
        assert "此链接已失效" in again.text or "does not work" in again.text
        assert stranger.get("/portal/account").status_code == 403
        assert stranger.get("/portal/stream").status_code == 401
        assert stranger.get("/portal/enter?token=forged").status_code == 403


def test_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session(
    runtime: Runtime, browser_like: TestClient
) -> None:
    lc.register(runtime)
    lc.freeze(runtime)
    browser_like.get(_link(runtime))
    page = browser_like.get("/portal/account").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    with UnitOfWork(runtime, read_only=True) as uow:
        from thawline.services import inbox  # noqa: PLC0415

        (message,) = inbox.messages(uow, "acc_1")
    forged = browser_like.post(f"/portal/inbox/{message.id}/read", data={"csrf": "nope"})
    assert forged.status_code == 403
    read = browser_like.post(f"/portal/inbox/{message.id}/read", data={"csrf": csrf}, follow_redirects=False)
    assert read.status_code == 303
    assert _actions(runtime, "inbox.read") == ["inbox.read"]
    assert browser_like.post("/portal/sign-out", data={"csrf": csrf}).status_code == 200
    assert browser_like.get("/portal/account").status_code == 403
    assert _actions(runtime, "portal.signed_out") == ["portal.signed_out"]


def test_a_holder_sees_only_their_own_account(runtime: Runtime, browser_like: TestClient) -> None:
    lc.register(runtime)
    lc.register(runtime, "acc_2", phone="13900139000")
    browser_like.get(_link(runtime))
    assert browser_like.get("/portal/accounts/acc_1", follow_redirects=False).status_code == 303
    assert browser_like.get("/portal/accounts/acc_2", follow_redirects=False).status_code == 403


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="')[1].split('"', maxsplit=1)[0]


def test_the_holder_appeals_sees_what_is_missing_completes_and_submits(
    runtime: Runtime, browser_like: TestClient
) -> None:
    lc.register(runtime)
    lc.flagged_hf(runtime)
    browser_like.get(_link(runtime))
    page = browser_like.get("/portal/account?lang=en").text
    freeze_id = page.split('action="/portal/freezes/')[1].split("/")[0]
    opened = browser_like.post(
        f"/portal/freezes/{freeze_id}/appeal", data={"csrf": _csrf(page), "explanation": "My own payments."}
    )
    assert opened.status_code == 200
    page = browser_like.get("/portal/account?lang=en").text
    assert "voucher missing for transactions T1" in page  # exactly what is missing
    appeal_id = page.split('action="/portal/appeals/')[1].split("/")[0]
    refused = browser_like.post(f"/portal/appeals/{appeal_id}/submit", data={"csrf": _csrf(page)})
    assert refused.status_code == 422
    assert "voucher missing for transactions T1" in refused.text
    from tests.files import pdf  # noqa: PLC0415

    uploaded = browser_like.post(
        f"/portal/appeals/{appeal_id}/materials",
        data={"csrf": _csrf(page), "kind": "transaction_voucher", "transaction_ids": "T1"},
        files={"file": ("voucher.pdf", pdf("voucher"), "application/pdf")},
    )
    assert uploaded.status_code == 200
    page = browser_like.get("/portal/account?lang=en").text
    assert "voucher missing" not in page
    assert "missing: a signed explanation letter" in page  # the checklist moves on as materials arrive
    letter = browser_like.post(
        f"/portal/appeals/{appeal_id}/materials",
        data={"csrf": _csrf(page), "kind": "explanation_letter"},
        files={"file": ("letter.txt", b"I bought these myself.", "text/plain")},
    )
    assert letter.status_code == 200
    page = browser_like.get("/portal/account?lang=en").text
    assert 'id="complete"' in page
    submitted = browser_like.post(f"/portal/appeals/{appeal_id}/submit", data={"csrf": _csrf(page)})
    assert submitted.status_code == 200
    assert 'data-status="submitted"' in submitted.text
    assert _actions(runtime, "appeal.")[:4] == [
        "appeal.opened",
        "appeal.material_added",
        "appeal.material_added",
        "appeal.submitted",
    ]


def test_a_holder_cannot_act_on_someone_elses_appeal(runtime: Runtime, browser_like: TestClient) -> None:
    lc.register(runtime)
    lc.register(runtime, "acc_2")
    other = lc.submit_appeal(runtime, lc.freeze(runtime, "acc_2"))
    browser_like.get(_link(runtime))
    csrf = _csrf(browser_like.get("/portal/account").text)
    refused = browser_like.post(f"/portal/appeals/{other}/expedite", data={"csrf": csrf})
    assert refused.status_code == 422
    assert "not yours" in refused.text


def test_a_burst_of_form_posts_is_slowed_down_and_changes_nothing(
    runtime: Runtime, browser_like: TestClient, clock: FakeClock
) -> None:
    lc.register(runtime)
    lc.flagged_hf(runtime)
    browser_like.get(_link(runtime))
    page = browser_like.get("/portal/account?lang=en").text
    freeze_id = page.split('action="/portal/freezes/')[1].split("/")[0]
    browser_like.post(
        f"/portal/freezes/{freeze_id}/appeal", data={"csrf": _csrf(page), "explanation": "mine"}
    )
    appeal_id = browser_like.get("/portal/account").text.split('action="/portal/appeals/')[1].split("/")[0]
    replies = [
        browser_like.post(f"/portal/appeals/{appeal_id}/submit", data={"csrf": _csrf(page)}).status_code
        for _ in range(25)
    ]
    assert replies[:19] == [422] * 19  # incomplete: refused with what is missing (1 action was the opening)
    assert set(replies[19:]) == {429}
    slowed = browser_like.post(f"/portal/appeals/{appeal_id}/submit", data={"csrf": _csrf(page)})
    assert slowed.headers["retry-after"] == "60"
    assert "Too many attempts" in slowed.text
    assert _actions(runtime, "appeal.") == ["appeal.opened"]
    clock.advance(timedelta(minutes=1))
    again = browser_like.post(f"/portal/appeals/{appeal_id}/submit", data={"csrf": _csrf(page)})
    assert again.status_code == 422  # the window has passed: heard again


def test_guessing_links_from_one_address_is_slowed_down(runtime: Runtime, browser_like: TestClient) -> None:
    lc.register(runtime)
    codes = [browser_like.get(f"/portal/enter?token=guess{i}").status_code for i in range(22)]
    assert codes[:20] == [403] * 20
    assert codes[20:] == [429, 429]
    assert browser_like.get(_link(runtime), follow_redirects=False).status_code == 429  # even a good one
