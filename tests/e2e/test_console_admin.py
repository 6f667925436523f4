"""The console's admin pages over HTTP: staff members (create, roles, disable/enable, lockout, password)
and API keys (created and shown once, revoked) — each change logged under the admin's id, never with a
username, password or secret; each refusal changing nothing."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.e2e.test_console import PASSWORD, actions, csrf_of, log_bytes, make_staff, open_browser, sign_in
from thawline.domain.clock import FakeClock
from thawline.domain.staff import Role, hotp, totp_step
from thawline.services import apikeys, staff
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

__all__ = ["open_browser"]  # the fixture, imported for the tests here
NEW_PASSWORD = "a different long passphrase"


def admin(runtime: Runtime, open_browser: Callable[[], TestClient]) -> tuple[TestClient, str]:
    """A signed-in admin's browser and their staff id."""
    member = make_staff(runtime, "root", Role.ADMIN)
    browser = open_browser()
    assert sign_in(browser, "root").status_code == 303
    return browser, member


def member(runtime: Runtime, username: str) -> staff.StaffUser:
    with UnitOfWork(runtime, read_only=True) as uow:
        return staff.get(uow, username)


def test_an_admin_creates_a_member_who_signs_in_and_changes_their_roles(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, me = admin(runtime, open_browser)
    form = {"csrf": csrf_of(browser), "username": "lin", "roles": ["reviewer"], "password": "short"}
    weak = browser.post("/console/admin/users", data=form)
    assert weak.status_code == 422
    assert "password" in weak.text
    assert 'id="member-lin"' not in weak.text
    made = browser.post("/console/admin/users", data=form | {"password": PASSWORD}, follow_redirects=False)
    assert made.status_code == 303
    assert member(runtime, "lin").roles == (Role.REVIEWER,)
    lin = open_browser()
    assert sign_in(lin, "lin").status_code == 303
    assert lin.get("/console").status_code == 200
    changed = browser.post(
        "/console/admin/users/lin/roles",
        data={"csrf": csrf_of(browser), "roles": ["reviewer", "senior_reviewer"]},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert member(runtime, "lin").roles == (Role.REVIEWER, Role.SENIOR_REVIEWER)
    none = browser.post("/console/admin/users/lin/roles", data={"csrf": csrf_of(browser)})
    assert none.status_code == 422  # at least one role
    logged = [
        e for e in actions(runtime, "staff.") if e["action"] in {"staff.created", "staff.roles_changed"}
    ]
    assert [e["action"] for e in logged[1:]] == ["staff.created", "staff.roles_changed"]  # [0]: the admin
    assert all(e["actor"] == {"kind": "reviewer", "id": me} for e in logged[1:])
    assert b"lin" not in log_bytes(runtime)  # the log names staff by id only
    assert PASSWORD.encode() not in log_bytes(runtime)


def test_an_admin_cannot_lock_themselves_out(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, _me = admin(runtime, open_browser)
    before = len(actions(runtime))
    own = browser.post(
        "/console/admin/users/root/roles", data={"csrf": csrf_of(browser), "roles": ["auditor"]}
    )
    assert own.status_code == 403
    off = browser.post("/console/admin/users/root/disable", data={"csrf": csrf_of(browser)})
    assert off.status_code == 403
    assert member(runtime, "root").roles == (Role.ADMIN,)
    assert len(actions(runtime)) == before


def test_disable_enable_unlock_and_a_new_password_end_sessions(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, _me = admin(runtime, open_browser)
    make_staff(runtime, "zhao", Role.REVIEWER)
    zhao = open_browser()
    assert sign_in(zhao, "zhao").status_code == 303
    assert (
        browser.post(
            "/console/admin/users/zhao/disable", data={"csrf": csrf_of(browser)}, follow_redirects=False
        ).status_code
        == 303
    )
    assert zhao.get("/console", follow_redirects=False).status_code == 303  # signed out
    assert sign_in(open_browser(), "zhao").status_code != 303
    assert (
        browser.post(
            "/console/admin/users/zhao/enable", data={"csrf": csrf_of(browser)}, follow_redirects=False
        ).status_code
        == 303
    )
    intruder = open_browser()
    for _ in range(5):
        sign_in(intruder, "zhao", password="wrong wrong wrong wrong")
    assert member(runtime, "zhao").locked_until is not None
    assert sign_in(open_browser(), "zhao").status_code != 303  # locked, even with the right password
    assert 'action="/console/admin/users/zhao/unlock' in browser.get("/console/admin/users").text
    assert (
        browser.post(
            "/console/admin/users/zhao/unlock", data={"csrf": csrf_of(browser)}, follow_redirects=False
        ).status_code
        == 303
    )
    again = open_browser()
    assert sign_in(again, "zhao").status_code == 303
    reset = browser.post(
        "/console/admin/users/zhao/password",
        data={"csrf": csrf_of(browser), "password": NEW_PASSWORD},
        follow_redirects=False,
    )
    assert reset.status_code == 303
    assert again.get("/console", follow_redirects=False).status_code == 303  # the old session ended
    assert sign_in(open_browser(), "zhao").status_code != 303
    assert sign_in(open_browser(), "zhao", password=NEW_PASSWORD).status_code == 303
    twice = browser.post("/console/admin/users/zhao/unlock", data={"csrf": csrf_of(browser)})
    assert twice.status_code == 409
    names = [e["action"] for e in actions(runtime, "staff.")]
    assert [
        n for n in names if n in {"staff.disabled", "staff.enabled", "staff.unlocked", "staff.password_set"}
    ] == ["staff.disabled", "staff.enabled", "staff.unlocked", "staff.password_set"]
    assert NEW_PASSWORD.encode() not in log_bytes(runtime)


def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, me = admin(runtime, open_browser)
    nothing = browser.post("/console/admin/apikeys", data={"csrf": csrf_of(browser), "name": "gw"})
    assert nothing.status_code == 422
    assert "scope" in nothing.text
    bad = browser.post(
        "/console/admin/apikeys", data={"csrf": csrf_of(browser), "name": "gw", "scopes": ["everything"]}
    )
    assert bad.status_code == 422
    made = browser.post(
        "/console/admin/apikeys",
        data={"csrf": csrf_of(browser), "name": "gateway-1", "scopes": ["authz:check", "events:write"]},
    )
    assert made.status_code == 200
    assert made.headers["cache-control"] == "no-store"
    secret = made.text.split('<code id="secret">')[1].split("</code>")[0]
    assert secret.startswith("tlk_ak_")
    assert secret not in browser.get("/console/admin/apikeys").text  # shown once
    api = open_browser()
    check = {"account_id": "nobody", "operation": "debit", "amount": "1", "currency": "CNY"}
    assert (
        api.post("/v1/authorize", json=check, headers={"Authorization": f"Bearer {secret}"}).status_code
        != 401
    )
    with UnitOfWork(runtime, read_only=True) as uow:
        (key,) = [k for k in apikeys.list_keys(uow) if k.name == "gateway-1"]
    revoked = browser.post(
        f"/console/admin/apikeys/{key.id}/revoke", data={"csrf": csrf_of(browser)}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert (
        api.post("/v1/authorize", json=check, headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    logged = actions(runtime, "apikey.")
    assert [e["action"] for e in logged] == ["apikey.created", "apikey.revoked"]
    assert all(e["actor"] == {"kind": "reviewer", "id": me} for e in logged)
    assert secret.split(".")[1].encode() not in log_bytes(runtime)


def test_the_settings_page_shows_what_runs_and_never_a_secret(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    runtime.settings.sms_http_secret = "whsec_do_not_show_me"
    runtime.settings.database_url = runtime.settings.database_url.replace("://", "://u:hunter2@", 1)
    browser, _me = admin(runtime, open_browser)
    page = browser.get("/console/admin/settings")
    assert page.status_code == 200
    assert "THAWLINE_MAX_UPLOAD_BYTES" in page.text
    assert str(runtime.settings.max_upload_bytes) in page.text
    assert "whsec_do_not_show_me" not in page.text
    assert "hunter2" not in page.text
    assert 'id="setting-sms_http_secret"' in page.text


def test_a_member_changes_their_password_and_enrols_an_authenticator(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "mei", Role.REVIEWER)
    browser = open_browser()
    assert sign_in(browser, "mei").status_code == 303
    page = browser.get("/console/account")
    assert page.status_code == 200
    assert 'id="my-totp"' in page.text
    offered = browser.post("/console/account/totp/offer", data={"csrf": csrf_of(browser)})
    assert offered.status_code == 200
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in offered.text  # the QR code, inline, no script
    secret_b32 = offered.text.split('<code id="totp-secret">')[1].split("</code>")[0]
    offer = offered.text.split('name="offer" value="')[1].split('"')[0]
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    wrong = browser.post(
        "/console/account/totp", data={"csrf": csrf_of(browser), "offer": offer, "code": "000000"}
    )
    assert wrong.status_code == 422
    assert not member(runtime, "mei").totp_enrolled  # nothing stored until a code matches
    code = hotp(secret, totp_step(clock.now()))
    ok = browser.post("/console/account/totp", data={"csrf": csrf_of(browser), "offer": offer, "code": code})
    assert ok.status_code == 200
    assert 'id="totp-done"' in ok.text
    assert member(runtime, "mei").totp_enrolled
    clock.advance(timedelta(minutes=11))
    stale = browser.post(
        "/console/account/totp", data={"csrf": csrf_of(browser), "offer": offer, "code": code}
    )
    assert stale.status_code == 422  # an offer lasts 10 minutes
    refused = browser.post(
        "/console/account/password",
        data={"csrf": csrf_of(browser), "current": "not my password", "password": NEW_PASSWORD},
    )
    assert refused.status_code == 403
    changed = browser.post(
        "/console/account/password",
        data={"csrf": csrf_of(browser), "current": PASSWORD, "password": NEW_PASSWORD},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/console/login"
    assert browser.get("/console", follow_redirects=False).status_code == 303  # signed out
    code_now = hotp(secret, totp_step(clock.now()))
    assert sign_in(open_browser(), "mei", NEW_PASSWORD, code_now).status_code == 303
    logged = [e["action"] for e in actions(runtime, "staff.")]
    assert "staff.totp_enrolled" in logged
    assert "staff.password_set" in logged
    assert secret_b32.encode() not in log_bytes(runtime)
