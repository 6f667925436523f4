"""The console's staff pages in a real browser: an admin adds a risk analyst, who lands on the rules,
loads a changed ruleset and reads its diff, imports a blocklist file and finds the refused line; an
auditor opens the dashboard. Every form control on these pages has an accessible name."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests import lifecycle as lc
from tests.browser.conftest import LiveServer, unnamed_controls
from thawline.services import staff
from thawline.services.engine import default_ruleset_text
from thawline.services.unit_of_work import UnitOfWork

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery staple"


def _sign_in(page: Page, live_server: LiveServer, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/console/login?lang=en")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")


def _sign_out(page: Page) -> None:
    with page.expect_navigation():
        page.click("form[action^='/console/logout'] button")


def test_an_admin_adds_an_analyst_who_changes_rules_and_imports_a_list(
    live_server: LiveServer, page: Page
) -> None:
    rt = live_server.runtime
    with UnitOfWork(rt) as uow:
        staff.create_user(uow, "root.admin", ["admin"], PASSWORD, lc.CREATOR)
        staff.create_user(uow, "audrey.audit", ["auditor"], PASSWORD, lc.CREATOR)
        uow.commit()

    _sign_in(page, live_server, "root.admin")
    expect(page).to_have_url(f"{live_server.url}/console/admin/users?lang=en")
    assert unnamed_controls(page) == []
    form = page.locator("#create-member")
    form.locator("input[name=username]").fill("wang.analyst")
    form.locator("input[name=roles][value=risk_analyst]").check()
    form.locator("input[name=password]").fill("analyst passphrase 2026")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page.locator("#member-wang\\.analyst")).to_contain_text("Risk analyst")
    _sign_out(page)

    _sign_in(page, live_server, "wang.analyst", "analyst passphrase 2026")
    expect(page).to_have_url(f"{live_server.url}/console/rules?lang=en")
    expect(page.locator("#rule-card_testing")).to_contain_text("Card testing")
    assert unnamed_controls(page) == []
    edited = default_ruleset_text().replace("small_txn_count_10m >= 8", "small_txn_count_10m >= 10")
    page.fill("#source", edited)
    page.fill("#load input[name=note]", "fewer card-testing freezes")
    with page.expect_navigation():
        page.click("#load button[type=submit]")
    expect(page.locator("#active-version")).to_contain_text("v1")
    page.fill("#source", default_ruleset_text())
    with page.expect_navigation():
        page.click("#load button[type=submit]")
    expect(page.locator("#active-version")).to_contain_text("v2")
    with page.expect_navigation():
        page.click("#version-2 a")
    expect(page.locator("#rule-changes")).to_contain_text("card_testing")
    expect(page.locator("#diff .add")).to_contain_text(["small_txn_count_10m >= 8"])
    expect(page.locator("#diff .del")).to_contain_text(["small_txn_count_10m >= 10"])

    page.goto(f"{live_server.url}/console/lists?lang=en")
    page.check("input[name=list_type][value=block]")
    csv_text = "kind,value,reason\nphone,+8613800138000,fraud ring\nphone,12,typo\n"
    page.set_input_files(
        "#import input[type=file]",
        files=[{"name": "ring.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}],
    )
    with page.expect_navigation():
        page.click("#import button[type=submit]")
    expect(page.locator("#imported")).to_contain_text("Imported 1 entries")
    expect(page.locator("#line-errors")).to_contain_text("3")  # the refused line, by number
    expect(page.locator("#list-versions")).to_contain_text("ring.csv")
    assert "+8613800138000" not in page.content()
    _sign_out(page)

    _sign_in(page, live_server, "audrey.audit")
    page.goto(f"{live_server.url}/console/dashboard?lang=zh-CN")
    expect(page.locator("svg").first).to_be_visible()
    assert unnamed_controls(page) == []
