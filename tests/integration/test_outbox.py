"""The outbox and the dispatcher against real receivers (HTTP, SMTP), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests import lifecycle as lc
from tests.conftest import make_settings
from tests.receivers import HttpReceiver, SmtpServer, self_signed
from thawline.adapters.db.schema import inbox_message, notification_outbox
from thawline.domain.clock import FakeClock
from thawline.domain.review import Decision
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import accounts, freezes, inbox, outbox, review, verification, webhooks
from thawline.services.dispatcher import Dispatcher
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

INTEGRATOR = "ak_gateway0001"
EMAIL = "meimei.han@example.com"
OPS = Actor(ActorKind.SYSTEM, "ops")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on localhost."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A real HTTP endpoint on localhost."""
    with HttpReceiver() as r:
        yield r


@pytest.fixture
def rt(database_url: str, tmp_path: Path, clock: FakeClock, smtp: SmtpServer) -> Iterator[Runtime]:
    """A runtime that sends email to the local SMTP server and retries quickly (3 attempts)."""
    settings = make_settings(
        database_url,
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        outbox_max_attempts=3,
        outbox_backoff_seconds=10,
    )
    runtime = build_runtime(settings, clock=clock)
    try:
        yield runtime
    finally:
        runtime.close()


def _register(rt: Runtime, account_id: str = "acc_1", *, language: str = "zh-CN") -> None:
    with UnitOfWork(rt) as uow:
        accounts.register(
            uow,
            accounts.RegisterAccount(
                account_id, "韩梅梅", phone=lc.PHONE, email=EMAIL, language=language, integrator=INTEGRATOR
            ),
            lc.CREATOR,
        )
        uow.commit()


def _subscribe(rt: Runtime, url: str, *types: str) -> str:
    with UnitOfWork(rt) as uow:
        _sub, secret = webhooks.create(
            uow, INTEGRATOR, url=url, event_types=list(types or ("*",)), description="", actor=OPS
        )
        uow.commit()
    return secret


def _rows(rt: Runtime, **where: str) -> list[dict[str, object]]:
    with UnitOfWork(rt, read_only=True) as uow:
        query = select(notification_outbox).order_by(
            notification_outbox.c.created_at, notification_outbox.c.id
        )
        for column, value in where.items():
            query = query.where(notification_outbox.c[column] == value)
        return [dict(r._mapping) for r in uow.conn.execute(query)]


def _actions(rt: Runtime, prefix: str) -> list[dict[str, object]]:
    with UnitOfWork(rt, read_only=True) as uow:
        entries = [decode_entry(d) for _s, d, _c in uow.oplog.entries()]
    return [e for e in entries if str(e["action"]).startswith(prefix)]


def test_a_freeze_writes_its_message_and_outbox_rows_in_its_own_transaction(
    rt: Runtime, receiver: HttpReceiver
) -> None:
    _register(rt)
    _subscribe(rt, receiver.url, "account.*")
    freeze_id = lc.freeze(rt)
    (frozen,) = _actions(rt, "account.frozen")
    rows = _rows(rt)
    assert sorted((r["channel"], r["template"] or r["event_type"]) for r in rows) == [
        ("email", "frozen"),
        ("sms", "frozen"),
        ("webhook", "account.frozen"),
    ]
    assert {r["source_seq"] for r in rows} == {frozen["seq"]}
    assert all(r["status"] == "pending" and r["mandatory"] for r in rows)
    with UnitOfWork(rt, read_only=True) as uow:
        (message,) = inbox.messages(uow, "acc_1")
        assert inbox.unread_count(uow, "acc_1") == 1
    assert message.source_seq == frozen["seq"]
    assert "您的账户" in message.body  # the holder's language
    assert "holder reason" in message.body  # and the reason
    body = orjson.loads(next(r for r in rows if r["channel"] == "webhook")["payload"])  # type: ignore[arg-type]
    assert body["type"] == "account.frozen"
    assert body["data"] | {"log_seq": frozen["seq"]} == body["data"]
    assert body["data"]["freeze_id"] == freeze_id
    # Personal data never sits in the outbox: addresses are looked up from the vault when sending.
    assert not any(EMAIL in str(r["payload"]) or "13800138000" in str(r["payload"]) for r in rows)


def test_a_change_that_rolls_back_leaves_no_message(rt: Runtime) -> None:
    _register(rt)
    before = len(_rows(rt))
    with UnitOfWork(rt) as uow:
        lc_cmd = freezes.FreezeAccount(
            "acc_1",
            lc.Restriction(lc.FreezeScope.FULL),
            lc.ReasonCategory.MANUAL,
            ("CODE_1",),
            lc.SourceKind.REVIEWER,
            "rv",
            "terms",
            "internal",
            "holder reason",
        )
        freezes.freeze_account(uow, lc_cmd, lc.CREATOR)
        # no commit: the unit of work rolls back on exit
    assert len(_rows(rt)) == before
    with UnitOfWork(rt, read_only=True) as uow:
        assert inbox.messages(uow, "acc_1") == []


def test_webhooks_are_signed_delivered_once_and_recorded(rt: Runtime, receiver: HttpReceiver) -> None:
    _register(rt)
    secret = _subscribe(rt, receiver.url, "account.frozen", "account.released")
    freeze_id = lc.freeze(rt)
    stats = Dispatcher(rt).run_once()
    assert stats.delivered == 3  # the webhook, the email and the SMS
    (got,) = receiver.received
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "account.frozen"
    assert payload["data"]["freeze_id"] == freeze_id
    (row,) = _rows(rt, channel="webhook")
    assert got.headers["webhook-id"] == row["id"]
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 1, 200)
    assert Dispatcher(rt).run_once().claimed == 0  # nothing is sent twice
    delivered = _actions(rt, "notification.delivered")
    assert {e["subject"]["ref"] for e in delivered} == {f"msg:{r['id']}" for r in _rows(rt)}
    assert verify_log(rt).ok


def test_a_failing_receiver_backs_off_then_dead_letters_and_a_replay_delivers(
    rt: Runtime, receiver: HttpReceiver, clock: FakeClock
) -> None:
    _register(rt)
    _subscribe(rt, receiver.url, "account.frozen")
    receiver.status = 503
    lc.freeze(rt)
    d = Dispatcher(rt)
    d.run_once()
    (row,) = _rows(rt, channel="webhook")
    assert (row["status"], row["attempts"], row["last_status"]) == ("pending", 1, 503)
    wait = row["next_attempt_at"] - clock.now()  # type: ignore[operator]
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=10)  # 10 s with jitter in [½, 1]
    assert d.run_once().claimed == 0  # not before its time
    clock.advance(timedelta(seconds=11))
    d.run_once()
    (row,) = _rows(rt, channel="webhook")
    assert row["attempts"] == 2
    assert timedelta(seconds=10) <= row["next_attempt_at"] - clock.now() <= timedelta(seconds=20)  # type: ignore[operator]
    clock.advance(timedelta(seconds=21))
    d.run_once()
    (row,) = _rows(rt, channel="webhook")
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert [e["action"] for e in _actions(rt, "notification.") if e["details"]["channel"] == "webhook"] == [
        "notification.retry_scheduled",
        "notification.retry_scheduled",
        "notification.dead_lettered",
    ]
    receiver.status = 200
    with UnitOfWork(rt) as uow:
        assert outbox.replay_dead(uow, OPS) == 1
        uow.commit()
    d.run_once()
    (row,) = _rows(rt, channel="webhook")
    assert row["status"] == "delivered"
    assert set(receiver.ids()) == {row["id"]}  # four tries, one id: the receiver can drop repeats
    assert len(receiver.ids()) == 4


def test_gone_is_permanent(rt: Runtime, receiver: HttpReceiver) -> None:
    _register(rt)
    _subscribe(rt, receiver.url, "account.frozen")
    receiver.status = 410
    lc.freeze(rt)
    Dispatcher(rt).run_once()
    (row,) = _rows(rt, channel="webhook")
    assert (row["status"], row["attempts"]) == ("dead", 1)


def test_a_refusing_smtp_server_means_backoff_then_a_dead_letter_then_a_replay_delivers(
    rt: Runtime, smtp: SmtpServer, clock: FakeClock
) -> None:
    _register(rt)
    smtp.reply = "451 4.3.0 mailbox busy, try later"
    lc.freeze(rt)
    d = Dispatcher(rt)
    for attempt in (1, 2, 3):
        d.run_once()
        (row,) = _rows(rt, channel="email")
        assert (row["attempts"], row["last_status"]) == (attempt, 451)
        clock.advance(timedelta(minutes=1))
    assert row["status"] == "dead"
    assert smtp.messages == []
    smtp.reply = None
    with UnitOfWork(rt) as uow:
        outbox.replay(uow, str(row["id"]), OPS)
        uow.commit()
    d.run_once()
    (mail,) = smtp.messages
    assert mail["To"] == EMAIL
    assert mail["Message-ID"] == f"<{row['id']}@thawline.local>"
    assert mail["X-Thawline-Idempotency-Key"] == row["id"]
    assert "冻结" in mail["Subject"]
    assert "holder reason" in mail.get_content()
    assert _rows(rt, channel="email")[0]["status"] == "delivered"


def test_email_upgrades_with_starttls_and_authenticates(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls=(cert, key), login=("thawline", "s3cret")) as server:
        base = {
            "smtp_host": "127.0.0.1",
            "smtp_port": server.port,
            "smtp_starttls": True,
            "smtp_ca_file": cert,
            "smtp_timeout_seconds": 2,
        }
        for password, expected in (("wrong", "pending"), ("s3cret", "delivered")):
            settings = make_settings(
                database_url, tmp_path, smtp_username="thawline", smtp_password=password, **base
            )
            runtime = build_runtime(settings, clock=clock)
            try:
                if password == "wrong":
                    _register(runtime)
                    lc.freeze(runtime)
                else:
                    clock.advance(timedelta(minutes=1))
                Dispatcher(runtime).run_once()
                assert _rows(runtime, channel="email")[0]["status"] == expected
            finally:
                runtime.close()
        assert server.logins in (["LOGIN:thawline"], ["PLAIN:thawline"])  # the wrong password got nowhere
        (mail,) = server.messages
        assert mail["To"] == EMAIL


def test_a_permanent_smtp_refusal_is_dead_at_once(rt: Runtime, smtp: SmtpServer) -> None:
    _register(rt)
    smtp.reply = "550 5.1.1 no such user"
    lc.freeze(rt)
    Dispatcher(rt).run_once()
    assert _rows(rt, channel="email")[0]["status"] == "dead"


def test_the_code_travels_sealed_and_reaches_the_http_sms_gateway_at_once(
    database_url: str, tmp_path: Path, clock: FakeClock, receiver: HttpReceiver
) -> None:
    gateway_secret = "whsec_" + "c21zLWdhdGV3YXktc2VjcmV0LTMyLWJ5dGVzISE="
    settings = make_settings(
        database_url, tmp_path, sms_provider="http", sms_http_url=receiver.url, sms_http_secret=gateway_secret
    )
    rt = build_runtime(settings, clock=clock)
    try:
        lc.register(rt)
        appeal_id = lc.submit_appeal(rt, lc.freeze(rt))
        lc.claim(rt, appeal_id, lc.ALICE)
        lc.decide(rt, appeal_id, lc.ALICE, Decision.APPROVE)
        with UnitOfWork(rt) as uow:
            verification.send_code(uow, appeal_id, lc.HOLDER)
            uow.commit()  # the code is sent right after this, without waiting for a dispatcher round
        (got,) = receiver.received  # only the code: other SMS wait for a dispatcher round
        sent = Webhook(gateway_secret).verify(got.body, got.headers)  # signed like a webhook
        found = re.search(r"(?<!\d)(\d{6})(?!\d)", sent["text"])
        assert found, sent["text"]
        code = found.group(1)
        assert sent["to"] == "+8613800138000"
        (row,) = _rows(rt, template="verification_code")
        assert sent["idempotency_key"] == row["id"] == got.headers["webhook-id"]
        assert row["status"] == "delivered"
        assert code not in str(row["payload"])
        assert code.encode() not in bytes(row["sealed"])  # type: ignore[arg-type]
        assert not any(code in str(e) for e in _actions(rt, ""))  # never in the log
        with UnitOfWork(rt) as uow:
            assert verification.check_code(uow, appeal_id, code, lc.HOLDER).passed
            uow.commit()
        with UnitOfWork(rt, read_only=True) as uow:
            templates = [m.template for m in inbox.messages(uow, "acc_1")]
        assert "verification_code" not in templates  # the code goes by SMS only
        assert {"frozen", "appeal_received", "in_review", "approved", "verification_requested"} <= set(
            templates
        )
    finally:
        rt.close()


def test_quiet_hours_hold_notices_but_not_codes(rt: Runtime, clock: FakeClock) -> None:
    _register(rt)
    with UnitOfWork(rt) as uow:
        quiet = lc_quiet()
        inbox.set_preferences(uow, "acc_1", inbox.Preferences(quiet_hours=quiet), lc.HOLDER)
        uow.commit()
    clock.advance(timedelta(hours=15, minutes=30))  # 2026-01-01 15:30 UTC = 23:30 in Shanghai
    lc.freeze(rt)
    stats = Dispatcher(rt).run_once()
    assert stats.deferred == 1  # the SMS waits; email went out
    (sms,) = _rows(rt, channel="sms")
    assert sms["status"] == "pending"
    assert sms["next_attempt_at"] == quiet.ends_after(clock.now())
    assert [e["details"]["why"] for e in _actions(rt, "notification.deferred")] == ["quiet_hours"]
    clock.advance(timedelta(hours=8, minutes=31))
    Dispatcher(rt).run_once()
    assert _rows(rt, channel="sms")[0]["status"] == "delivered"


def lc_quiet() -> inbox.n.QuietHours:
    """22:00-08:00 in Shanghai."""
    return inbox.n.QuietHours(22 * 60, 8 * 60, "Asia/Shanghai")


def test_the_sms_limit_drops_optional_messages_and_delays_mandatory_ones(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = build_runtime(make_settings(database_url, tmp_path, sms_per_hour=1), clock=clock)
    try:
        _register(rt)
        lc.freeze(rt)
        Dispatcher(rt).run_once()  # one SMS this hour: the limit is reached
        freeze_id = lc.freeze(rt)
        with UnitOfWork(rt) as uow:
            freezes.release(uow, freeze_id, lc.CREATOR, "cleared")
            uow.commit()
        stats = Dispatcher(rt).run_once()
        assert stats.deferred == 2  # "frozen" and "released" are mandatory: they wait for room
        clock.advance(timedelta(hours=2))
        Dispatcher(rt).run_once()
        statuses = [r["status"] for r in _rows(rt, channel="sms")]
        assert statuses.count("delivered") == 2  # one per hour
    finally:
        rt.close()


def test_opting_out_drops_optional_email_but_never_a_mandatory_notice(rt: Runtime) -> None:
    _register(rt)
    with UnitOfWork(rt) as uow:
        inbox.set_preferences(
            uow, "acc_1", inbox.Preferences(email_opt_out=True, sms_opt_out=True), lc.HOLDER
        )
        uow.commit()
    appeal_id = lc.submit_appeal(rt, lc.freeze(rt))
    templates = [(r["channel"], r["template"]) for r in _rows(rt)]
    assert ("email", "frozen") in templates  # mandatory
    assert ("sms", "frozen") in templates
    assert ("email", "appeal_received") not in templates  # optional: opted out
    with UnitOfWork(rt, read_only=True) as uow:
        assert "appeal_received" in [m.template for m in inbox.messages(uow, "acc_1")]  # the inbox keeps all
    assert appeal_id


def test_read_receipts_are_recorded_once(rt: Runtime) -> None:
    _register(rt)
    lc.freeze(rt)
    with UnitOfWork(rt, read_only=True) as uow:
        (m,) = inbox.messages(uow, "acc_1")
    for _ in range(2):
        with UnitOfWork(rt) as uow:
            inbox.mark_read(uow, "acc_1", m.id, lc.HOLDER)
            uow.commit()
    with UnitOfWork(rt, read_only=True) as uow:
        assert inbox.unread_count(uow, "acc_1") == 0
        assert inbox.messages(uow, "acc_1", unread_only=True) == []
        rows = list(uow.conn.execute(select(inbox_message.c.read_at)))
    assert rows[0].read_at is not None
    assert len(_actions(rt, "inbox.read")) == 1


def test_staff_hear_of_assignments_and_of_cases_waiting_for_a_second_approval(rt: Runtime) -> None:
    lead = Actor(ActorKind.REVIEWER, "rv_lead")
    lc.register(rt)
    appeal_id = lc.submit_appeal(rt, lc.freeze(rt, category=lc.ReasonCategory.BLACKLIST))
    with UnitOfWork(rt) as uow:
        review.assign(uow, appeal_id, lc.ALICE.ref, lead)
        uow.commit()
    lc.decide(rt, appeal_id, lc.ALICE, Decision.APPROVE)
    with UnitOfWork(rt, read_only=True) as uow:
        mine = inbox.notices(uow, [lc.ALICE.ref])
        everyone = inbox.notices(uow, ["role:reviewers"])
    assert [m.template for m in mine] == ["staff_assigned"]
    assert appeal_id in mine[0].body
    assert [m.template for m in everyone] == ["staff_four_eyes_waiting"]


def test_a_disabled_subscription_gets_nothing_more(rt: Runtime, receiver: HttpReceiver) -> None:
    _register(rt)
    _subscribe(rt, receiver.url, "account.frozen")
    lc.freeze(rt)
    with UnitOfWork(rt) as uow:
        (sub,) = webhooks.list_subscriptions(uow)
        webhooks.set_status(uow, sub.id, "disabled", OPS)
        uow.commit()
    Dispatcher(rt).run_once()  # the queued event is suppressed, not sent
    lc.freeze(rt)  # and no new one is queued
    assert [r["status"] for r in _rows(rt, channel="webhook")] == ["suppressed"]
    assert receiver.received == []


def test_a_message_that_cannot_be_prepared_is_dead_lettered_and_does_not_block_the_others(
    rt: Runtime,
) -> None:
    _register(rt)
    lc.freeze(rt)
    with UnitOfWork(rt) as uow:  # a template that no longer exists (say, removed by an upgrade)
        uow.conn.execute(
            notification_outbox.update()
            .where(notification_outbox.c.channel == "sms")
            .values(template="no_such_template")
        )
        uow.commit()
    stats = Dispatcher(rt).run_once()
    assert (stats.dead, stats.delivered) == (1, 1)  # the SMS is dead, the email went out
    (sms,) = _rows(rt, channel="sms")
    assert sms["status"] == "dead"
    assert "cannot be prepared" in str(sms["last_error"])


def test_an_aml_freeze_tells_the_holder_only_the_neutral_text(rt: Runtime, receiver: HttpReceiver) -> None:
    _register(rt, language="en")
    _subscribe(rt, receiver.url, "account.frozen")
    with UnitOfWork(rt) as uow:
        cmd = freezes.FreezeAccount(
            "acc_1",
            lc.Restriction(lc.FreezeScope.FULL),
            lc.ReasonCategory.AML,
            ("AML_7",),
            lc.SourceKind.REVIEWER,
            "rv",
            "AML Law art. 32",
            "STR filed: structuring",
            "suspected money laundering",
        )
        freezes.freeze_account(uow, cmd, lc.CREATOR)
        uow.commit()
    with UnitOfWork(rt, read_only=True) as uow:
        (message,) = inbox.messages(uow, "acc_1")
    everything = message.title + message.body + "".join(str(r["payload"]) for r in _rows(rt))
    assert "laundering" not in everything  # no tipping-off, in any channel
    assert "structuring" not in everything


def test_a_broken_template_does_not_stop_the_freeze_it_reports(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(rt, language="en")
    real = outbox.templates.render

    def broken(name: str, lang: str, variables: dict[str, object]) -> object:
        if name == "frozen":
            raise KeyError("a template bug")
        return real(name, lang, variables)

    monkeypatch.setattr(outbox.templates, "render", broken)
    freeze_id = lc.freeze(rt)  # commits: the freeze matters more than the wording of its notice
    with UnitOfWork(rt, read_only=True) as uow:
        (message,) = inbox.messages(uow, "acc_1")
        assert freezes.get(uow, freeze_id).status.value == "active"
    assert message.title == "Account restricted"  # the plain summary instead
