"""The live feed behind Server-Sent Events: new log entries and messages, fanned out to open streams.

One poller thread per process follows the operation log (the source of every status change,
whichever process committed it) and the messages written with each entry. A commit in this
process wakes it at once; changes committed elsewhere (a worker, the CLI) are seen within one
poll interval. Streams subscribe to an account (the holder's portal) or to the console (staff).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from thawline.adapters.db.schema import inbox_message, staff_notice
from thawline.oplog.entry import decode_entry
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

logger = logging.getLogger("thawline.live")
CONSOLE = "console"
# What the console follows: the review workflow and the dispatcher's dead letters.
CONSOLE_PREFIXES = ("appeal.", "account.frozen", "freeze.", "verification.", "notification.dead_lettered")


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One thing to push: a status change (a log entry) or a message."""

    seq: int
    kind: str  # "status" | "message" | "notice"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[LiveEvent]


class LiveFeed:
    """Follows the log from the current head and publishes to subscribers by topic."""

    def __init__(self, runtime: Runtime, interval: float = 0.25) -> None:
        self.runtime = runtime
        self.interval = interval
        self._subs: dict[str, list[_Subscriber]] = defaultdict(list)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thawline-live", daemon=True)
        self.position = 0

    def start(self) -> None:
        """Begin at the current end of the log and follow it."""
        with UnitOfWork(self.runtime, read_only=True) as uow:
            self.position = uow.oplog.head().tree_size
        self.runtime.commit_listeners.append(self._on_commit)
        self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        self._wake.set()
        if self._on_commit in self.runtime.commit_listeners:
            self.runtime.commit_listeners.remove(self._on_commit)
        self._thread.join(timeout=5)

    def _on_commit(self, _appended: range) -> None:
        self._wake.set()

    def subscribe(self, topic: str) -> asyncio.Queue[LiveEvent]:
        """A queue receiving the topic's events (call from the stream's event loop)."""
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subs[topic].append(_Subscriber(asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, topic: str, queue: asyncio.Queue[LiveEvent]) -> None:
        """Stop delivering to ``queue``."""
        with self._lock:
            self._subs[topic] = [s for s in self._subs[topic] if s.queue is not queue]
            if not self._subs[topic]:
                del self._subs[topic]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.poll()
            except Exception:
                logger.exception("live feed poll failed")

    def poll(self) -> int:
        """Publish everything appended since the last poll; returns how many entries were read."""
        with UnitOfWork(self.runtime, read_only=True) as uow:
            size = uow.oplog.head().tree_size
            if size <= self.position:
                return 0
            start = self.position
            with self._lock:
                listening = bool(self._subs)
            if not listening:  # nobody is watching: just move on
                self.position = size
                return size - start
            events: list[tuple[str, LiveEvent]] = []
            for seq, data, _chain in uow.oplog.entries(start=start, stop=size):
                entry = decode_entry(data)
                action = str(entry["action"])
                subject = entry.get("subject", {})
                payload = {
                    "seq": seq,
                    "ts": entry["ts"],
                    "action": action,
                    **subject,
                    "status": (entry.get("state_after") or {}).get("status"),
                }
                account_id = subject.get("account_id")
                if account_id:
                    events.append((f"account:{account_id}", LiveEvent(seq, "status", payload)))
                if action.startswith(CONSOLE_PREFIXES):
                    events.append((CONSOLE, LiveEvent(seq, "status", payload)))
            t, s = inbox_message, staff_notice
            for r in uow.conn.execute(select(t).where(t.c.source_seq >= start, t.c.source_seq < size)):
                item = {
                    "id": r.id,
                    "template": r.template,
                    "title": r.title,
                    "body": r.body,
                    "seq": r.source_seq,
                }
                events.append((f"account:{r.account_id}", LiveEvent(r.source_seq, "message", item)))
            for r in uow.conn.execute(select(s).where(s.c.source_seq >= start, s.c.source_seq < size)):
                item = {"id": r.id, "recipient": r.recipient, "template": r.template, "title": r.title}
                events.append((CONSOLE, LiveEvent(r.source_seq, "notice", item | {"appeal_id": r.appeal_id})))
        self.position = size
        self._publish(events)
        return size - start

    def _publish(self, events: list[tuple[str, LiveEvent]]) -> None:
        with self._lock:
            targets = [(list(self._subs.get(topic, ())), event) for topic, event in events]
        for subs, event in targets:
            for sub in subs:
                sub.loop.call_soon_threadsafe(_offer, sub.queue, event)


def _offer(queue: asyncio.Queue[LiveEvent], event: LiveEvent) -> None:
    # A stream too slow to keep 1,000 events queued drops the oldest; the client can resume
    # from its Last-Event-ID and read the gap from the timeline.
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)
