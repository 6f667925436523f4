"""Integrators' webhook subscriptions: create, rotate the signing secret with overlap, disable, ping.

A subscription belongs to an integrator (the API key id that registers its accounts) and receives
the events of those accounts whose type matches its patterns. Secrets are shown once and stored
sealed (AES-256-GCM under a key derived from the vault master key, bound to the subscription id).
"""

from __future__ import annotations

import ipaddress
import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Row, insert, select, update

from thawline.adapters.db.schema import notification_outbox, webhook_subscription
from thawline.domain import notifications as n
from thawline.domain import webhooks as sig
from thawline.domain.errors import ConflictError, InvalidInputError, NotFoundError
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import vault
from thawline.services.outbox import new_id
from thawline.services.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as listed (never with its secret)."""

    id: str
    integrator: str
    url: str
    event_types: tuple[str, ...]
    description: str
    status: str
    created_at: datetime
    rotated_at: datetime | None
    previous_valid_until: datetime | None


def _view(r: Row[Any]) -> Subscription:
    return Subscription(
        id=r.id,
        integrator=r.integrator,
        url=r.url,
        event_types=tuple(r.event_types.split()),
        description=r.description,
        status=r.status,
        created_at=r.created_at,
        rotated_at=r.rotated_at,
        previous_valid_until=r.previous_until,
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """An absolute http(s) URL; loopback, private and link-local addresses only when allowed.

    Names are not resolved here: a name that resolves to an internal address is the egress proxy's
    or firewall's to stop (see README, Configuration).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError("the webhook URL must be an absolute http:// or https:// URL", field="url")
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        internal = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    else:
        internal = not address.is_global
    if internal and not allow_private:
        raise InvalidInputError(
            "the webhook URL points at an internal address; set THAWLINE_WEBHOOK_ALLOW_PRIVATE_URLS=true "
            "to allow it (development, or receivers inside your network)",
            field="url",
        )
    return url


def _seal(uow: UnitOfWork, sub_id: str, secret: str) -> bytes:
    return vault.seal_secret(vault.derive_keys(uow.runtime.vault_master_key), secret.encode(), sub_id)


def _record(uow: UnitOfWork, action: str, sub_id: str, actor: Actor, **details: Any) -> None:
    uow.mark_changed()
    uow.record(
        LogRecord(action=action, actor=actor, subject=Subject(ref=f"webhook:{sub_id}"), details=details)
    )


def create(
    uow: UnitOfWork, integrator: str, *, url: str, event_types: list[str], description: str, actor: Actor
) -> tuple[Subscription, str]:
    """Subscribe ``url`` to ``event_types``; returns the subscription and its secret (shown once)."""
    patterns = n.check_patterns(event_types)
    check_url(url, allow_private=uow.runtime.settings.webhook_allow_private_urls)
    sub_id = "whs_" + pysecrets.token_hex(8)
    secret = sig.new_secret()
    uow.conn.execute(
        insert(webhook_subscription).values(
            id=sub_id,
            integrator=integrator,
            url=url,
            event_types=" ".join(patterns),
            description=description,
            secret_sealed=_seal(uow, sub_id, secret),
            status="active",
            created_by=actor.ref,
            created_at=uow.runtime.clock.now(),
        )
    )
    _record(
        uow,
        "webhook.subscribed",
        sub_id,
        actor,
        integrator=integrator,
        event_types=list(patterns),
        url_host=urlsplit(url).hostname or "",
    )
    return get(uow, sub_id), secret


def get(uow: UnitOfWork, sub_id: str, integrator: str | None = None) -> Subscription:
    """One subscription (of ``integrator`` if given), or NotFoundError."""
    query = select(webhook_subscription).where(webhook_subscription.c.id == sub_id)
    if integrator is not None:
        query = query.where(webhook_subscription.c.integrator == integrator)
    row = uow.conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"webhook subscription {sub_id} does not exist")
    return _view(row)


def list_subscriptions(uow: UnitOfWork, integrator: str | None = None) -> list[Subscription]:
    """Subscriptions (of one integrator if given), oldest first."""
    query = select(webhook_subscription).order_by(webhook_subscription.c.created_at)
    if integrator is not None:
        query = query.where(webhook_subscription.c.integrator == integrator)
    return [_view(r) for r in uow.conn.execute(query)]


def rotate(
    uow: UnitOfWork, sub_id: str, actor: Actor, integrator: str | None = None
) -> tuple[Subscription, str]:
    """A new secret; the old one keeps signing (a second signature) for the configured overlap."""
    current = get(uow, sub_id, integrator)
    row = uow.conn.execute(select(webhook_subscription).where(webhook_subscription.c.id == sub_id)).one()
    now = uow.runtime.clock.now()
    overlap = timedelta(hours=uow.runtime.settings.webhook_rotation_overlap_hours)
    secret = sig.new_secret()
    uow.conn.execute(
        update(webhook_subscription)
        .where(webhook_subscription.c.id == sub_id)
        .values(
            secret_sealed=_seal(uow, sub_id, secret),
            previous_sealed=row.secret_sealed if overlap else None,
            previous_until=now + overlap if overlap else None,
            rotated_at=now,
        )
    )
    _record(
        uow, "webhook.secret_rotated", current.id, actor, previous_valid_until=(now + overlap).isoformat()
    )
    return get(uow, sub_id), secret


def set_status(
    uow: UnitOfWork, sub_id: str, status: str, actor: Actor, integrator: str | None = None
) -> Subscription:
    """Disable (stop queuing events) or re-enable a subscription."""
    if status not in ("active", "disabled"):
        raise InvalidInputError("status is 'active' or 'disabled'", field="status")
    current = get(uow, sub_id, integrator)
    if current.status == status:
        return current
    uow.conn.execute(
        update(webhook_subscription).where(webhook_subscription.c.id == sub_id).values(status=status)
    )
    _record(uow, f"webhook.{'enabled' if status == 'active' else 'disabled'}", sub_id, actor)
    return get(uow, sub_id)


def signing_secrets(uow: UnitOfWork, sub_id: str, now: datetime) -> tuple[str, list[str]] | None:
    """(url, secrets to sign with: current first, then the previous one during its overlap)."""
    row = uow.conn.execute(select(webhook_subscription).where(webhook_subscription.c.id == sub_id)).first()
    if row is None or row.status != "active":
        return None
    keys = vault.derive_keys(uow.runtime.vault_master_key)
    out = [vault.open_secret(keys, bytes(row.secret_sealed), sub_id).decode()]
    if row.previous_sealed is not None and row.previous_until is not None and row.previous_until > now:
        out.append(vault.open_secret(keys, bytes(row.previous_sealed), sub_id).decode())
    return row.url, out


def ping(uow: UnitOfWork, sub_id: str, actor: Actor, integrator: str | None = None) -> str:
    """Queue a ``webhook.ping`` to the subscription; returns the message id (sent right after commit)."""
    current = get(uow, sub_id, integrator)
    if current.status != "active":
        raise ConflictError(f"webhook subscription {sub_id} is disabled")
    now = uow.runtime.clock.now()
    msg_id = new_id()
    body = {"type": "webhook.ping", "timestamp": now.isoformat(), "data": {"subscription_id": sub_id}}
    uow.conn.execute(
        insert(notification_outbox).values(
            id=msg_id,
            channel=n.Channel.WEBHOOK.value,
            subscription_id=sub_id,
            event_type="webhook.ping",
            payload=orjson.dumps(body).decode(),
            mandatory=False,
            status=n.Status.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    _record(uow, "webhook.ping_queued", sub_id, actor, message_id=msg_id)
    uow.after_commit(lambda: uow.runtime.deliver_now([msg_id]))
    return msg_id
