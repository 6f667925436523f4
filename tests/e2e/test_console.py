"""The staff console over HTTP: sign-in, lockout, TOTP, CSRF, the queue and case pages, claiming and
deciding with four eyes, and the access-control matrix (every role against every route)."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from tests import lifecycle as lc
from thawline.adapters.db.schema import account
from thawline.api.app import create_app
from thawline.api.routes import console, console_auth
from thawline.domain.clock import FakeClock
from thawline.domain.freezes import ReasonCategory
from thawline.domain.staff import Role, hotp, totp_step
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import apikeys, appeals, engine, expedite, lists, rulesets, staff, staff_sessions
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

PASSWORD = "correct horse battery staple"
SYSTEM = Actor(ActorKind.SYSTEM, "test")
_accounts = itertools.count(1)


@pytest.fixture
def open_browser(runtime: Runtime) -> Iterator[Callable[[], TestClient]]:
    """``open_browser()``: another browser (its own cookie jar) over https, as the cookies are Secure."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        c = TestClient(create_app(runtime, background=False), base_url="https://testserver")
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def make_staff(runtime: Runtime, username: str, *roles: Role) -> str:
    """Create a staff member; returns their id."""
    with UnitOfWork(runtime) as uow:
        made = staff.create_user(uow, username, [r.value for r in roles], PASSWORD, SYSTEM)
        uow.commit()
    return made.id


def sign_in(client: TestClient, username: str, password: str = PASSWORD, code: str = "") -> Response:
    """Fill in and send the sign-in form."""
    form = client.get("/console/login")
    token = _field(form.text, "token")
    data = {"username": username, "password": password, "code": code, "token": token}
    return client.post("/console/login", data=data, follow_redirects=False)


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, from the sign-out form every signed-in page carries."""
    return _field(client.get("/console").text, "csrf")  # a refusal page carries the sign-out form too


def actions(runtime: Runtime, prefix: str = "") -> list[dict[str, Any]]:
    """Every log entry whose action starts with ``prefix``."""
    with UnitOfWork(runtime, read_only=True) as uow:
        found = [decode_entry(d) for _s, d, _c in uow.oplog.entries()]
    return [e for e in found if str(e["action"]).startswith(prefix)]


def log_bytes(runtime: Runtime) -> bytes:
    """The whole log as stored."""
    with UnitOfWork(runtime, read_only=True) as uow:
        return b"\n".join(d for _s, d, _c in uow.oplog.entries())


def new_appeal(runtime: Runtime, category: ReasonCategory = ReasonCategory.MANUAL, *, vip: int = 0) -> str:
    """A submitted appeal on a freshly registered and frozen account."""
    account_id = f"acc_{next(_accounts)}"
    lc.register(runtime, account_id, vip=vip)
    return lc.submit_appeal(runtime, lc.freeze(runtime, account_id, category))


def status_of(runtime: Runtime, appeal_id: str) -> str:
    """The appeal's status now."""
    with UnitOfWork(runtime, read_only=True) as uow:
        return appeals.get(uow, appeal_id).status.value


def decide(
    client: TestClient, appeal_id: str, decision: str = "approve", code: str = "evidence_sufficient"
) -> Response:
    """Post the decision form."""
    data = {"csrf": csrf_of(client), "decision": decision, "reason_codes": [code], "note": "looked at it"}
    return client.post(f"/console/appeals/{appeal_id}/decision", data=data, follow_redirects=False)


def claim(client: TestClient, appeal_id: str) -> Response:
    """Press the claim button."""
    data = {"csrf": csrf_of(client)}
    return client.post(f"/console/appeals/{appeal_id}/claim", data=data, follow_redirects=False)


def test_a_reviewer_signs_in_with_a_secure_session_and_sees_the_queue(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    user_id = make_staff(runtime, "alice", Role.REVIEWER)
    plain = new_appeal(runtime)
    rushed = new_appeal(runtime, vip=1)
    with UnitOfWork(runtime) as uow:
        expedite.expedite(uow, rushed, lc.HOLDER)
        uow.commit()
    browser = open_browser()
    signed = sign_in(browser, "Alice")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(console_auth.COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/console" in cookie
    assert "Max-Age=28800" in cookie  # 8 hours
    page = browser.get("/console?lang=en")
    assert page.status_code == 200
    html = page.text
    assert html.index(rushed) < html.index(plain)  # expedited first
    assert "expedited" in html
    assert "48 h 0 min left" in html
    assert '<meta http-equiv="refresh" content="60">' in html  # countdowns stay current without script
    assert 'action="/console/appeals/' + plain + "/claim" in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    clock.advance(timedelta(hours=49))  # past the deadline, and past the 8-hour session too
    assert browser.get("/console", follow_redirects=False).headers["location"] == "/console/login"
    sign_in(browser, "alice")
    assert "breached" in browser.get("/console?lang=en").text
    assert "已超时" in browser.get("/console?lang=zh-CN").text
    assert [e["actor"] for e in actions(runtime, "staff.signed_in")] == [
        {"kind": "reviewer", "id": user_id}
    ] * 2
    assert b"alice" not in log_bytes(runtime).lower()  # the log names staff by id only


def test_the_queue_filters_mine_and_unassigned(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    held, waiting = new_appeal(runtime), new_appeal(runtime)
    browser = open_browser()
    sign_in(browser, "alice")
    assert claim(browser, held).status_code == 303
    mine = browser.get("/console?view=mine").text
    assert held in mine
    assert waiting not in mine
    unassigned = browser.get("/console?view=unassigned").text
    assert waiting in unassigned
    assert held not in unassigned


def test_a_wrong_password_is_refused_and_recorded_without_the_username(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    user_id = make_staff(runtime, "alice", Role.REVIEWER)
    browser = open_browser()
    refused = sign_in(browser, "alice", "not the password at all")
    assert refused.status_code == 403
    assert not [c for c in refused.headers.get_list("set-cookie") if c.startswith(console_auth.COOKIE + "=")]
    assert browser.get("/console", follow_redirects=False).headers["location"] == "/console/login"
    unknown = sign_in(browser, "nobody", PASSWORD)
    assert unknown.status_code == 403
    assert _error(unknown) == _error(refused)  # an unknown name reads like a wrong password
    (failed,) = actions(runtime, "staff.sign_in_failed")
    assert failed["subject"] == {"ref": f"staff:{user_id}"}
    assert b"alice" not in log_bytes(runtime).lower()
    assert PASSWORD.encode() not in log_bytes(runtime)


def _error(reply: Response) -> str:
    match = re.search(r'id="error">([^<]*)<', reply.text)
    assert match
    return match.group(1)


def test_five_failures_lock_the_account_and_even_the_right_password_is_refused_until_it_ends(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    browser = open_browser()
    wrong = [sign_in(browser, "alice", f"wrong password {i}") for i in range(5)]
    assert [r.status_code for r in wrong] == [403] * 5
    locked = sign_in(browser, "alice", PASSWORD)
    assert locked.status_code == 403
    assert _error(locked) == _error(wrong[0])  # the lock does not tell a guesser they were right
    assert len(actions(runtime, "staff.locked_out")) == 1
    assert len(actions(runtime, "staff.sign_in_failed")) == 5  # attempts while locked are not counted
    clock.advance(timedelta(minutes=15, seconds=1))
    assert sign_in(browser, "alice", PASSWORD).status_code == 303


def test_sign_in_is_throttled_per_username_and_per_address(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    browser = open_browser()
    tries = [sign_in(browser, "ghost", PASSWORD) for _ in range(console_auth.PER_USERNAME + 1)]
    assert [r.status_code for r in tries] == [403] * console_auth.PER_USERNAME + [429]
    assert tries[-1].headers["retry-after"] == "60"  # the fake clock stands still
    clock.advance(timedelta(minutes=1))
    names = [f"ghost{i}" for i in range(console_auth.PER_ADDRESS + 1)]
    tries = [sign_in(browser, n, PASSWORD).status_code for n in names]
    assert tries[-1] == 429
    assert tries.count(429) == 1


def test_totp_is_required_once_enrolled_and_a_code_works_once(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    with UnitOfWork(runtime) as uow:
        _user, uri = staff.enrol_totp(uow, "alice", SYSTEM)
        uow.commit()
    encoded = parse_qs(urlparse(uri).query)["secret"][0]
    secret = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    code = hotp(secret, totp_step(clock.now()))
    browser = open_browser()
    assert sign_in(browser, "alice").status_code == 403  # the password alone is not enough
    wrong = str((int(code) + 1) % 1_000_000).zfill(6)
    assert sign_in(browser, "alice", code=wrong).status_code == 403
    assert sign_in(browser, "alice", code=code).status_code == 303
    (entry,) = actions(runtime, "staff.signed_in")
    assert entry["details"] == {"second_factor": True}
    assert sign_in(open_browser(), "alice", code=code).status_code == 403  # replayed
    assert code.encode() not in log_bytes(runtime)


def test_forms_without_the_sessions_csrf_token_are_refused(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    appeal_id = new_appeal(runtime)
    browser = open_browser()
    sign_in(browser, "alice")
    forged = browser.post(f"/console/appeals/{appeal_id}/claim", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert browser.post(f"/console/appeals/{appeal_id}/claim").status_code == 403
    assert status_of(runtime, appeal_id) == "submitted"
    assert browser.post("/console/logout", data={"csrf": "forged"}).status_code == 403
    assert browser.get("/console").status_code == 200  # still signed in
    stranger = open_browser()  # a sign-in form posted without the token its page set
    stranger.get("/console/login")
    data = {"username": "alice", "password": PASSWORD, "token": "guessed"}
    assert stranger.post("/console/login", data=data, follow_redirects=False).status_code == 403


def test_sign_out_ends_the_session(runtime: Runtime, open_browser: Callable[[], TestClient]) -> None:
    user_id = make_staff(runtime, "alice", Role.REVIEWER)
    browser = open_browser()
    sign_in(browser, "alice")
    out = browser.post("/console/logout", data={"csrf": csrf_of(browser)}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"
    assert browser.get("/console", follow_redirects=False).status_code == 303
    (entry,) = actions(runtime, "staff.signed_out")
    assert entry["actor"]["id"] == user_id


def test_disabling_a_member_ends_their_open_sessions(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    browser = open_browser()
    sign_in(browser, "alice")
    with UnitOfWork(runtime) as uow:
        staff.disable(uow, "alice", SYSTEM)
        uow.commit()
    assert browser.get("/console", follow_redirects=False).headers["location"] == "/console/login"
    assert sign_in(browser, "alice").status_code == 403


def test_a_reviewer_claims_and_approves_through_the_pages_and_the_log_names_them(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    user_id = make_staff(runtime, "alice", Role.REVIEWER)
    appeal_id = new_appeal(runtime)
    browser = open_browser()
    sign_in(browser, "alice")
    case = browser.get(f"/console/appeals/{appeal_id}?lang=en")
    assert case.status_code == 200
    for shown in ("internal reason", "holder reason", "CODE_1", "Machine pre-review", 'id="timeline"'):
        assert shown in case.text
    assert 'id="decide"' not in case.text  # nobody decides a case they have not claimed
    assert claim(browser, appeal_id).status_code == 303
    held = browser.get(f"/console/appeals/{appeal_id}").text
    assert 'id="decide"' in held
    assert 'value="evidence_sufficient"' in held
    done = decide(browser, appeal_id)
    assert done.status_code == 303
    assert status_of(runtime, appeal_id) == "approved"
    reviewer = {"kind": "reviewer", "id": user_id}
    assert [e["actor"] for e in actions(runtime, "appeal.claimed")] == [reviewer]
    assert [e["actor"] for e in actions(runtime, "appeal.approved")] == [reviewer]


def test_a_decision_with_a_reason_code_of_another_decision_is_refused_on_the_case_page(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "alice", Role.REVIEWER)
    appeal_id = new_appeal(runtime)
    browser = open_browser()
    sign_in(browser, "alice")
    claim(browser, appeal_id)
    refused = decide(browser, appeal_id, "approve", "forged_material")
    assert refused.status_code == 422
    assert "forged_material" in _error(refused)
    assert status_of(runtime, appeal_id) == "in_review"


def test_four_eyes_a_senior_gives_the_second_approval_and_nobody_approves_twice(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "rita", Role.REVIEWER)
    make_staff(runtime, "sam", Role.SENIOR_REVIEWER)
    make_staff(runtime, "sue", Role.SENIOR_REVIEWER)
    appeal_id = new_appeal(runtime, ReasonCategory.BLACKLIST)
    first = open_browser()
    sign_in(first, "sam")
    claim(first, appeal_id)
    assert decide(first, appeal_id).status_code == 303
    assert status_of(runtime, appeal_id) == "second_approval"
    assert claim(first, appeal_id).status_code == 409  # not the first approver again
    plain = open_browser()
    sign_in(plain, "rita")
    assert 'id="claim"' not in plain.get(f"/console/appeals/{appeal_id}").text
    assert claim(plain, appeal_id).status_code == 403  # a plain reviewer cannot give it
    second = open_browser()
    sign_in(second, "sue")
    assert claim(second, appeal_id).status_code == 303
    assert decide(second, appeal_id).status_code == 303
    assert status_of(runtime, appeal_id) == "approved"
    (approved,) = actions(runtime, "appeal.approved")
    assert approved["details"]["first_approver"].startswith("reviewer:st_")
    assert approved["actor"]["id"] != approved["details"]["first_approver"].split(":")[1]


def test_a_plain_reviewer_holding_a_second_approval_case_cannot_decide_it(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    rita = make_staff(runtime, "rita", Role.REVIEWER)
    appeal_id = _waiting_for_second_approval(runtime)
    lc.claim(runtime, appeal_id, Actor(ActorKind.REVIEWER, rita))  # e.g. assigned by a lead
    browser = open_browser()
    sign_in(browser, "rita")
    assert decide(browser, appeal_id).status_code == 403
    assert status_of(runtime, appeal_id) == "second_approval"


def _waiting_for_second_approval(runtime: Runtime) -> str:
    appeal_id = new_appeal(runtime, ReasonCategory.BLACKLIST)
    lc.claim(runtime, appeal_id, lc.ALICE)
    lc.decide(runtime, appeal_id, lc.ALICE)
    return appeal_id


# The access-control matrix: every console route against every role and against nobody. Each row
# names who may use the route; everyone else signed in gets 403, and nobody is sent to sign in.
R, SR, RA, AU, AD = (
    Role.REVIEWER,
    Role.SENIOR_REVIEWER,
    Role.RISK_ANALYST,
    Role.AUDITOR,
    Role.ADMIN,
)
EVERY_ROLE = frozenset(Role)


@dataclass(frozen=True)
class Row:
    """One route (in one case state), how to reach it, and who may use it."""

    method: str
    template: str
    allowed: frozenset[Role]
    prepare: Callable[[Runtime, str | None], dict[str, str]] = lambda _rt, _me: {}
    form: Callable[[str], dict[str, Any]] = lambda csrf: {"csrf": csrf}
    public: bool = False  # served to nobody too
    files: dict[str, tuple[str, bytes, str]] | None = None  # a multipart upload
    done: int = 303  # what an allowed POST answers (a form re-rendered with its result: 200)
    to_login: bool = False  # an allowed POST that ends the session sends the member to sign in


def _claimable(runtime: Runtime, _me: str | None) -> dict[str, str]:
    return {"appeal_id": new_appeal(runtime)}


def _held(runtime: Runtime, me: str | None) -> dict[str, str]:
    appeal_id = new_appeal(runtime)
    lc.claim(runtime, appeal_id, Actor(ActorKind.REVIEWER, me or "rv_someone"))
    return {"appeal_id": appeal_id}


def _second(runtime: Runtime, _me: str | None) -> dict[str, str]:
    return {"appeal_id": _waiting_for_second_approval(runtime)}


def _second_held(runtime: Runtime, me: str | None) -> dict[str, str]:
    appeal_id = _waiting_for_second_approval(runtime)
    lc.claim(runtime, appeal_id, Actor(ActorKind.REVIEWER, me or "rv_someone"))
    return {"appeal_id": appeal_id}


def _signed_entry(runtime: Runtime, _me: str | None) -> dict[str, str]:
    with UnitOfWork(runtime) as uow:
        runtime.log.checkpoint(uow)  # covers the first entry (the member's own staff.created at least)
        uow.commit()
    return {"seq": "0"}


def _two_versions(runtime: Runtime, _me: str | None) -> dict[str, str]:
    with UnitOfWork(runtime) as uow:
        for note in ("first", "second"):
            engine.load_ruleset(uow, engine.default_ruleset_text(), SYSTEM, note=note)
        uow.commit()
    return {"version": "1"}


def _matrix_account(runtime: Runtime, _me: str | None) -> dict[str, str]:
    with UnitOfWork(runtime, read_only=True) as uow:
        exists = uow.conn.execute(select(account.c.id).where(account.c.id == "acc_matrix")).first()
    if exists is None:
        lc.register(runtime, "acc_matrix")
    return {}


def _suppressed(runtime: Runtime, me: str | None) -> dict[str, str]:
    _matrix_account(runtime, me)
    with UnitOfWork(runtime) as uow:
        until = runtime.clock.now() + timedelta(days=1)
        rulesets.suppress(uow, "acc_matrix", "card_testing", until=until, reason="known", actor=SYSTEM)
        uow.commit()
    return {}


def _list_entry(runtime: Runtime, _me: str | None) -> dict[str, str]:
    with UnitOfWork(runtime) as uow:
        entry = lists.add_entry(
            uow, "block", "device", f"dev-{next(_accounts)}", reason="mule", actor=SYSTEM, source_name="t"
        )
        uow.commit()
    return {"entry_id": entry.id}


def _member(runtime: Runtime, _me: str | None) -> dict[str, str]:
    name = f"target{next(_accounts)}"
    make_staff(runtime, name, Role.REVIEWER)
    return {"username": name}


def _disabled_member(runtime: Runtime, me: str | None) -> dict[str, str]:
    found = _member(runtime, me)
    with UnitOfWork(runtime) as uow:
        staff.disable(uow, found["username"], SYSTEM)
        uow.commit()
    return found


def _locked_member(runtime: Runtime, me: str | None) -> dict[str, str]:
    found = _member(runtime, me)
    for _ in range(5):
        with UnitOfWork(runtime) as uow:
            assert staff_sessions.sign_in(uow, found["username"], "wrong wrong wrong") is None
            uow.commit()
    return found


def _api_key(runtime: Runtime, _me: str | None) -> dict[str, str]:
    with UnitOfWork(runtime) as uow:
        info, _secret = apikeys.create_key(uow, "k", ["authz:check"], SYSTEM)
        uow.commit()
    return {"key_id": info.id}


def _new_member(csrf: str) -> dict[str, Any]:
    name = f"new{next(_accounts)}"
    return {"csrf": csrf, "username": name, "roles": ["auditor"], "password": PASSWORD}


def _with_material(runtime: Runtime, me: str | None) -> dict[str, str]:
    appeal_id = new_appeal(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        material = appeals.materials(uow, appeal_id)[0]
    return {"appeal_id": appeal_id, "material_id": material.id}


def _decision(csrf: str) -> dict[str, Any]:
    return {"csrf": csrf, "decision": "approve", "reason_codes": ["evidence_sufficient"], "note": "ok"}


MATRIX = [
    Row("GET", "/console/login", EVERY_ROLE, public=True),
    Row("GET", "/console", frozenset({R, SR})),
    Row("GET", "/console/appeals/{appeal_id}", frozenset({R, SR}), _claimable),
    Row("POST", "/console/appeals/{appeal_id}/claim", frozenset({R, SR}), _claimable),
    Row("POST", "/console/appeals/{appeal_id}/claim", frozenset({SR}), _second),
    Row("POST", "/console/appeals/{appeal_id}/decision", frozenset({R, SR}), _held, _decision),
    Row("POST", "/console/appeals/{appeal_id}/unclaim", frozenset({R, SR}), _held),
    Row("GET", "/console/appeals/{appeal_id}/materials/{material_id}", frozenset({R, SR}), _with_material),
    Row("POST", "/console/appeals/{appeal_id}/decision", frozenset({SR}), _second_held, _decision),
    Row("GET", "/console/audit", frozenset({AU})),
    Row("GET", "/console/dashboard", frozenset({SR, RA, AU, AD})),
    Row("GET", "/console/audit/entries/{seq}", frozenset({AU}), _signed_entry),
    Row("GET", "/console/audit/entries/{seq}/inclusion.json", frozenset({AU}), _signed_entry),
    Row("GET", "/console/audit/export", frozenset({AU}), _signed_entry),
    Row("POST", "/console/audit/verify", frozenset({AU})),
    Row("GET", "/console/rules", frozenset({RA})),
    Row("GET", "/console/rules/versions/{version}", frozenset({RA}), _two_versions),
    Row(
        "POST",
        "/console/rules",
        frozenset({RA}),
        form=lambda csrf: {"csrf": csrf, "source": engine.default_ruleset_text()},
    ),
    Row("POST", "/console/rules/versions/{version}/restore", frozenset({RA}), _two_versions),
    Row("GET", "/console/suppressions", frozenset({RA})),
    Row(
        "POST",
        "/console/suppressions",
        frozenset({RA}),
        _matrix_account,
        lambda csrf: {
            "csrf": csrf,
            "account_id": "acc_matrix",
            "rule_id": "hf_burst",
            "until": "2099-01-01T00:00",
            "reason": "known false positive",
        },
    ),
    Row(
        "POST",
        "/console/suppressions/lift",
        frozenset({RA}),
        _suppressed,
        lambda csrf: {"csrf": csrf, "account_id": "acc_matrix", "rule_id": "card_testing", "reason": "ok"},
    ),
    Row("GET", "/console/lists", frozenset({RA})),
    Row(
        "POST",
        "/console/lists/import",
        frozenset({RA}),
        form=lambda csrf: {"csrf": csrf, "list_type": "block"},
        files={"file": ("m.csv", b"kind,value,reason\ndevice,dev-matrix,mule\n", "text/csv")},
        done=200,
    ),
    Row(
        "POST",
        "/console/lists/entries/{entry_id}/remove",
        frozenset({RA}),
        _list_entry,
        lambda csrf: {"csrf": csrf, "reason": "wrong"},
    ),
    Row("GET", "/console/admin/users", frozenset({AD})),
    Row("POST", "/console/admin/users", frozenset({AD}), form=_new_member),
    Row(
        "POST",
        "/console/admin/users/{username}/roles",
        frozenset({AD}),
        _member,
        lambda csrf: {"csrf": csrf, "roles": ["auditor"]},
    ),
    Row("POST", "/console/admin/users/{username}/disable", frozenset({AD}), _member),
    Row("POST", "/console/admin/users/{username}/enable", frozenset({AD}), _disabled_member),
    Row("POST", "/console/admin/users/{username}/unlock", frozenset({AD}), _locked_member),
    Row(
        "POST",
        "/console/admin/users/{username}/password",
        frozenset({AD}),
        _member,
        lambda csrf: {"csrf": csrf, "password": "another fine passphrase"},
    ),
    Row("GET", "/console/admin/apikeys", frozenset({AD})),
    Row("GET", "/console/admin/settings", frozenset({AD})),
    Row(
        "POST",
        "/console/admin/apikeys",
        frozenset({AD}),
        form=lambda csrf: {"csrf": csrf, "name": "gw", "scopes": ["authz:check"]},
        done=200,
    ),
    Row("POST", "/console/admin/apikeys/{key_id}/revoke", frozenset({AD}), _api_key),
    Row("GET", "/console/account", EVERY_ROLE),
    Row("POST", "/console/account/totp/offer", EVERY_ROLE, done=200),
    Row(
        "POST",
        "/console/account/totp",
        EVERY_ROLE,
        form=lambda csrf: {"csrf": csrf, "offer": "not-an-offer", "code": "000000"},
        done=422,  # past the gate: the made-up offer is refused
    ),
    # The last two end the session.
    Row(
        "POST",
        "/console/account/password",
        EVERY_ROLE,
        form=lambda csrf: {"csrf": csrf, "current": PASSWORD, "password": "a brand new passphrase"},
        to_login=True,
    ),
    Row("POST", "/console/logout", EVERY_ROLE, to_login=True),
]
# POST /console/login is the sign-in itself, exercised by every cell below and by the tests above.
UNMATRIXED = {("POST", "/console/login")}


def test_the_matrix_covers_every_console_route() -> None:
    served = {(m, r.path) for r in console.router.routes for m in getattr(r, "methods", ())}
    assert served == {(row.method, row.template) for row in MATRIX} | UNMATRIXED


@pytest.mark.parametrize("principal", [None, *Role], ids=lambda p: p or "anonymous")
def test_access_control_matrix(
    principal: Role | None, runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser = open_browser()
    me = None
    csrf = ""
    if principal is not None:
        me = make_staff(runtime, "member", principal)
        assert sign_in(browser, "member").status_code == 303
        csrf = csrf_of(browser)
    wrong = []
    for row in MATRIX:
        path = row.template.format(**row.prepare(runtime, me))
        if row.method == "GET":
            reply = browser.get(path, follow_redirects=False)
        else:
            reply = browser.post(path, data=row.form(csrf), files=row.files, follow_redirects=False)
        got = (reply.status_code, reply.headers.get("location") == "/console/login")
        if principal is None:
            want = (200, False) if row.public else (303, True)
        elif principal in row.allowed:
            want = (200, False) if row.method == "GET" else (row.done, row.to_login)
        else:
            want = (403, False)
        if got != want:
            wrong.append(f"{row.method} {row.template} [{row.prepare.__name__}]: got {got}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_the_queue_narrows_to_one_cause_and_to_expedited_cases(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    make_staff(runtime, "carol", Role.REVIEWER)
    browser = open_browser()
    assert sign_in(browser, "carol").status_code == 303
    manual = new_appeal(runtime, ReasonCategory.MANUAL)
    listed = new_appeal(runtime, ReasonCategory.BLACKLIST, vip=1)
    with UnitOfWork(runtime) as uow:
        expedite.expedite(uow, listed, lc.HOLDER)
        uow.commit()
    every = browser.get("/console").text
    assert f'id="row-{manual}"' in every
    assert f'id="row-{listed}"' in every
    by_cause = browser.get("/console", params={"category": "manual"}).text
    assert f'id="row-{manual}"' in by_cause
    assert f'id="row-{listed}"' not in by_cause
    rushed = browser.get("/console", params={"expedited": "true"}).text
    assert f'id="row-{listed}"' in rushed
    assert f'id="row-{manual}"' not in rushed
    assert browser.get("/console", params={"category": "nonsense"}).status_code == 422
