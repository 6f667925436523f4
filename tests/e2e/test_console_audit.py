"""The console's audit pages: log search, an entry with its inclusion proof, the downloadable bundle that
verifies offline, and who may see them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import lifecycle as lc
from tests.e2e.test_console import make_staff, sign_in
from tests.integration.tamper import edit_bundle
from thawline.api.app import create_app
from thawline.domain.clock import FakeClock
from thawline.domain.staff import Role
from thawline.oplog.bundles import check_export, check_inclusion
from thawline.oplog.entry import decode_entry
from thawline.oplog.merkle import leaf_hash
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


@pytest.fixture
def browser_as(runtime: Runtime) -> Iterator[Callable[[Role | None], TestClient]]:
    """``browser_as(role)``: a browser over https signed in as a new member with ``role`` (None: nobody)."""
    clients: list[TestClient] = []

    def make(role: Role | None) -> TestClient:
        client = TestClient(create_app(runtime, background=False), base_url="https://testserver")
        clients.append(client.__enter__())
        if role is not None:
            name = f"{role.value.replace('_', '-')}-{len(clients)}"
            make_staff(runtime, name, role)
            assert sign_in(client, name).status_code == 303
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _entries(runtime: Runtime) -> list[tuple[int, dict[str, Any]]]:
    with UnitOfWork(runtime, read_only=True) as uow:
        return [(seq, decode_entry(bytes(data))) for seq, data, _c in uow.oplog.entries()]


def _sign_checkpoint(runtime: Runtime) -> int:
    with UnitOfWork(runtime) as uow:
        cp = runtime.log.checkpoint(uow)
        uow.commit()
    assert cp is not None
    return cp.tree_size


def _listed(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'id="entry-(\d+)"', html)]


def _world(runtime: Runtime) -> None:
    for account_id in ("acc_a", "acc_b"):
        lc.register(runtime, account_id)
        lc.freeze(runtime, account_id)


def test_an_auditor_searches_by_account_action_and_actor(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    _world(runtime)
    size = _sign_checkpoint(runtime)
    auditor = browser_as(Role.AUDITOR)
    everything = _entries(runtime)

    page = auditor.get("/console/audit?lang=en")
    assert page.status_code == 200
    assert f'id="tree-size">{len(everything)}<' in page.text
    assert f"tree size {size}" in page.text
    assert 'href="/console/audit?lang=en"' in page.text  # the nav link
    assert _listed(page.text) == [seq for seq, _e in everything]  # oldest first

    by_account = auditor.get("/console/audit", params={"account_id": "acc_a"})
    want = [
        s
        for s, e in everything
        if isinstance(e["subject"], dict) and e["subject"].get("account_id") == "acc_a"
    ]
    assert want
    assert _listed(by_account.text) == want

    action = str(everything[-1][1]["action"])
    by_action = auditor.get("/console/audit", params={"action": action})
    assert _listed(by_action.text) == [s for s, e in everything if e["action"] == action]

    by_actor = auditor.get("/console/audit", params={"actor": lc.CREATOR.ref})
    created = [s for s, e in everything if e["actor"] == {"kind": "reviewer", "id": "rv_creator"}]
    assert created
    assert _listed(by_actor.text) == created

    first = auditor.get("/console/audit", params={"limit": 2})
    assert _listed(first.text) == [everything[0][0], everything[1][0]]
    more = re.search(r'id="next" href="([^"]+)"', first.text)
    assert more
    second = auditor.get(more.group(1).replace("&amp;", "&"))
    assert _listed(second.text) == [everything[2][0], everything[3][0]]
    assert auditor.get("/console/audit", params={"limit": 201}).status_code == 422


def test_the_entry_page_shows_the_entry_and_its_proof_and_the_bundle_verifies_offline(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    _world(runtime)
    _sign_checkpoint(runtime)
    auditor = browser_as(Role.AUDITOR)
    seq, entry = next((s, e) for s, e in _entries(runtime) if e["action"] != "staff.created")
    with UnitOfWork(runtime, read_only=True) as uow:
        data = uow.oplog.entry_data(seq)
    assert data is not None

    page = auditor.get(f"/console/audit/entries/{seq}?lang=en")
    assert page.status_code == 200
    assert leaf_hash(bytes(data)).hex() in page.text
    assert f"&#34;action&#34;: &#34;{entry['action']}&#34;" in page.text  # pretty-printed, escaped
    assert 'id="verified"><span class="sla-ok">' in page.text
    assert 'id="download" href="/console/audit/entries/' in page.text

    download = auditor.get(f"/console/audit/entries/{seq}/inclusion.json")
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    bundle = json.loads(download.content)
    checked = check_inclusion(bundle, [runtime.verifier])
    assert checked.seq == seq
    assert checked.data == bytes(data)
    assert decode_entry(checked.data) == entry


def test_an_entry_no_checkpoint_covers_says_so(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    second = browser_as(Role.AUDITOR)  # a second auditor session
    seq = _entries(runtime)[-1][0]
    page = second.get(f"/console/audit/entries/{seq}?lang=en")
    assert page.status_code == 200
    assert 'id="not-covered"' in page.text
    assert second.get(f"/console/audit/entries/{seq}/inclusion.json").status_code == 409
    assert second.get("/console/audit/entries/99999").status_code == 404


def test_a_reviewer_is_refused_and_nobody_is_sent_to_sign_in(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    _world(runtime)
    _sign_checkpoint(runtime)
    reviewer = browser_as(Role.REVIEWER)
    for path in ("/console/audit", "/console/audit/entries/0", "/console/audit/entries/0/inclusion.json"):
        assert reviewer.get(path).status_code == 403
    assert 'href="/console/audit' not in reviewer.get("/console?lang=en").text  # no nav link
    nobody = browser_as(None)
    reply = nobody.get("/console/audit", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/console/login"


def test_an_auditor_narrows_the_log_to_days(
    runtime: Runtime, clock: FakeClock, browser_as: Callable[[Role | None], TestClient]
) -> None:
    lc.register(runtime, "acc_a")  # day 0
    clock.advance(timedelta(days=2))
    lc.freeze(runtime, "acc_a")  # day 2
    clock.advance(timedelta(days=2))
    lc.register(runtime, "acc_b")  # day 4
    auditor = browser_as(Role.AUDITOR)  # signs in on day 4 (its own entries are stamped then)
    everything = _entries(runtime)
    day2 = (clock.now() - timedelta(days=2)).date().isoformat()
    wanted = [seq for seq, e in everything if str(e["ts"]).startswith(day2)]
    assert wanted
    shown = _listed(auditor.get("/console/audit", params={"since": day2, "until": day2}).text)
    assert shown == wanted
    later = _listed(auditor.get("/console/audit", params={"since": day2}).text)
    assert later == [seq for seq, _e in everything if seq >= wanted[0]]
    assert auditor.get("/console/audit", params={"since": "yesterday"}).status_code == 422


def test_an_auditor_downloads_a_log_range_that_checks_offline_and_the_export_is_logged(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    _world(runtime)
    size = _sign_checkpoint(runtime)
    auditor = browser_as(Role.AUDITOR)
    assert 'id="export"' in auditor.get("/console/audit").text
    got = auditor.get("/console/audit/export", params={"dataset": "log", "format": "jsonl", "to_seq": size})
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in got.text.splitlines()]
    assert check_export(lines, [runtime.verifier]) == size  # every entry proven against the checkpoint
    cases = auditor.get("/console/audit/export", params={"dataset": "cases", "format": "csv"})
    assert cases.status_code == 200
    assert cases.text.count("\n") == 3  # the header and the two freezes
    assert lc.PHONE not in cases.text
    exported = [e for _s, e in _entries(runtime) if e["action"] == "export.created"]
    assert [e["details"]["dataset"] for e in exported] == ["log", "cases"]
    assert all(e["actor"]["kind"] == "reviewer" for e in exported)
    refused = auditor.get("/console/audit/export", params={"dataset": "everything"})
    assert refused.status_code == 422


def test_an_auditor_verifies_the_log_from_the_page_and_sees_a_tampered_entry(
    runtime: Runtime, browser_as: Callable[[Role | None], TestClient]
) -> None:
    _world(runtime)
    _sign_checkpoint(runtime)
    auditor = browser_as(Role.AUDITOR)
    page = auditor.get("/console/audit")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    done = auditor.post("/console/audit/verify", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    shown = auditor.get(done.headers["location"]).text
    assert 'id="verify-result" class="ok"' in shown
    recorded = [e for _s, e in _entries(runtime) if e["action"] == "log.verified"]
    assert recorded[-1]["details"]["ok"] is True

    def flip(entries: list[bytes], _c: list[bytes], _a: list[str], i: int) -> None:
        data = bytearray(entries[i])
        data[data.index(b"acc_a")] ^= 0x01  # someone edits a stored entry behind Thawline's back
        entries[i] = bytes(data)

    edit_bundle(runtime.engine, 1, flip)
    again = auditor.post("/console/audit/verify", data={"csrf": csrf}, follow_redirects=False)
    shown = auditor.get(again.headers["location"]).text
    assert 'id="verify-result" class="error"' in shown
    assert auditor.post("/console/audit/verify", data={"csrf": "forged"}).status_code == 403
