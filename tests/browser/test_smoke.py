"""Smoke: Debian chromium under Playwright reaches the app served by uvicorn."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response

from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def test_the_browser_reads_the_openapi_document(page: Page, live_server: LiveServer) -> None:
    reply = page.goto(f"{live_server.url}/openapi.json")
    assert reply is not None
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert "Thawline" in page.content()
    assert reply.json()["info"]["title"] == "Thawline"


def test_a_portal_page_renders_with_its_stylesheet_under_the_strict_csp(
    phone: Page, live_server: LiveServer
) -> None:
    # Without a valid one-time link the portal answers with its "link not valid" page: a real
    # server-rendered page that needs no data.
    loaded: dict[str, int] = {}
    csp_violations: list[str] = []
    phone.on("response", lambda r: _record(loaded, r))
    phone.on("console", lambda m: _csp(csp_violations, m))
    phone.on("pageerror", lambda e: csp_violations.append(f"page error: {e}"))
    reply = phone.goto(f"{live_server.url}/portal/enter?lang=en")
    assert reply is not None
    assert reply.status == 403
    assert reply.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    phone.wait_for_load_state("load")
    assert phone.title().endswith("Thawline")
    assert phone.locator("html").get_attribute("lang") == "en"
    assert phone.locator(".brand").inner_text() == "Thawline"
    assert loaded.get("/portal/static/portal.css") == 200
    assert csp_violations == []
    # Laid out for the phone: nothing wider than the screen.
    assert phone.evaluate("document.documentElement.scrollWidth") <= phone.viewport_size["width"]


def _record(loaded: dict[str, int], response: Response) -> None:
    path = response.url.split("://", 1)[1].split("/", 1)[1]
    loaded["/" + path.split("?", 1)[0]] = response.status


def _csp(found: list[str], message: ConsoleMessage) -> None:
    if "Content Security Policy" in message.text:
        found.append(message.text)
