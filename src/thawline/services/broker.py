"""Broker mode: events go through a NATS JetStream stream, partitioned by account, to the workers.

``POST /v1/events`` validates the batch and publishes each event to the subject of its account's
partition (``<stream>.p.<n>``) with ``Nats-Msg-Id`` = the event id, so JetStream drops a replay
inside its duplicate window; a replay after that is skipped by the engine, which ignores stored
event ids. The API answers only after JetStream acknowledged every message. The publishes of one
request go out on one connection in order, so an account's events reach its partition in the
order they were sent. ``services/broker_worker.py`` consumes the partitions.

The stream uses work-queue retention: a message is removed once a worker acknowledged it, which
happens only after the engine's transaction committed. Events carry personal values (a new phone
number, a card reference) until then: keep the stream's storage on an encrypted disk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from thawline.config import Settings
from thawline.domain.partitions import partition_of
from thawline.services import logs
from thawline.services.metrics import BROKER_PUBLISHED

HDR_ACTOR = "Thawline-Actor"
HDR_ACCEPTED = "Thawline-Accepted-At"  # ns since the epoch, when the API published
HDR_REQUEST = "Thawline-Request-Id"
DUPLICATE_WINDOW_SECONDS = 120.0
PUBLISH_TIMEOUT_SECONDS = 10.0


class BrokerUnavailableError(Exception):
    """JetStream did not acknowledge in time: nothing can be promised to the caller."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Names derived from the settings: stream, subjects, lease bucket, consumers."""

    url: str
    stream: str
    partitions: int
    lease_seconds: float
    batch: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerConfig:
        """The broker settings; ``THAWLINE_BROKER_URL`` must be set."""
        if not settings.broker_url:
            raise ValueError("THAWLINE_BROKER_URL is not set")
        return cls(
            url=settings.broker_url,
            stream=settings.broker_stream,
            partitions=settings.broker_partitions,
            lease_seconds=settings.broker_lease_seconds,
            batch=settings.broker_batch,
        )

    def subject(self, partition: int) -> str:
        """The subject one partition's events are published on."""
        return f"{self.stream}.p.{partition}"

    def durable(self, partition: int) -> str:
        """The durable consumer of one partition."""
        return f"{self.stream}_p{partition}"

    @property
    def bucket(self) -> str:
        """The key-value bucket holding partition leases and worker heartbeats."""
        return f"{self.stream}_leases"


async def connect(cfg: BrokerConfig) -> tuple[Nats, JetStreamContext]:
    """Connect, and create the stream if it does not exist yet."""
    nc = await nats.connect(cfg.url, name="thawline", max_reconnect_attempts=-1)
    js = nc.jetstream()
    try:
        await js.stream_info(cfg.stream)
    except NotFoundError:
        await js.add_stream(
            api.StreamConfig(
                name=cfg.stream,
                subjects=[f"{cfg.stream}.p.*"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            )
        )
    return nc, js


@dataclass(frozen=True, slots=True)
class Published:
    """One event as JetStream acknowledged it."""

    event_id: str
    account_id: str
    partition: int
    stream_seq: int
    duplicate: bool


class Publisher:
    """The API's side: one connection per process, opened in the app's event loop."""

    def __init__(self, cfg: BrokerConfig) -> None:
        self.cfg = cfg
        self._nc: Nats | None = None
        self._js: JetStreamContext | None = None

    async def start(self) -> None:
        """Connect (the app's lifespan calls this)."""
        self._nc, self._js = await connect(self.cfg)

    async def stop(self) -> None:
        """Flush and close."""
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    async def publish(self, events: list[Any], actor_ref: str) -> list[Published]:
        """Publish validated events in order; return once JetStream acknowledged every one."""
        if self._js is None:
            raise BrokerUnavailableError("the broker connection is not open")
        accepted_at = str(time.time_ns())
        request = logs.request_id.get() or ""
        futures = []
        placed = []
        try:
            for e in events:
                p = partition_of(e.account_id, self.cfg.partitions)
                headers = {
                    api.Header.MSG_ID: e.id,
                    HDR_ACTOR: actor_ref,
                    HDR_ACCEPTED: accepted_at,
                    HDR_REQUEST: request,
                }
                futures.append(
                    await self._js.publish_async(
                        self.cfg.subject(p), e.model_dump_json().encode(), headers=headers
                    )
                )
                placed.append((e, p))
            acks = await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_SECONDS)
        except (TimeoutError, nats.errors.Error) as exc:
            for f in futures:
                f.cancel()
            raise BrokerUnavailableError(f"JetStream did not acknowledge: {type(exc).__name__}") from None
        out = [
            Published(e.id, e.account_id, p, ack.seq, bool(ack.duplicate))
            for (e, p), ack in zip(placed, acks, strict=True)
        ]
        dup = sum(1 for o in out if o.duplicate)
        if dup:
            BROKER_PUBLISHED.labels("duplicate").inc(dup)
        if len(out) - dup:
            BROKER_PUBLISHED.labels("stored").inc(len(out) - dup)
        return out
