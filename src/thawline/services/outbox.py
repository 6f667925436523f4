"""The transactional outbox: the messages a change causes, written in that change's transaction.

For each entry of a commit the outbox writes the holder's in-site message (rendered, delivered by
being committed), staff notices, and outbox rows for email, SMS and integrators' webhooks, each
naming its entry (``source_seq``). A crash before COMMIT loses the change and its messages together;
after COMMIT both are durable and the dispatcher sends the rows at least once. The row id is the
idempotency key a receiver sees (``webhook-id``, the email Message-ID, the SMS gateway's
``idempotency_key``).

``UnitOfWork.commit`` does it in two steps around the log's append, so that the append lock (which
every writer waits for) covers as little as possible: :func:`prepare`, before the append, reads the
variables and renders the messages, numbering them by the record's position; :meth:`Pending.write`,
after the append and still under its lock, re-reads what other commands may change and the routing
depends on (the holders' language, contacts and opt-outs, the integrators' active subscriptions) —
if any of it changed meanwhile, it builds the messages again — then stamps the time and the entries'
sequence numbers and inserts the rows. The rows are therefore the ones building them under the lock
would give.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import bindparam, insert, select, update

from thawline.adapters.db.schema import (
    account,
    inbox_message,
    notification_outbox,
    notification_preference,
    staff_notice,
    webhook_subscription,
)
from thawline.domain import notifications as n
from thawline.domain.errors import ConflictError, NotFoundError
from thawline.i18n import MESSAGES, t
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import messages, templates, vault

if TYPE_CHECKING:
    from thawline.services.unit_of_work import UnitOfWork

logger = logging.getLogger("thawline.outbox")


def new_id() -> str:
    """A message id: also the idempotency key its receivers see."""
    return "msg_" + secrets.token_hex(10)


@dataclass(slots=True)
class _Holder:
    language: str
    integrator: str
    has_email: bool
    has_phone: bool
    email_opt_out: bool
    sms_opt_out: bool


Subscriptions = list[tuple[str, tuple[str, ...]]]


# Built once: constructing a statement costs more than running it (both run twice per notifying commit).
_HOLDERS = (
    select(
        account.c.id,
        account.c.language,
        account.c.integrator,
        account.c.identity_refs,
        notification_preference.c.email_opt_out,
        notification_preference.c.sms_opt_out,
    )
    .select_from(
        account.outerjoin(notification_preference, notification_preference.c.account_id == account.c.id)
    )
    .where(account.c.id.in_(bindparam("ids", expanding=True)))
)
_SUBSCRIPTIONS = (
    select(webhook_subscription.c.integrator, webhook_subscription.c.id, webhook_subscription.c.event_types)
    .where(
        webhook_subscription.c.integrator.in_(bindparam("integrators", expanding=True)),
        webhook_subscription.c.status == "active",
    )
    .order_by(webhook_subscription.c.id)
)


def _holders(uow: UnitOfWork, account_ids: Sequence[str]) -> dict[str, _Holder | None]:
    """What routing needs to know of each holder (None for an unknown account), in one query."""
    found: dict[str, _Holder | None] = dict.fromkeys(account_ids)
    for row in uow.conn.execute(_HOLDERS, {"ids": list(account_ids)}):
        refs = orjson.loads(row.identity_refs)
        found[row.id] = _Holder(
            language=row.language,
            integrator=row.integrator,
            has_email=bool(refs.get("email")),
            has_phone=bool(refs.get("phone")),
            email_opt_out=bool(row.email_opt_out),
            sms_opt_out=bool(row.sms_opt_out),
        )
    return found


def _subscriptions(uow: UnitOfWork, integrators: Sequence[str]) -> dict[str, Subscriptions]:
    """The integrators' active subscriptions (id, event type patterns), by id, in one query."""
    found: dict[str, Subscriptions] = {i: [] for i in integrators}
    for r in uow.conn.execute(_SUBSCRIPTIONS, {"integrators": list(integrators)}):
        found[r.integrator].append((r.id, tuple(r.event_types.split())))
    return found


class _Batch:
    """The rows one commit adds, with per-commit caches of accounts and subscriptions.

    Rows name their entry by its position among the commit's records until :func:`_insert` puts in
    the sequence numbers; their times and webhook bodies are also filled in then.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.outbox: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []
        self.staff: list[dict[str, Any]] = []
        self.express: list[str] = []
        self.secrets_used: list[str] = []  # actions whose one-time secret was sealed into a row
        self.holders: dict[str, _Holder | None] = {}
        self.subs: dict[str, Subscriptions] = {}

    def holder(self, account_id: str) -> _Holder | None:
        if account_id not in self.holders:
            self.holders |= _holders(self.uow, [account_id])
        return self.holders[account_id]

    def subscriptions(self, integrator: str) -> Subscriptions:
        if integrator not in self.subs:
            self.subs |= _subscriptions(self.uow, [integrator])
        return self.subs[integrator]

    def secret(self, action: str) -> dict[str, str] | None:
        """The unit of work's secret for ``action`` (the first message of that action takes it)."""
        if action in self.secrets_used:
            return None
        self.secrets_used.append(action)
        return self.uow.notification_secrets.get(action)

    def current(self) -> bool:
        """Whether the holders and subscriptions the routing read are still what the database says."""
        if self.holders and _holders(self.uow, list(self.holders)) != self.holders:
            return False
        return not self.subs or _subscriptions(self.uow, list(self.subs)) == self.subs

    def queue(self, channel: n.Channel, seq: int, **values: Any) -> str:
        msg_id = new_id()
        self.outbox.append(_row(msg_id, channel, seq, **values))
        return msg_id


def _build(uow: UnitOfWork, records: Sequence[LogRecord]) -> _Batch | None:
    """Route and render the messages of ``records`` (rows numbered by position); None if there are none."""
    batch: _Batch | None = None
    for position, record in enumerate(records):
        action = record.action
        if (
            action not in n.HOLDER_TEMPLATE
            and action not in n.STAFF_TEMPLATE
            and n.webhook_type(action) is None
        ):
            continue
        batch = batch or _Batch(uow)
        _route(batch, record, position)
    return batch


def _insert(batch: _Batch, appended: range) -> int:
    """Stamp the rows with the time and their entries' numbers, insert them; returns the outbox rows."""
    uow = batch.uow
    now = uow.runtime.clock.now()
    for row in batch.inbox:
        row["source_seq"] = appended[row["source_seq"]]
        row["created_at"] = now
    for row in batch.staff:
        row["source_seq"] = appended[row["source_seq"]]
        row["created_at"] = now
    for row in batch.outbox:
        seq = row["source_seq"] = appended[row["source_seq"]]
        row["created_at"] = row["next_attempt_at"] = now
        body = row["payload"]
        if isinstance(body, dict):  # a webhook: {"type", "timestamp", "data"}, the data naming its entry
            body["timestamp"] = now.isoformat()
            body["data"]["log_seq"] = seq
            row["payload"] = orjson.dumps(body).decode()
    for action in batch.secrets_used:
        uow.notification_secrets.pop(action, None)
    conn = uow.conn
    if batch.inbox:
        conn.execute(insert(inbox_message), batch.inbox)
    if batch.staff:
        conn.execute(insert(staff_notice), batch.staff)
    if batch.outbox:
        conn.execute(insert(notification_outbox), batch.outbox)
    if batch.express:
        express = list(batch.express)
        uow.after_commit(lambda: uow.runtime.deliver_now(express))
    return len(batch.outbox)


class Pending:
    """The messages of one commit, built before the log's append; :meth:`write` inserts them."""

    def __init__(self, uow: UnitOfWork, records: Sequence[LogRecord], batch: _Batch | None) -> None:
        self.uow = uow
        self.records = records
        self.batch = batch

    def write(self, appended: range) -> int:
        """After the append, under its lock: check what the routing read, number, insert; returns the
        outbox rows (email, SMS, webhooks) written."""
        batch = self.batch
        if batch is None:
            return 0
        if not batch.current():  # a holder or a subscription changed meanwhile: route them again
            batch = _build(self.uow, self.records)
            assert batch is not None  # the same records route again
        self.batch = None
        return _insert(batch, appended)


def prepare(uow: UnitOfWork, records: Sequence[LogRecord]) -> Pending:
    """Read and render the messages ``records`` cause, before the log's append (see the module)."""
    return Pending(uow, records, _build(uow, records))


def _route(batch: _Batch, record: LogRecord, seq: int) -> None:
    uow = batch.uow
    account_id = record.subject.account_id
    scope = None
    if record.action == "account.frozen":
        scope = str((record.state_after or {}).get("freeze", {}).get("scope", "full"))
    holder = batch.holder(account_id) if account_id else None
    template = n.holder_template(record.action, scope)
    if template is not None and holder is not None and account_id is not None:
        _holder_messages(batch, record, seq, template, holder=holder, account_id=account_id)
    staff_template = n.STAFF_TEMPLATE.get(record.action)
    if staff_template is not None:
        _staff_notices(batch, record, seq, staff_template)
    event_type = n.webhook_type(record.action, scope)
    if event_type is not None and holder is not None:
        body: dict[str, Any] | None = None
        for sub_id, patterns in batch.subscriptions(holder.integrator):
            if not n.matches(patterns, event_type):
                continue
            if body is None:  # serialised once the time and the entry's number are known
                body = {
                    "type": event_type,
                    "timestamp": None,
                    "data": messages.webhook_data(uow, record, event_type) | {"log_seq": None},
                }
            batch.queue(
                n.Channel.WEBHOOK,
                seq,
                account_id=account_id,
                subscription_id=sub_id,
                event_type=event_type,
                payload=body,
                mandatory=True,
            )


def _holder_messages(
    batch: _Batch, record: LogRecord, seq: int, template: str, *, holder: _Holder, account_id: str
) -> None:
    uow = batch.uow
    lang = holder.language
    variables = messages.holder_variables(uow, template, record, lang)
    if variables is None:
        return
    mandatory = template in n.MANDATORY
    if template not in n.SMS_ONLY:
        shown = _render(template, lang, variables, record)
        batch.inbox.append(
            {
                "id": "inb_" + secrets.token_hex(10),
                "account_id": account_id,
                "template": template,
                "lang": lang,
                "title": shown.subject,
                "body": shown.body,
                "mandatory": mandatory,
                "source_seq": seq,
                "created_at": None,
            }
        )
    common = {
        "account_id": account_id,
        "template": template,
        "lang": lang,
        "payload": orjson.dumps(variables).decode(),
        "mandatory": mandatory,
    }
    email_on = uow.runtime.settings.smtp_host is not None
    if (
        email_on
        and holder.has_email
        and template not in n.SMS_ONLY
        and (mandatory or not holder.email_opt_out)
    ):
        batch.queue(n.Channel.EMAIL, seq, **common)
    if template in n.SMS_TEMPLATES and holder.has_phone and (mandatory or not holder.sms_opt_out):
        secret = batch.secret(record.action)
        msg_id = new_id()
        sealed = None
        if secret is not None:
            keys = vault.derive_keys(uow.runtime.vault_master_key)
            sealed = vault.seal_secret(keys, orjson.dumps(secret), msg_id)
        batch.outbox.append(_row(msg_id, n.Channel.SMS, seq, sealed=sealed, **common))
        if template in n.QUIET_HOURS_EXEMPT:
            batch.express.append(msg_id)  # the holder is waiting for it: send right after COMMIT


def _row(msg_id: str, channel: n.Channel, seq: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": msg_id,
        "channel": channel.value,
        "account_id": None,
        "template": None,
        "lang": None,
        "subscription_id": None,
        "event_type": None,
        "sealed": None,
        "mandatory": False,
        "source_seq": seq,
        "status": n.Status.PENDING.value,
        "attempts": 0,
        "next_attempt_at": None,
        "created_at": None,
    }
    row.update(values)
    return row


def _staff_notices(batch: _Batch, record: LogRecord, seq: int, template: str) -> None:
    uow = batch.uow
    variables = messages.staff_variables(uow, template, record)
    if variables is None:
        return
    details = record.details or {}
    if template == "staff_assigned":
        recipients = [str(details.get("assignee"))]
    elif template == "staff_sla_warning":
        recipients = [str(details["assignee"])] if details.get("assignee") else [n.REVIEWERS]
    elif template == "staff_sla_breached":
        recipients = [n.LEADS] + ([str(details["assignee"])] if details.get("assignee") else [])
    else:
        recipients = [n.REVIEWERS]
    shown = _render(template, uow.runtime.settings.staff_language, variables, record)
    for recipient in recipients:
        batch.staff.append(
            {
                "id": "stn_" + secrets.token_hex(10),
                "recipient": recipient,
                "template": template,
                "title": shown.subject,
                "body": shown.body,
                "appeal_id": record.subject.appeal_id,
                "account_id": record.subject.account_id,
                "source_seq": seq,
                "created_at": None,
            }
        )


def _render(template: str, lang: str, variables: dict[str, Any], record: LogRecord) -> templates.Rendered:
    """Render a message; a broken template must not stop the change it reports (a plain text goes instead)."""
    try:
        return templates.render(template, lang, variables)
    except Exception:
        logger.exception("template %s/%s failed; sending the plain summary instead", lang, template)
        key = f"timeline.{record.action}"
        summary = t(key, lang, reason="").rstrip(": ：") if key in MESSAGES["en"] else record.action
        return templates.Rendered(subject=summary, body=summary, sms=summary)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """An outbox row as operators see it (never its sealed part)."""

    id: str
    channel: str
    status: str
    account_id: str | None
    template: str | None
    event_type: str | None
    subscription_id: str | None
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    last_status: int | None
    receipt: str | None
    source_seq: int | None


def _message(r: Any) -> OutboxMessage:
    return OutboxMessage(
        id=r.id,
        channel=r.channel,
        status=r.status,
        account_id=r.account_id,
        template=r.template,
        event_type=r.event_type,
        subscription_id=r.subscription_id,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        created_at=r.created_at,
        delivered_at=r.delivered_at,
        last_error=r.last_error,
        last_status=r.last_status,
        receipt=r.receipt,
        source_seq=r.source_seq,
    )


def list_messages(
    uow: UnitOfWork,
    *,
    status: str | None = None,
    channel: str | None = None,
    subscription_id: str | None = None,
    account_id: str | None = None,
    limit: int = 100,
) -> list[OutboxMessage]:
    """Outbox messages, newest first, filtered."""
    t = notification_outbox
    query = select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
    for column, value in (
        (t.c.status, status),
        (t.c.channel, channel),
        (t.c.subscription_id, subscription_id),
        (t.c.account_id, account_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return [_message(r) for r in uow.conn.execute(query)]


def get(uow: UnitOfWork, msg_id: str) -> OutboxMessage:
    """One message, or NotFoundError."""
    row = uow.conn.execute(select(notification_outbox).where(notification_outbox.c.id == msg_id)).first()
    if row is None:
        raise NotFoundError(f"outbox message {msg_id} does not exist")
    return _message(row)


def replay(uow: UnitOfWork, msg_id: str, actor: Actor) -> OutboxMessage:
    """Send a dead, suppressed or delivered message again (same id, so receivers can drop a duplicate)."""
    current = get(uow, msg_id)
    if current.status == n.Status.PENDING:
        raise ConflictError(f"message {msg_id} is still pending; it will be retried on its own")
    now = uow.runtime.clock.now()
    uow.conn.execute(
        update(notification_outbox)
        .where(notification_outbox.c.id == msg_id, notification_outbox.c.status == current.status)
        .values(status=n.Status.PENDING.value, attempts=0, next_attempt_at=now, lease_until=None)
    )
    uow.mark_changed()
    uow.record(
        LogRecord(
            action="notification.replayed",
            actor=actor,
            subject=Subject(account_id=current.account_id, ref=f"msg:{msg_id}"),
            state_before={"status": current.status},
            state_after={"status": n.Status.PENDING.value},
            details={"channel": current.channel, "attempts_before": current.attempts},
        )
    )
    uow.after_commit(uow.runtime.outbox_wake.set)
    return get(uow, msg_id)


def replay_dead(
    uow: UnitOfWork, actor: Actor, *, subscription_id: str | None = None, limit: int = 1000
) -> int:
    """Replay every dead message (of one subscription if given); returns how many."""
    dead = list_messages(uow, status=n.Status.DEAD.value, subscription_id=subscription_id, limit=limit)
    for m in dead:
        replay(uow, m.id, actor)
    return len(dead)
