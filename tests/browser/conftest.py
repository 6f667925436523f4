"""Real-browser fixtures: Playwright driving Debian's chromium against the app served by uvicorn.

Browsers cannot be downloaded here, so Playwright never fetches one (never run ``playwright install``):
it drives the system chromium at ``/usr/bin/chromium`` (``apt-get install chromium``). When it is
missing the browser tests fail rather than skip, unless a developer opts out explicitly with
``THAWLINE_TEST_SKIP_BROWSER=1`` (CI never does).

The app runs on SQLite only: the browser tests check what a browser sees (pages, scripts, headers,
cookies), and the service layer underneath is covered on SQLite and PostgreSQL elsewhere.

Every ``page`` leaves a screenshot in ``test-artifacts/<test name>.png``, also when the test failed.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import make_settings
from thawline.api.app import create_app
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import apikeys
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork

CHROMIUM = Path("/usr/bin/chromium")
# Needed on this machine: no sandbox (root in a container), no GPU, and nothing that phones home
# over a closed network (QUIC, component updates, sync, background fetches).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
# Longer pages (a JSON document) are shot at the viewport: full-page shots of them take seconds.
FULL_PAGE_MAX_PX = 4000
DEFAULT_TIMEOUT_MS = 15_000  # fail a stuck step quickly instead of at pytest-timeout's 300 s
SERVER_START_SECONDS = 30.0


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium under Playwright, shared by the browser tests.

    Package scope, not session: while the sync API is started, asyncio considers Playwright's event
    loop to be running in the main thread, so ``asyncio.run()`` there (``Dispatcher.run_once``,
    ``deliver_now``) would break or change course in whatever tests run afterwards. Playwright is
    stopped as soon as the last test of this package is done. For the same reason, a browser test
    must not call ``asyncio.run()`` itself.
    """
    if not CHROMIUM.is_file():
        if os.environ.get("THAWLINE_TEST_SKIP_BROWSER") == "1":
            pytest.skip("browser tests opted out with THAWLINE_TEST_SKIP_BROWSER=1")
        pytest.fail(
            f"{CHROMIUM} is required for the browser tests: apt-get install -y chromium "
            "(or set THAWLINE_TEST_SKIP_BROWSER=1 to skip them locally)"
        )
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


def _artifact_path(request: pytest.FixtureRequest, suffix: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_") + suffix
    return request.config.rootpath / "test-artifacts" / f"{name}.png"


def _open_page(
    browser: Browser, request: pytest.FixtureRequest, suffix: str = "", **context_options: Any
) -> Iterator[Page]:
    context = browser.new_context(**context_options)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        p = context.new_page()
        yield p
        # Runs after a failing test too: the screenshot shows what the browser showed.
        shot = _artifact_path(request, suffix)
        shot.parent.mkdir(parents=True, exist_ok=True)
        try:
            tall = p.evaluate("document.documentElement.scrollHeight") > FULL_PAGE_MAX_PX
            p.screenshot(path=str(shot), full_page=not tall)
        except PlaywrightError as exc:  # a crashed or closed page must not hide the test's own outcome
            request.node.warn(pytest.PytestWarning(f"no screenshot for {request.node.nodeid}: {exc}"))
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh context and page (desktop size) per test."""
    yield from _open_page(browser, request, viewport={"width": 1280, "height": 800})


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """Like ``page``, on a 390x844 touch screen at 3x (a phone)."""
    yield from _open_page(
        browser,
        request,
        "-phone",
        viewport=PHONE,
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )


@dataclass(frozen=True)
class LiveServer:
    """The app served over real HTTP: ``url`` is its base URL (no trailing slash)."""

    url: str
    runtime: Runtime


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real app (background jobs included) under uvicorn on a free 127.0.0.1 port, fresh SQLite."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed to uvicorn: no race for the port
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    runtime = build_runtime(
        make_settings(f"sqlite:///{tmp_path / 'thawline.db'}", tmp_path, portal_url=f"{url}/portal")
    )
    server = uvicorn.Server(
        # Open SSE streams (the portal's live timeline) end at shutdown instead of holding it up.
        uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    try:
        thread.start()
        _wait_until_up(url, thread)
        yield LiveServer(url=url, runtime=runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        runtime.close()
    assert not thread.is_alive(), "the live server did not stop within 30 s"


def _wait_until_up(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if not thread.is_alive():
            pytest.fail("the live server exited during startup (see the captured log)")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the live server at {url} did not answer /healthz within {SERVER_START_SECONDS:.0f} s")


ApiKeyFactory = Callable[..., str]


@pytest.fixture
def api_key(live_server: LiveServer) -> ApiKeyFactory:
    """``api_key(*scopes, name="browser-test")``: a new key on the live server; returns the presented key."""

    def make(*scopes: str, name: str = "browser-test") -> str:
        with UnitOfWork(live_server.runtime) as uow:
            _info, presented = apikeys.create_key(uow, name, list(scopes), Actor(ActorKind.SYSTEM, "test"))
            uow.commit()
        return presented

    return make


# Form controls (not hidden) without a label, aria-label or aria-labelledby: a screen reader would
# announce them as nameless.
UNNAMED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.name || el.id)"""


def unnamed_controls(page: Page) -> list[str]:
    """Names of the page's form controls a screen reader would announce without a name."""
    found: list[str] = page.evaluate(UNNAMED)
    return found
