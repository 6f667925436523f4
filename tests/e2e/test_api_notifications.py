"""Notifications over HTTP: webhooks, the holder's inbox and preferences, the outbox, SSE, staff notices."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests import lifecycle as lc
from tests.conftest import make_settings
from tests.e2e.conftest import ClientFactory, issue_key
from tests.e2e.test_api_lifecycle import (
    ACCOUNT,
    FREEZE,
    PROBLEM,
    VOUCHER,
    actions,
    key_id,
    log_size,
    open_and_submit,
)
from tests.receivers import HttpReceiver, Received, wait_for
from thawline.api import sse as routes
from thawline.api.app import create_app
from thawline.domain import notifications as n
from thawline.domain.clock import FakeClock
from thawline.services.dispatcher import Dispatcher
from thawline.services.runtime import Runtime, build_runtime

ZH_ACCOUNT = dict(ACCOUNT, id="acc_zh", language="zh-CN")
QUIET = {"start": "22:00", "end": "08:00", "time_zone": "Asia/Shanghai"}
INTEGRATOR_SCOPES = ("accounts:write", "accounts:read", "freezes:write", "appeals:write", "webhooks:write")


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A real HTTP endpoint on localhost."""
    with HttpReceiver() as r:
        yield r


@pytest.fixture
def integrator(client_with: ClientFactory) -> TestClient:
    """An integrator: registers and freezes its accounts and subscribes to their events."""
    return client_with(*INTEGRATOR_SCOPES)


def subscribe(client: TestClient, url: str, *types: str, **extra: Any) -> dict[str, Any]:
    """Create a subscription; returns the 201 body (with its one-time secret)."""
    made = client.post("/v1/webhooks", json={"url": url, "event_types": list(types), **extra})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def frozen(client: TestClient, account: dict[str, Any] = ACCOUNT) -> str:
    """Register ``account`` and freeze it fully; the freeze id."""
    assert client.post("/v1/accounts", json=account).status_code == 201
    made = client.post(f"/v1/accounts/{account['id']}/freezes", json=FREEZE)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def seq_of(client: TestClient, account_id: str, action: str) -> int:
    """The log seq of the account's (last) ``action`` step, from its holder timeline."""
    items = client.get(f"/v1/accounts/{account_id}/timeline").json()
    return int([i for i in items if i["action"] == action][-1]["seq"])


def field_of(response: Any) -> str:
    """The field a 422 problem names."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return str(response.json()["errors"][0]["field"])


def verified(secret: str, got: Received) -> dict[str, Any]:
    """The payload of a request that verifies under ``secret`` with the standardwebhooks library."""
    payload: dict[str, Any] = Webhook(secret).verify(got.body, got.headers)
    return payload


def test_an_integrator_subscribes_pings_and_the_receiver_verifies_the_signature(
    integrator: TestClient, receiver: HttpReceiver
) -> None:
    made = subscribe(integrator, receiver.url, "account.frozen", "appeal.*", description="gateway")
    secret, sub_id = made["secret"], made["id"]
    assert secret.startswith("whsec_")
    assert (made["integrator"], made["status"]) == (key_id(integrator), "active")
    shown = integrator.get(f"/v1/webhooks/{sub_id}")
    assert (shown.status_code, shown.json()["secret"]) == (200, None)  # shown once only
    assert secret not in shown.text + integrator.get("/v1/webhooks").text
    assert shown.json()["event_types"] == ["account.frozen", "appeal.*"]

    ping = integrator.post(f"/v1/webhooks/{sub_id}/ping")
    assert ping.status_code == 202, ping.text
    delivery = ping.json()
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 200)
    (got,) = receiver.received  # sent right after the commit, with no dispatcher round
    payload = verified(secret, got)
    assert (payload["type"], payload["data"]) == ("webhook.ping", {"subscription_id": sub_id})
    assert got.headers["webhook-id"] == delivery["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(subscribe(integrator, receiver.url, "*")["secret"]).verify(got.body, got.headers)

    (listed,) = integrator.get(f"/v1/webhooks/{sub_id}/deliveries").json()
    assert (listed["status"], listed["event_type"]) == ("delivered", "webhook.ping")
    assert listed["id"] == got.headers["webhook-id"]
    assert integrator.get(f"/v1/webhooks/{sub_id}/deliveries?status=dead").json() == []


def test_bad_subscriptions_name_the_field_and_other_integrators_see_nothing(
    integrator: TestClient, client_with: ClientFactory, receiver: HttpReceiver, runtime: Runtime
) -> None:
    unknown = {"url": receiver.url, "event_types": ["account.frozen", "account.exploded"]}
    assert field_of(integrator.post("/v1/webhooks", json=unknown)) == "event_types[1]"
    assert field_of(integrator.post("/v1/webhooks", json=dict(unknown, event_types=[]))) == "event_types"
    for url in ("ftp://gateway.example/hook", "gateway.example/hook", "http:///hook"):
        bad = {"url": url, "event_types": ["account.frozen"]}
        assert field_of(integrator.post("/v1/webhooks", json=bad)) == "url", url
    assert integrator.get("/v1/webhooks").json() == []
    assert actions(runtime, "webhook.subscribed") == 0

    sub_id = subscribe(integrator, receiver.url, "account.frozen")["id"]
    other = client_with("webhooks:write")
    assert other.get("/v1/webhooks").json() == []
    for call in ("GET ", "GET /deliveries", "POST /rotate", "POST /ping", "PATCH "):
        method, path = call.split(" ")
        hidden = other.request(method, f"/v1/webhooks/{sub_id}{path}", json={"status": "disabled"})
        assert (hidden.status_code, hidden.headers["content-type"]) == (404, PROBLEM), call
    theirs = {"url": receiver.url, "event_types": ["*"], "integrator": key_id(integrator)}
    assert other.post("/v1/webhooks", json=theirs).status_code == 403  # admin keys only
    assert receiver.received == []
    assert integrator.get(f"/v1/webhooks/{sub_id}").json()["status"] == "active"
    assert actions(runtime, "webhook.secret_rotated") + actions(runtime, "webhook.ping_queued") == 0

    no_scope = client_with("accounts:read", "accounts:write")
    for response in (no_scope.get("/v1/webhooks"), no_scope.post("/v1/webhooks", json=theirs)):
        assert (response.status_code, response.headers["content-type"]) == (403, PROBLEM)
    admin = client_with("admin")
    on_behalf = subscribe(admin, receiver.url, "*", integrator=key_id(integrator))
    assert on_behalf["integrator"] == key_id(integrator)
    assert integrator.get(f"/v1/webhooks/{on_behalf['id']}").status_code == 200
    assert len(admin.get("/v1/webhooks").json()) == 2


def test_after_rotation_deliveries_verify_with_the_old_and_the_new_secret_until_the_overlap_ends(
    integrator: TestClient, receiver: HttpReceiver, clock: FakeClock
) -> None:
    made = subscribe(integrator, receiver.url, "*")
    old, sub_id = made["secret"], made["id"]
    rotated = integrator.post(f"/v1/webhooks/{sub_id}/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert datetime.fromisoformat(rotated.json()["previous_secret_valid_until"]) == clock.now() + timedelta(
        hours=24
    )
    assert datetime.fromisoformat(rotated.json()["rotated_at"]) == clock.now()
    assert integrator.get(f"/v1/webhooks/{sub_id}").json()["secret"] is None

    assert integrator.post(f"/v1/webhooks/{sub_id}/ping").json()["status"] == "delivered"
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, got) == verified(new, got)

    clock.advance(timedelta(hours=25))  # the overlap is over: only the new secret signs
    assert integrator.post(f"/v1/webhooks/{sub_id}/ping").json()["status"] == "delivered"
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    assert verified(new, got)["type"] == "webhook.ping"
    with pytest.raises(WebhookVerificationError):
        verified(old, got)


def test_a_freeze_reaches_the_holders_inbox_in_their_language_and_the_subscriber_by_webhook(
    integrator: TestClient, client_with: ClientFactory, receiver: HttpReceiver, runtime: Runtime
) -> None:
    secret = subscribe(integrator, receiver.url, "account.frozen")["secret"]
    stranger = client_with("webhooks:write")
    stranger_sub = subscribe(stranger, receiver.url, "*")["id"]  # not its account: gets nothing
    freeze_id = frozen(integrator, ZH_ACCOUNT)
    holder, reader = client_with("accounts:read", "notifications:write"), client_with("accounts:read")

    box = holder.get("/v1/accounts/acc_zh/inbox").json()
    assert box["unread"] == 1
    (message,) = box["messages"]
    assert (message["template"], message["mandatory"]) == ("frozen", True)
    assert message["title"] == "您的账户已被冻结"  # the account's language
    assert FREEZE["holder_reason"] in message["body"]
    assert freeze_id in message["body"]
    assert "42 card payments" not in message["body"]  # never the internal reason
    assert message["source_seq"] == seq_of(holder, "acc_zh", "account.frozen")

    read = f"/v1/accounts/acc_zh/inbox/{message['id']}/read"
    denied = reader.post(read)
    assert (denied.status_code, denied.headers["content-type"]) == (403, PROBLEM)
    assert reader.get("/v1/accounts/acc_zh/inbox").json()["unread"] == 1
    first = holder.post(read)
    assert first.status_code == 200, first.text
    assert first.json()["read_at"] is not None
    assert holder.post(read).json()["read_at"] == first.json()["read_at"]  # a repeat changes nothing
    assert holder.get("/v1/accounts/acc_zh/inbox").json()["unread"] == 0
    assert holder.get("/v1/accounts/acc_zh/inbox?unread=true").json()["messages"] == []
    assert actions(runtime, "inbox.read") == 1
    elsewhere = holder.post(f"/v1/accounts/acc_7/inbox/{message['id']}/read")
    assert (elsewhere.status_code, elsewhere.headers["content-type"]) == (404, PROBLEM)

    assert receiver.received == []  # events wait for the dispatcher
    Dispatcher(runtime).run_once()
    (got,) = receiver.received
    payload = verified(secret, got)
    assert (payload["type"], payload["data"]["freeze_id"]) == ("account.frozen", freeze_id)
    assert stranger.get(f"/v1/webhooks/{stranger_sub}/deliveries").json() == []


def test_notification_preferences_round_trip_and_bad_input_names_the_field(
    integrator: TestClient, client_with: ClientFactory, runtime: Runtime
) -> None:
    assert integrator.post("/v1/accounts", json=ACCOUNT).status_code == 201
    holder = client_with("accounts:read", "notifications:write")
    url = "/v1/accounts/acc_7/notification-preferences"
    default = holder.get(url).json()
    assert (default["email_opt_out"], default["sms_opt_out"], default["quiet_hours"]) == (False, False, None)
    assert default["mandatory_templates"] == sorted(n.MANDATORY)
    assert "frozen" in default["mandatory_templates"]

    chosen = {"email_opt_out": True, "sms_opt_out": False, "quiet_hours": QUIET}
    stored = holder.put(url, json=chosen)
    assert stored.status_code == 200, stored.text
    expected = chosen | {"mandatory_templates": sorted(n.MANDATORY)}
    assert stored.json() == expected
    assert holder.get(url).json() == expected
    assert holder.put(url, json=chosen).json() == expected  # the same again: nothing new recorded
    assert actions(runtime, "notification.preferences_changed") == 1

    late = dict(chosen, quiet_hours=dict(QUIET, start="25:00"))
    assert field_of(holder.put(url, json=late)) == "quiet_hours.start"
    assert field_of(holder.put(url, json=dict(chosen, quiet_hours=dict(QUIET, end="8pm")))) == (
        "quiet_hours.end"
    )
    mars = dict(chosen, quiet_hours=dict(QUIET, time_zone="Mars/Olympus_Mons"))
    assert field_of(holder.put(url, json=mars)).endswith("time_zone")
    read_only = client_with("accounts:read").put(url, json=dict(chosen, email_opt_out=False))
    assert (read_only.status_code, read_only.headers["content-type"]) == (403, PROBLEM)
    assert holder.get(url).json() == expected
    assert actions(runtime, "notification.preferences_changed") == 1
    assert holder.get("/v1/accounts/acc_nobody/notification-preferences").status_code == 404


@pytest.mark.parametrize(
    ("quiet", "expected"),
    [
        (dict(QUIET, time_zone="Mars/Olympus_Mons"), "quiet_hours.time_zone"),
        (dict(QUIET, end="22:00"), "quiet_hours.end"),
    ],
)
def test_every_quiet_hours_error_names_the_full_field_path(
    integrator: TestClient, client_with: ClientFactory, quiet: dict[str, str], expected: str
) -> None:
    assert integrator.post("/v1/accounts", json=ACCOUNT).status_code == 201
    holder = client_with("accounts:read", "notifications:write")
    bad = holder.put("/v1/accounts/acc_7/notification-preferences", json={"quiet_hours": quiet})
    assert field_of(bad) == expected


@pytest.fixture
def one_try(database_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    """A runtime that dead-letters a message after its first failed attempt."""
    rt = build_runtime(make_settings(database_url, tmp_path, outbox_max_attempts=1), clock=clock)
    try:
        yield rt
    finally:
        rt.close()


def test_operators_see_dead_letters_and_replay_them(one_try: Runtime, receiver: HttpReceiver) -> None:
    def bearer(*scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_key(one_try, *scopes)}"}

    integrator, operator = bearer(*INTEGRATOR_SCOPES), bearer("outbox:admin")
    receiver.status = 500
    with TestClient(create_app(one_try, background=False)) as c:
        made = c.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["*"]}, headers=integrator)
        assert made.status_code == 201, made.text
        assert c.post("/v1/accounts", json=ACCOUNT, headers=integrator).status_code == 201
        assert c.post("/v1/accounts/acc_7/freezes", json=FREEZE, headers=integrator).status_code == 201
        Dispatcher(one_try).run_once()

        for response in (
            c.get("/v1/outbox", headers=integrator),
            c.post("/v1/outbox/msg_x/replay", headers=integrator),
        ):
            assert (response.status_code, response.headers["content-type"]) == (403, PROBLEM)
        dead = c.get("/v1/outbox?status=dead", headers=operator).json()
        assert [(m["channel"], m["event_type"]) for m in dead] == [("webhook", "account.frozen")]
        msg = dead[0]
        assert (msg["attempts"], msg["last_status"], msg["last_error"]) == (1, 500, "HTTP 500")
        sub = f"/v1/webhooks/{made.json()['id']}/deliveries"
        assert [m["id"] for m in c.get(f"{sub}?status=dead", headers=integrator).json()] == [msg["id"]]
        assert field_of(c.get("/v1/outbox?status=lost", headers=operator)) == "status"

        replayed = c.post(f"/v1/outbox/{msg['id']}/replay", headers=operator)
        assert replayed.status_code == 200, replayed.text
        assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
        assert c.post(f"/v1/outbox/{msg['id']}/replay", headers=operator).status_code == 409  # pending
        assert c.post("/v1/outbox/msg_nope/replay", headers=operator).status_code == 404
        assert c.get("/v1/outbox?status=dead", headers=operator).json() == []

        receiver.status = 200
        assert Dispatcher(one_try).run_once().delivered == 1
        (now,) = c.get("/v1/outbox?channel=webhook&account_id=acc_7", headers=operator).json()
        assert (now["id"], now["status"], now["last_status"]) == (msg["id"], "delivered", 200)
    assert receiver.ids() == [msg["id"], msg["id"]]  # the same id twice: the receiver can drop repeats


class LiveStream:
    """Reads a Server-Sent Events stream in a background thread; never blocks the test for long."""

    def __init__(self, client: TestClient, url: str, headers: dict[str, str] | None = None) -> None:
        self.client, self.url, self.headers = client, url, headers or {}
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __enter__(self) -> Self:
        self._cm = self.client.stream("GET", self.url, headers=self.headers, timeout=10)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_for(lambda: "retry: 2000" in self.snapshot(), 5)  # sent once the stream is subscribed
        return self

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines():
                with self.lock:
                    self.lines.append(line)
        except Exception:  # closing the stream ends the read with an error
            return

    def snapshot(self) -> list[str]:
        """The lines so far."""
        with self.lock:
            return list(self.lines)

    def events(self, kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(event, data) of every complete event so far, optionally of one kind."""
        out, event, data = [], "", {}
        for line in self.snapshot():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
            elif not line and event:
                out.append((event, data))
                event = ""
        return [(e, d) for e, d in out if kind in (None, e)]

    def actions(self) -> list[str]:
        """The actions of the status events so far."""
        return [d["action"] for _e, d in self.events("status")]

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "the SSE reader did not stop"


def test_the_holders_stream_pushes_each_step_and_resumes_after_a_seq(integrator: TestClient) -> None:
    assert integrator.post("/v1/accounts", json=ACCOUNT).status_code == 201
    registered = seq_of(integrator, "acc_7", "account.registered")
    with LiveStream(integrator, "/v1/accounts/acc_7/stream") as live:
        freeze_id = integrator.post("/v1/accounts/acc_7/freezes", json=FREEZE).json()["id"]
        wait_for(lambda: bool(live.events("status")) and bool(live.events("message")), 5)
        ((_, status),) = live.events("status")
        assert (status["action"], status["freeze_id"]) == ("account.frozen", freeze_id)
        assert status["summary"] == "Account restricted"  # plain words, the account's language
        assert "42 card payments" not in str(live.snapshot())
        ((_, message),) = live.events("message")
        assert (message["template"], message["title"]) == ("frozen", "Your account has been frozen")
        assert FREEZE["holder_reason"] in message["body"]
        assert message["seq"] == status["seq"] > registered

    with LiveStream(integrator, f"/v1/accounts/acc_7/stream?after={registered}") as resumed:
        wait_for(lambda: "account.frozen" in resumed.actions(), 5)
        assert resumed.actions() == ["account.frozen"]  # the backlog after the seq only
        assert "Unusually many payments" in resumed.events("status")[0][1]["summary"]

    last = {"Last-Event-ID": str(status["seq"])}
    with LiveStream(integrator, "/v1/accounts/acc_7/stream", last) as again:
        released = integrator.post(f"/v1/freezes/{freeze_id}/release", json={"reason": "documented"})
        assert released.status_code == 200, released.text
        wait_for(lambda: "freeze.released" in again.actions(), 5)
        assert again.actions() == ["freeze.released"]
    unknown = integrator.get("/v1/accounts/acc_nobody/stream")
    assert (unknown.status_code, unknown.headers["content-type"]) == (404, PROBLEM)


def test_a_step_committed_while_the_stream_opens_still_arrives(
    integrator: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert integrator.post("/v1/accounts", json=ACCOUNT).status_code == 201
    registered = seq_of(integrator, "acc_7", "account.registered")
    feed, real = integrator.app.state.live, routes.run_in_threadpool  # type: ignore[attr-defined]

    def freeze_and_let_the_feed_poll() -> None:
        lc.freeze(runtime, "acc_7")
        wait_for(lambda: feed.position == log_size(runtime), 5)

    async def load_then_commit(fn: Any, *args: Any) -> Any:  # the race, made certain
        loaded = await real(fn, *args)
        monkeypatch.setattr(routes, "run_in_threadpool", real)
        await real(freeze_and_let_the_feed_poll)
        return loaded

    monkeypatch.setattr(routes, "run_in_threadpool", load_then_commit)
    with LiveStream(integrator, f"/v1/accounts/acc_7/stream?after={registered}") as live:
        wait_for(lambda: "account.frozen" in live.actions(), 3)


def test_a_reviewer_sees_and_acknowledges_the_notice_of_an_assignment(
    integrator: TestClient, client_with: ClientFactory, runtime: Runtime
) -> None:
    appeal_id = open_and_submit(integrator, frozen(integrator), [{"kind": "explanation_letter"}, VOUCHER])
    lead, ann, bob = client_with("reviews:lead"), client_with("reviews:write"), client_with("reviews:write")
    assigned = lead.post(f"/v1/appeals/{appeal_id}/assign", json={"reviewer": f"reviewer:{key_id(ann)}"})
    assert assigned.status_code == 200, assigned.text

    (notice,) = [m for m in ann.get("/v1/staff/notices").json() if m["template"] == "staff_assigned"]
    assert (notice["appeal_id"], notice["read_at"]) == (appeal_id, None)
    assert appeal_id in notice["body"]
    assert "staff_assigned" not in [m["template"] for m in bob.get("/v1/staff/notices").json()]
    foreign = bob.post(f"/v1/staff/notices/{notice['id']}/read")
    assert (foreign.status_code, foreign.headers["content-type"]) == (404, PROBLEM)
    no_scope = integrator.get("/v1/staff/notices")
    assert (no_scope.status_code, no_scope.headers["content-type"]) == (403, PROBLEM)

    read = ann.post(f"/v1/staff/notices/{notice['id']}/read")
    assert read.status_code == 200, read.text
    assert read.json()["read_at"] is not None
    assert ann.post(f"/v1/staff/notices/{notice['id']}/read").json()["read_at"] == read.json()["read_at"]
    assert notice["id"] not in [m["id"] for m in ann.get("/v1/staff/notices?unread=true").json()]
    assert actions(runtime, "staff_notice.read") == 1
