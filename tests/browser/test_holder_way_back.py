"""The way back in a real browser: the holder on a phone (appeal, what is missing, live progress,
second verification, probation) and two reviewers in the console on a desktop (the blacklist
category needs four eyes: a reviewer approves, a senior reviewer gives the second approval)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from tests import lifecycle as lc
from tests.browser.conftest import ApiKeyFactory, LiveServer, unnamed_controls
from tests.files import pdf
from thawline.adapters.db.schema import appeal
from thawline.domain.freezes import ReasonCategory
from thawline.services import staff
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"


def _portal_link(live_server: LiveServer, api_key: ApiKeyFactory, account_id: str) -> str:
    issued = httpx.post(
        f"{live_server.url}/v1/accounts/{account_id}/portal-links",
        headers={"Authorization": f"Bearer {api_key('accounts:write')}"},
        timeout=10,
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["url"])


def _upload(phone: Page, kind: str, name: str, data: bytes, mime: str) -> None:
    phone.select_option("select[name=kind]", kind)
    phone.set_input_files("input[type=file]", files=[{"name": name, "mimeType": mime, "buffer": data}])
    with phone.expect_navigation():
        phone.click("form.upload button[type=submit]")


def test_a_holder_appeals_from_a_phone_and_comes_back_on_probation(
    live_server: LiveServer, phone: Page, page: Page, api_key: ApiKeyFactory
) -> None:
    rt = live_server.runtime
    with UnitOfWork(rt) as uow:
        staff.create_user(uow, "alice.chen", ["reviewer"], PASSWORD, lc.CREATOR)
        staff.create_user(uow, "bob.li", ["senior_reviewer"], PASSWORD, lc.CREATOR)
        uow.commit()
    lc.register(rt)
    lc.freeze(rt, category=ReasonCategory.BLACKLIST)

    phone.goto(_portal_link(live_server, api_key, "acc_1") + "&lang=en")
    expect(phone.locator("#status")).to_contain_text("Your account is frozen")
    expect(phone.locator(".reason")).to_contain_text("holder reason")
    assert unnamed_controls(phone) == []

    # Start with nothing but the explanation: the page says exactly what is still missing.
    phone.fill("textarea[name=explanation]", "These were my own payments; the list entry is wrong.")
    with phone.expect_navigation():
        phone.click("#open-appeal")
    missing = phone.locator("#missing li")
    expect(missing).to_have_text(
        ["missing: a photo of your ID document", "missing: a signed explanation letter"]
    )
    assert unnamed_controls(phone) == []  # the appeal form: upload, document type, submit
    phone.click("#submit-appeal")
    expect(phone.locator("#error")).to_contain_text("missing: a photo of your ID document")

    _upload(phone, "id_document", "id.pdf", pdf("ID card"), "application/pdf")
    expect(missing).to_have_text(["missing: a signed explanation letter"])
    _upload(phone, "explanation_letter", "letter.txt", b"I paid my own bills.", "text/plain")
    expect(phone.locator("#complete")).to_be_visible()
    with phone.expect_navigation():
        phone.click("#submit-appeal")
    expect(phone.locator(".appeal-status")).to_have_attribute("data-status", "submitted")

    # A reviewer takes the case in the console: the step appears on the phone live, without reloading.
    appeal = lc_appeal_id(rt)
    _sign_in(page, live_server, "alice.chen")
    expect(page.locator(f"#row-{appeal}")).to_be_visible()
    page.goto(f"{live_server.url}/console/appeals/{appeal}?lang=en")
    expect(page.locator("#internal-reason")).to_have_text("internal reason")
    with page.expect_navigation():
        page.click("#claim")
    expect(phone.locator('#timeline li[data-action="appeal.claimed"]')).to_be_visible(timeout=10_000)
    expect(phone.locator("#unread")).not_to_have_text("0")
    _approve(page)
    expect(page.locator("#status")).to_have_attribute("data-status", "second_approval")
    with page.expect_navigation():
        page.click("form[action^='/console/logout'] button")

    # Four eyes: a senior reviewer, not the first approver, gives the second approval.
    _sign_in(page, live_server, "bob.li")
    page.goto(f"{live_server.url}/console/appeals/{appeal}?lang=en")
    with page.expect_navigation():
        page.click("#claim")
    _approve(page)
    expect(page.locator("#status")).to_have_attribute("data-status", "approved")
    phone.reload()
    expect(phone.locator(".appeal-status")).to_have_attribute("data-status", "approved")

    # Second verification: the SMS code from the holder's phone, then the face provider's result.
    with phone.expect_navigation():
        phone.click("#send-code")
    code = lc.last_code(rt)
    phone.fill("input[name=code]", code)
    with phone.expect_navigation():
        phone.click("#check-code")
    expect(phone.locator("#verify")).to_contain_text("SMS code: done")
    lc.pass_face(rt, appeal)

    phone.reload()
    expect(phone.locator("#status")).to_contain_text("Your account works normally")
    expect(phone.locator("#status")).to_contain_text(re.compile("Large payments are paused until"))
    expect(phone.locator('#timeline li:has-text("Restriction lifted")')).to_be_visible()
    # The page fits a phone: nothing wider than the screen.
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390


def _sign_in(page: Page, live_server: LiveServer, username: str) -> None:
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    expect(page.locator("#queue")).to_be_visible()


def _approve(page: Page) -> None:
    page.check("input[name=decision][value=approve]")
    page.check("input[name=reason_codes][value=evidence_sufficient]")
    page.fill("#note", "ID and letter consistent; list entry disputed")
    with page.expect_navigation():
        page.click("#submit-decision")


def lc_appeal_id(rt: Runtime) -> str:
    """The one appeal in the database."""
    with UnitOfWork(rt, read_only=True) as uow:
        return str(uow.conn.execute(select(appeal.c.id)).scalar_one())
