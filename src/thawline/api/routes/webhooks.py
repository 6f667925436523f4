"""Webhook subscriptions and their deliveries (integrators), and the outbox (operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.domain import notifications as n
from thawline.domain.apikeys import Scope
from thawline.domain.errors import NotFoundError, PermissionDeniedError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import outbox, webhooks
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["webhooks and outbox"])
CanWebhooks = Annotated[ApiKeyInfo, Depends(require(Scope.WEBHOOKS_WRITE))]
CanOutbox = Annotated[ApiKeyInfo, Depends(require(Scope.OUTBOX_ADMIN))]
Limit = Annotated[int, Query(ge=1, le=500)]


class SubscriptionIn(BaseModel):
    """Subscribe a URL to event types: exact (`account.frozen`), a family (`appeal.*`) or everything (`*`)."""

    url: str = Field(max_length=2000, examples=["https://gateway.example/hooks/thawline"])
    event_types: list[str] = Field(
        max_length=64, examples=[["account.frozen", "account.released", "appeal.*"]]
    )
    description: str = Field(default="", max_length=500)
    integrator: str | None = Field(
        default=None, description="Admin keys only: whose accounts (an API key id); default: the caller's."
    )


class SubscriptionOut(BaseModel):
    """A subscription (its secret is shown only when created or rotated)."""

    id: str
    integrator: str
    url: str
    event_types: list[str]
    description: str
    status: str
    created_at: datetime
    rotated_at: datetime | None
    previous_secret_valid_until: datetime | None
    secret: str | None = Field(default=None, description="whsec_… — store it now; it is not shown again.")


class StatusIn(BaseModel):
    """Enable or disable a subscription."""

    status: str = Field(pattern="^(active|disabled)$")


class DeliveryOut(BaseModel):
    """One outbox message and its delivery state."""

    id: str = Field(description="Also the idempotency key: the webhook-id header, email Message-ID, SMS key.")
    channel: str
    status: str
    event_type: str | None
    template: str | None
    account_id: str | None
    subscription_id: str | None
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    source_seq: int | None


def _sub_out(s: webhooks.Subscription, secret: str | None = None) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id,
        integrator=s.integrator,
        url=s.url,
        event_types=list(s.event_types),
        description=s.description,
        status=s.status,
        created_at=s.created_at,
        rotated_at=s.rotated_at,
        previous_secret_valid_until=s.previous_valid_until,
        secret=secret,
    )


def _delivery(m: outbox.OutboxMessage) -> DeliveryOut:
    return DeliveryOut(
        id=m.id,
        channel=m.channel,
        status=m.status,
        event_type=m.event_type,
        template=m.template,
        account_id=m.account_id,
        subscription_id=m.subscription_id,
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        created_at=m.created_at,
        delivered_at=m.delivered_at,
        last_status=m.last_status,
        last_error=m.last_error,
        source_seq=m.source_seq,
    )


def _owner(key: ApiKeyInfo) -> str | None:
    """Whose subscriptions a key may see: its own, or every integrator's for an admin key."""
    return None if key.allows(Scope.ADMIN) else key.id


def _actor(key: ApiKeyInfo) -> Actor:
    return Actor(ActorKind.INTEGRATOR, key.id)


@router.post("/webhooks", response_model=SubscriptionOut, status_code=201)
def create_subscription(body: SubscriptionIn, runtime: RuntimeDep, key: CanWebhooks) -> SubscriptionOut:
    """Subscribe; the response carries the signing secret once (Standard Webhooks, `whsec_…`)."""
    integrator = key.id
    if body.integrator is not None and body.integrator != key.id:
        if not key.allows(Scope.ADMIN):
            raise PermissionDeniedError("only an admin key may subscribe on another integrator's behalf")
        integrator = body.integrator
    with UnitOfWork(runtime) as uow:
        sub, secret = webhooks.create(
            uow,
            integrator,
            url=body.url,
            event_types=body.event_types,
            description=body.description,
            actor=_actor(key),
        )
        uow.commit()
    return _sub_out(sub, secret)


@router.get("/webhooks", response_model=list[SubscriptionOut])
def list_subscriptions(uow: ReadUow, key: CanWebhooks) -> list[SubscriptionOut]:
    """Your subscriptions (every integrator's for an admin key)."""
    return [_sub_out(s) for s in webhooks.list_subscriptions(uow, _owner(key))]


@router.get("/webhooks/{sub_id}", response_model=SubscriptionOut)
def get_subscription(sub_id: str, uow: ReadUow, key: CanWebhooks) -> SubscriptionOut:
    """One subscription."""
    return _sub_out(webhooks.get(uow, sub_id, _owner(key)))


@router.patch("/webhooks/{sub_id}", response_model=SubscriptionOut)
def set_subscription_status(
    sub_id: str, body: StatusIn, runtime: RuntimeDep, key: CanWebhooks
) -> SubscriptionOut:
    """Disable (no new events are queued; queued ones are suppressed) or re-enable."""
    with UnitOfWork(runtime) as uow:
        sub = webhooks.set_status(uow, sub_id, body.status, _actor(key), _owner(key))
        uow.commit()
    return _sub_out(sub)


@router.post("/webhooks/{sub_id}/rotate", response_model=SubscriptionOut)
def rotate_secret(sub_id: str, runtime: RuntimeDep, key: CanWebhooks) -> SubscriptionOut:
    """A new secret; deliveries carry signatures under both secrets until the overlap ends."""
    with UnitOfWork(runtime) as uow:
        sub, secret = webhooks.rotate(uow, sub_id, _actor(key), _owner(key))
        uow.commit()
    return _sub_out(sub, secret)


@router.post("/webhooks/{sub_id}/ping", response_model=DeliveryOut, status_code=202)
def ping(sub_id: str, runtime: RuntimeDep, key: CanWebhooks) -> DeliveryOut:
    """Send a `webhook.ping` now; the response shows how the first attempt went."""
    with UnitOfWork(runtime) as uow:
        msg_id = webhooks.ping(uow, sub_id, _actor(key), _owner(key))
        uow.commit()  # the ping is attempted right after this commit
    with UnitOfWork(runtime, read_only=True) as uow:
        return _delivery(outbox.get(uow, msg_id))


@router.get("/webhooks/{sub_id}/deliveries", response_model=list[DeliveryOut])
def deliveries(
    sub_id: str, uow: ReadUow, key: CanWebhooks, status: n.Status | None = None, limit: Limit = 100
) -> list[DeliveryOut]:
    """The delivery log of a subscription, newest first (every attempt is also in the operation log)."""
    webhooks.get(uow, sub_id, _owner(key))
    found = outbox.list_messages(
        uow, subscription_id=sub_id, status=None if status is None else status.value, limit=limit
    )
    return [_delivery(m) for m in found]


@router.post("/webhooks/{sub_id}/deliveries/{msg_id}/replay", response_model=DeliveryOut)
def replay_delivery(sub_id: str, msg_id: str, runtime: RuntimeDep, key: CanWebhooks) -> DeliveryOut:
    """Send a delivery again (same webhook-id, so your receiver can drop it if it already has it)."""
    with UnitOfWork(runtime) as uow:
        webhooks.get(uow, sub_id, _owner(key))
        if outbox.get(uow, msg_id).subscription_id != sub_id:
            raise NotFoundError(f"delivery {msg_id} does not belong to subscription {sub_id}")
        m = outbox.replay(uow, msg_id, _actor(key))
        uow.commit()
    return _delivery(m)


@router.get("/outbox", response_model=list[DeliveryOut])
def list_outbox(
    uow: ReadUow,
    _key: CanOutbox,
    status: n.Status | None = None,
    channel: n.Channel | None = None,
    account_id: str | None = None,
    limit: Limit = 100,
) -> list[DeliveryOut]:
    """Every outbox message (email, SMS, webhooks), newest first; `status=dead` lists dead letters."""
    found = outbox.list_messages(
        uow,
        status=None if status is None else status.value,
        channel=None if channel is None else channel.value,
        account_id=account_id,
        limit=limit,
    )
    return [_delivery(m) for m in found]


@router.post("/outbox/{msg_id}/replay", response_model=DeliveryOut)
def replay(msg_id: str, runtime: RuntimeDep, key: CanOutbox) -> DeliveryOut:
    """Queue a dead, suppressed or delivered message again (recorded)."""
    with UnitOfWork(runtime) as uow:
        m = outbox.replay(uow, msg_id, Actor(ActorKind.SYSTEM, key.id))
        uow.commit()
    return _delivery(m)
