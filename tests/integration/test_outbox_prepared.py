"""Messages are built before the log's append and inserted under its lock: the rows are the ones
building them under the lock would give — numbered, timed and routed by what holds at that point."""

from __future__ import annotations

from datetime import timedelta

import orjson
from sqlalchemy import select, update

from tests import lifecycle as lc
from thawline.adapters.db.schema import account, inbox_message, notification_outbox
from thawline.domain.clock import FakeClock
from thawline.domain.freezes import Freeze
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.services import accounts, freezes, outbox, webhooks
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

INTEGRATOR = "ak_gateway0001"
OPS = Actor(ActorKind.SYSTEM, "ops")


def _register(runtime: Runtime) -> None:
    with UnitOfWork(runtime) as uow:
        accounts.register(
            uow,
            accounts.RegisterAccount("acc_1", "韩梅梅", phone=lc.PHONE, integrator=INTEGRATOR),
            lc.CREATOR,
        )
        uow.commit()


def _subscribe(uow: UnitOfWork) -> str:
    sub, _secret = webhooks.create(
        uow, INTEGRATOR, url="http://127.0.0.1:9/hook", event_types=["account.*"], description="", actor=OPS
    )
    return sub.id


def _freeze(uow: UnitOfWork) -> tuple[Freeze, LogRecord]:
    """A freeze, and the entry a freeze records (the service queues its own on ``uow``)."""
    made, _ = freezes.freeze_account(
        uow,
        freezes.FreezeAccount(
            "acc_1",
            lc.Restriction(lc.FreezeScope.FULL),
            lc.ReasonCategory.MANUAL,
            ("CODE_1",),
            lc.SourceKind.REVIEWER,
            "rv",
            "terms",
            "internal",
            "holder reason",
        ),
        lc.CREATOR,
    )
    record = LogRecord(
        action="account.frozen",
        actor=lc.CREATOR,
        subject=Subject(account_id="acc_1", freeze_id=made.id),
        reason_codes=("CODE_1",),
        state_after={"freeze": made.state()},
    )
    return made, record


def test_prepared_rows_take_the_numbers_and_the_time_of_the_append(
    runtime: Runtime, clock: FakeClock
) -> None:
    _register(runtime)
    with UnitOfWork(runtime) as uow:
        sub_id = _subscribe(uow)
        made, record = _freeze(uow)
        pending = outbox.prepare(uow, [record])
        clock.advance(timedelta(seconds=5))  # the append comes later, with its own time
        at = clock.now()
        assert pending.write(range(41, 42)) == 2  # SMS and the webhook (the inbox is not the outbox)
        rows = [dict(r._mapping) for r in uow.conn.execute(select(notification_outbox))]
        (message,) = uow.conn.execute(select(inbox_message)).all()
    assert sorted(r["channel"] for r in rows) == ["sms", "webhook"]
    assert {r["source_seq"] for r in rows} == {41}
    assert {r["created_at"] for r in rows} == {at}
    assert {r["next_attempt_at"] for r in rows} == {at}
    (hook,) = [r for r in rows if r["channel"] == "webhook"]
    assert hook["subscription_id"] == sub_id
    body = orjson.loads(hook["payload"])
    assert list(body) == ["type", "timestamp", "data"]
    assert body["timestamp"] == at.isoformat()
    assert body["data"]["log_seq"] == 41
    assert body["data"]["freeze_id"] == made.id
    assert (message.source_seq, message.created_at) == (41, at)


def test_a_subscription_made_after_the_messages_were_prepared_still_gets_the_event(runtime: Runtime) -> None:
    _register(runtime)
    with UnitOfWork(runtime) as uow:
        _made, record = _freeze(uow)
        pending = outbox.prepare(uow, [record])  # no subscription yet: no webhook
        sub_id = _subscribe(uow)  # committed by someone else before this commit's append, in effect
        assert pending.write(range(7, 8)) == 2
        hooks = uow.conn.execute(
            select(notification_outbox.c.subscription_id, notification_outbox.c.source_seq).where(
                notification_outbox.c.channel == "webhook"
            )
        ).all()
    assert [tuple(h) for h in hooks] == [(sub_id, 7)]


def test_a_subscription_disabled_after_the_messages_were_prepared_gets_nothing(runtime: Runtime) -> None:
    _register(runtime)
    with UnitOfWork(runtime) as uow:
        sub_id = _subscribe(uow)
        _made, record = _freeze(uow)
        pending = outbox.prepare(uow, [record])
        webhooks.set_status(uow, sub_id, "disabled", OPS)
        assert pending.write(range(3, 4)) == 1  # the SMS only
        channels = uow.conn.execute(select(notification_outbox.c.channel)).scalars().all()
    assert channels == ["sms"]


def test_a_holder_whose_language_changed_meanwhile_is_written_to_in_the_new_one(runtime: Runtime) -> None:
    _register(runtime)  # zh-CN
    with UnitOfWork(runtime) as uow:
        _made, record = _freeze(uow)
        pending = outbox.prepare(uow, [record])
        uow.conn.execute(update(account).where(account.c.id == "acc_1").values(language="en"))
        pending.write(range(5, 6))
        (message,) = uow.conn.execute(select(inbox_message)).all()
        (sms,) = uow.conn.execute(select(notification_outbox.c.lang)).scalars().all()
    assert (message.lang, sms) == ("en", "en")
    assert "Your account" in message.body


def test_a_commit_numbers_its_messages_with_its_entries(runtime: Runtime) -> None:
    _register(runtime)
    with UnitOfWork(runtime) as uow:
        _subscribe(uow)
        uow.commit()
    lc.freeze(runtime)
    with UnitOfWork(runtime, read_only=True) as uow:
        frozen = [seq for seq, data, _c in uow.oplog.entries(action="account.frozen")]
        rows = uow.conn.execute(
            select(
                notification_outbox.c.channel, notification_outbox.c.source_seq, notification_outbox.c.payload
            )
        ).all()
    assert len(frozen) == 1
    assert {r.source_seq for r in rows} == {frozen[0]}
    (hook,) = [r for r in rows if r.channel == "webhook"]
    assert orjson.loads(hook.payload)["data"]["log_seq"] == frozen[0]
