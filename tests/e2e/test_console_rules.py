"""The console's analyst pages over HTTP: ruleset versions, their diff and restoring one, what each rule
did, suppressions, and list import and removal — each change logged under the analyst's name, each
refusal changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient

from tests import lifecycle as lc
from tests.e2e.test_console import actions, csrf_of, make_staff, open_browser, sign_in
from thawline.domain.clock import FakeClock
from thawline.domain.events import Transaction
from thawline.domain.staff import Role
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import engine, lists, rulesets
from thawline.services.engine import default_ruleset_text
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

__all__ = ["open_browser"]  # the fixture, imported for the tests here
GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")


def analyst(runtime: Runtime, open_browser: Callable[[], TestClient]) -> tuple[TestClient, str]:
    """A signed-in risk analyst's browser and their staff id."""
    member = make_staff(runtime, "ana", Role.RISK_ANALYST)
    browser = open_browser()
    assert sign_in(browser, "ana").status_code == 303
    return browser, member


def versions(runtime: Runtime) -> list[int]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [v.version for v in rulesets.versions(uow)]


def test_an_analyst_loads_a_version_sees_the_diff_and_restores_the_old_one(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, member = analyst(runtime, open_browser)
    page = browser.get("/console/rules")
    assert page.status_code == 200
    assert 'id="rule-card_testing"' in page.text  # the shipped default, before any is stored
    edited = default_ruleset_text().replace("small_txn_count_10m >= 8", "small_txn_count_10m >= 12")
    edited = edited.replace("  - id: card_testing", "  - id: card_testing_v2", 1)
    sent = browser.post(
        "/console/rules",
        data={"csrf": csrf_of(browser), "source": default_ruleset_text(), "note": "baseline"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    sent = browser.post(
        "/console/rules",
        data={"csrf": csrf_of(browser), "source": edited, "note": "fewer card-testing freezes"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    assert versions(runtime) == [2, 1]
    diff = browser.get("/console/rules/versions/2")
    assert diff.status_code == 200
    assert 'data-rule="card_testing_v2"' in diff.text
    assert 'class="change-added"' in diff.text
    assert 'data-rule="card_testing"' in diff.text
    assert 'class="change-removed"' in diff.text
    assert "+    when: event_type == &#34;transaction&#34; and small_txn_count_10m &gt;= 12" in diff.text
    logged = actions(runtime, "ruleset.activated")
    assert [e["actor"] for e in logged] == [{"kind": "reviewer", "id": member}] * 2
    restored = browser.post(
        "/console/rules/versions/1/restore", data={"csrf": csrf_of(browser)}, follow_redirects=False
    )
    assert restored.status_code == 303
    assert versions(runtime) == [3, 2, 1]
    with UnitOfWork(runtime, read_only=True) as uow:
        assert rulesets.source(uow, 3) == default_ruleset_text()
    # the page for v3 shows v2's removed rule coming back
    page3 = browser.get("/console/rules/versions/3").text
    assert 'data-rule="card_testing"' in page3
    assert 'class="change-added"' in page3


def test_a_ruleset_that_does_not_compile_is_refused_and_nothing_changes(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, _member = analyst(runtime, open_browser)
    before = len(actions(runtime))
    bad = default_ruleset_text().replace("small_txn_count_10m >= 8", "small_txn_count_10m >= ", 1)
    reply = browser.post("/console/rules", data={"csrf": csrf_of(browser), "source": bad})
    assert reply.status_code == 422
    assert 'id="error"' in reply.text
    assert "card_testing" in reply.text
    assert versions(runtime) == []
    assert len(actions(runtime)) == before
    again = browser.post("/console/rules/versions/9/restore", data={"csrf": csrf_of(browser)})
    assert again.status_code == 404


def test_the_rules_page_counts_shadow_hits_from_real_decisions(
    runtime: Runtime, clock: FakeClock, open_browser: Callable[[], TestClient]
) -> None:
    lc.register(runtime, "acc_1", kyc="full")
    shadowed = default_ruleset_text().replace(
        "  - id: card_testing\n", "  - id: card_testing\n    shadow: true\n"
    )
    with UnitOfWork(runtime) as uow:
        engine.load_ruleset(uow, shadowed, GATEWAY, note="try card_testing in shadow")
        uow.commit()
    t0 = runtime.clock.now()
    burst = [
        Transaction(
            id=f"e{i}",
            account_id="acc_1",
            occurred_at=t0 + timedelta(seconds=20 * i),
            transaction_id=f"t{i}",
            amount=Decimal("1.50"),
            currency="CNY",
            direction="debit",
        )
        for i in range(9)
    ]
    engine.RiskEngine(runtime).ingest(burst, GATEWAY)
    with UnitOfWork(runtime, read_only=True) as uow:
        stats = rulesets.rule_stats(uow, t0 - timedelta(days=7))
    assert stats["card_testing"].applied == {"shadow": 2}  # the 8th and 9th small payments
    assert (stats["card_testing"].hits, stats["card_testing"].accounts) == (2, 1)
    browser, _member = analyst(runtime, open_browser)
    row = browser.get("/console/rules").text.split('id="rule-card_testing"')[1].split("</tr>")[0]
    assert "shadow 2" in row
    clock.advance(timedelta(days=8))  # a week later the hits have left the window
    with UnitOfWork(runtime, read_only=True) as uow:
        assert rulesets.rule_stats(uow, runtime.clock.now() - timedelta(days=7)) == {}


def test_suppress_and_lift_through_the_pages(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, member = analyst(runtime, open_browser)
    lc.register(runtime, "acc_sup")
    until = (runtime.clock.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    form = {"csrf": csrf_of(browser), "account_id": "acc_sup", "rule_id": "card_testing", "until": until}
    missing = browser.post("/console/suppressions", data=form)
    assert missing.status_code == 422
    assert "reason" in missing.text
    past = browser.post("/console/suppressions", data=form | {"reason": "x", "until": "2000-01-01T00:00"})
    assert past.status_code == 422
    assert "future" in past.text
    unknown = browser.post("/console/suppressions", data=form | {"reason": "x", "rule_id": "nope"})
    assert unknown.status_code == 422
    assert "nope" in unknown.text
    assert actions(runtime, "rule.") == []
    ok = browser.post(
        "/console/suppressions", data=form | {"reason": "salary day, known"}, follow_redirects=False
    )
    assert ok.status_code == 303
    listed = browser.get("/console/suppressions").text
    assert 'id="suppression-acc_sup-card_testing"' in listed
    assert "salary day, known" in listed
    lifted = browser.post(
        "/console/suppressions/lift",
        data={"csrf": csrf_of(browser), "account_id": "acc_sup", "rule_id": "card_testing", "reason": "done"},
        follow_redirects=False,
    )
    assert lifted.status_code == 303
    assert 'id="empty"' in browser.get("/console/suppressions").text
    logged = actions(runtime, "rule.")
    assert [e["action"] for e in logged] == ["rule.suppressed", "rule.suppression_lifted"]
    assert all(e["actor"] == {"kind": "reviewer", "id": member} for e in logged)
    assert all("salary" not in str(e) for e in logged)  # only the reason's hash is logged


def test_list_import_reports_bad_lines_and_removal_as_erroneous_rereviews(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    browser, member = analyst(runtime, open_browser)
    csv_text = (
        "kind,value,reason\nphone,+8613800138000,fraud ring\nphone,not-a-phone,bad\ndevice,dev-1,mule\n"
    )
    reply = browser.post(
        "/console/lists/import",
        data={"csrf": csrf_of(browser), "list_type": "block"},
        files={"file": ("ring.csv", csv_text.encode(), "text/csv")},
    )
    assert reply.status_code == 200
    assert 'id="imported"' in reply.text
    assert 'id="line-errors"' in reply.text
    assert "+8613800138000" not in reply.text  # values are never shown
    page = browser.get("/console/lists").text
    assert "ring.csv" in page
    empty = browser.post(
        "/console/lists/import",
        data={"csrf": csrf_of(browser), "list_type": "block"},
        files={"file": ("none.csv", b"kind,value,reason\nphone,nope,x\n", "text/csv")},
    )
    assert empty.status_code == 422
    assert 'id="line-errors"' in empty.text
    imports = actions(runtime, "list.")
    assert imports
    assert all(e["actor"] == {"kind": "reviewer", "id": member} for e in imports)
    with UnitOfWork(runtime, read_only=True) as uow:
        entry = next(e for e in lists.list_entries(uow) if e.kind == "device")
    removed = browser.post(
        f"/console/lists/entries/{entry.id}/remove",
        data={"csrf": csrf_of(browser), "reason": "vendor data was wrong", "erroneous": "true"},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    twice = browser.post(
        f"/console/lists/entries/{entry.id}/remove",
        data={"csrf": csrf_of(browser), "reason": "again"},
    )
    assert twice.status_code == 409
