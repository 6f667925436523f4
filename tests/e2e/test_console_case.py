"""The case page's evidence over HTTP: the linked-account graph (frozen neighbours marked), the account's
events with the rules that fired, the materials viewer, and handing a case back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient

from tests import lifecycle as lc
from tests.e2e.test_console import claim, make_staff, new_appeal, open_browser, sign_in, status_of
from tests.files import pdf, png
from thawline.domain.appeals import MaterialKind
from thawline.domain.events import Login, Transaction
from thawline.domain.freezes import ReasonCategory
from thawline.domain.staff import Role
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import appeals, engine
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

__all__ = ["open_browser"]  # the fixture, imported for the tests here
GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")


def reviewer(runtime: Runtime, open_browser: Callable[[], TestClient]) -> TestClient:
    make_staff(runtime, "rev", Role.REVIEWER)
    browser = open_browser()
    assert sign_in(browser, "rev").status_code == 303
    return browser


def test_the_case_shows_linked_accounts_and_the_events_behind_the_freeze(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    lc.register(runtime, "acc_a", kyc="full")  # the appellant, with the phone the appeal names
    for n, account_id in enumerate(("acc_b", "acc_c", "acc_far")):
        lc.register(runtime, account_id, kyc="full", phone=f"+8613900{n:06d}")
    t0 = runtime.clock.now()

    def login(i: int, account_id: str, device: str) -> Login:
        return Login(
            id=f"l{i}",
            account_id=account_id,
            occurred_at=t0 + timedelta(seconds=i),
            ip=f"203.0.113.{i}",
            device_id=device,
        )

    pay = Transaction(
        id="p1",
        account_id="acc_a",
        occurred_at=t0 + timedelta(seconds=10),
        transaction_id="t1",
        amount=Decimal("12.50"),
        currency="CNY",
        direction="debit",
    )
    # acc_a and acc_b share a device; acc_c shares another device with acc_b only.
    events = [login(1, "acc_a", "dev-ab"), login(2, "acc_b", "dev-ab"), login(3, "acc_b", "dev-bc")]
    events += [login(4, "acc_c", "dev-bc"), pay]
    engine.RiskEngine(runtime).ingest(events, GATEWAY)
    lc.freeze(runtime, "acc_c")  # a frozen account two hops away
    appeal_id = lc.submit_appeal(runtime, lc.freeze(runtime, "acc_a"))
    page = reviewer(runtime, open_browser).get(f"/console/appeals/{appeal_id}").text
    graph = page.split('id="links"')[1].split("</section>")[0]
    assert 'data-account="acc_a" data-hop="0"' in graph
    assert 'data-account="acc_b" data-hop="1"' in graph
    assert 'class="node frozen" data-account="acc_c" data-hop="2"' in graph
    assert "acc_far" not in graph
    assert "<code>device:dev-ab</code> — acc_a, acc_b" in graph  # one line per shared key
    assert "<code>device:dev-bc</code> — acc_b, acc_c" in graph
    activity = page.split('id="activity"')[1].split("</section>")[0]
    assert 'id="event-p1"' in activity
    assert "amount=12.50" in activity
    assert 'id="event-l1"' in activity
    assert "device_id=dev-ab" in activity


def test_a_case_without_links_says_so(runtime: Runtime, open_browser: Callable[[], TestClient]) -> None:
    appeal_id = new_appeal(runtime)
    page = reviewer(runtime, open_browser).get(f"/console/appeals/{appeal_id}").text
    assert 'id="no-links"' in page


def test_materials_open_in_the_viewer_with_their_sniffed_type(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    lc.register(runtime, "acc_m")
    freeze_id = lc.freeze(runtime, "acc_m", ReasonCategory.MANUAL)
    with UnitOfWork(runtime) as uow:
        made, _ = appeals.open_appeal(
            uow, freeze_id, explanation="mine", contact_channel="in_site", contact_value=None, actor=lc.HOLDER
        )
        appeals.add_material(
            uow, made.id, kind=MaterialKind.OTHER, data=png(4, 4), transaction_ids=(), actor=lc.HOLDER
        )
        for kind in appeals.completeness(uow, made.id).required_materials:
            appeals.add_material(
                uow, made.id, kind=kind, data=pdf(kind.value), transaction_ids=(), actor=lc.HOLDER
            )
        appeals.submit(uow, made.id, lc.HOLDER)
        uow.commit()
    appeal_id = made.id
    browser = reviewer(runtime, open_browser)
    with UnitOfWork(runtime, read_only=True) as uow:
        found = appeals.materials(uow, appeal_id)
    page = browser.get(f"/console/appeals/{appeal_id}").text
    image = next(m for m in found if m.media_type == "image/png")
    document = next(m for m in found if m.media_type == "application/pdf")
    assert f'<img src="/console/appeals/{appeal_id}/materials/{image.id}"' in page
    shown = browser.get(f"/console/appeals/{appeal_id}/materials/{image.id}")
    assert shown.status_code == 200
    assert shown.headers["content-type"] == "image/png"
    assert shown.content == png(4, 4)
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in shown.headers["content-security-policy"]
    document_reply = browser.get(f"/console/appeals/{appeal_id}/materials/{document.id}")
    assert document_reply.headers["content-type"] == "application/pdf"
    assert document_reply.headers["content-disposition"].startswith("inline;")
    other = new_appeal(runtime)  # a material of another case is not reachable through this one
    assert browser.get(f"/console/appeals/{other}/materials/{image.id}").status_code == 404


def test_a_reviewer_hands_a_case_back_to_the_queue(
    runtime: Runtime, open_browser: Callable[[], TestClient]
) -> None:
    appeal_id = new_appeal(runtime)
    browser = reviewer(runtime, open_browser)
    assert claim(browser, appeal_id).status_code == 303
    assert 'id="unclaim"' in browser.get(f"/console/appeals/{appeal_id}").text
    csrf = browser.get("/console").text.split('name="csrf" value="')[1].split('"')[0]
    back = browser.post(f"/console/appeals/{appeal_id}/unclaim", data={"csrf": csrf}, follow_redirects=False)
    assert back.status_code == 303
    page = browser.get(f"/console/appeals/{appeal_id}").text
    assert 'id="claim"' in page
    assert status_of(runtime, appeal_id) == "in_review"
    again = browser.post(f"/console/appeals/{appeal_id}/unclaim", data={"csrf": csrf})
    assert again.status_code == 409
