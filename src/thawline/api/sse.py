"""Server-Sent Events: one stream loop for every live view, and the holder's stream of their account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from thawline.i18n import t
from thawline.services import accounts, live, timeline
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

HEARTBEAT_SECONDS = 15.0


def _event(event: str, seq: int, data: dict[str, Any]) -> bytes:
    # Only status events carry an id (the log seq, what Last-Event-ID resumes from); a message or
    # notice caused by the same step would otherwise share it. Missed messages are in the inbox.
    if event != "status":
        return b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), orjson.dumps(data))


def resume_from(last_event_id: str | None, after: int | None) -> int | None:
    """Where a reconnecting client left off: ``after`` or a numeric Last-Event-ID."""
    if after is not None:
        return after
    if last_event_id and last_event_id.isdigit():
        return int(last_event_id)
    return None


Backlog = list[tuple[str, int, dict[str, Any]]]


async def stream(
    request: Request,
    topic: str,
    backlog: Callable[[], Backlog],
    shape: Any,
) -> AsyncIterator[bytes]:
    """Backlog, then live events of ``topic`` shaped by ``shape`` (None drops one), with keep-alives."""
    feed: live.LiveFeed = request.app.state.live
    # Subscribe before reading the backlog: a step committed in between then arrives live (and is
    # dropped below if the backlog had it too) instead of falling into the gap between the two.
    queue = feed.subscribe(topic)
    try:
        yield b"retry: 2000\n\n"
        last = -1
        for event, seq, data in await run_in_threadpool(backlog):
            last = max(last, seq)
            yield _event(event, seq, data)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if item.kind == "status" and item.seq <= last:
                continue  # already sent from the backlog
            shaped = shape(item)
            if shaped is not None:
                yield _event(item.kind, item.seq, shaped)
    finally:
        feed.unsubscribe(topic, queue)


def no_backlog() -> Backlog:
    """For views that only follow what happens from now on."""
    return []


SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def response(events: AsyncIterator[bytes]) -> StreamingResponse:
    """A text/event-stream response that proxies must not buffer."""
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def holder_stream(
    request: Request, runtime: Runtime, account_id: str, lang: str | None, resume: int | None
) -> StreamingResponse:
    """The holder's view of their account, live: status steps in plain words and new in-site messages."""

    def account_language() -> str:
        with UnitOfWork(runtime, read_only=True) as uow:
            return lang or accounts.get(uow, account_id).language  # 404 before the stream opens

    language = await run_in_threadpool(account_language)

    def backlog() -> Backlog:
        if resume is None:
            return []
        with UnitOfWork(runtime, read_only=True) as uow:
            return [
                ("status", i.seq, {"seq": i.seq, "action": i.action, "summary": i.summary})
                for i in timeline.timeline(uow, account_id, timeline.Audience.HOLDER, language)
                if i.seq > resume
            ]

    def shape(item: live.LiveEvent) -> dict[str, Any] | None:
        if item.kind == "message":
            return item.data
        action = item.data["action"]
        if action not in timeline.HOLDER_ACTIONS:
            return None
        key = f"timeline.{action}"
        summary = (
            t(key, language, reason="").rstrip(": ：") if action == "account.frozen" else t(key, language)
        )
        return {
            "seq": item.seq,
            "action": action,
            "summary": summary,
            **{k: item.data[k] for k in ("freeze_id", "appeal_id", "status") if item.data.get(k)},
        }

    return response(stream(request, f"account:{account_id}", backlog, shape))
