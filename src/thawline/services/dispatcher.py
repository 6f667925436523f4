"""The dispatcher: sends outbox messages at least once, with backoff, dead letters and a record of each try.

One round: **claim** due messages (a lease, so two dispatchers never send the same message at
once; quiet hours and SMS limits are applied here and recorded), **send** them concurrently
(webhooks over one pooled async HTTP client; SMTP and the SMS carrier in threads), **record**
every outcome in one unit of work (delivered, retry at a jittered exponential delay, or dead after
the last attempt), each with its operation-log entry. A dispatcher killed after sending but before
recording leaves the lease to expire; the message is sent again with the same id, which is how a
receiver recognises the duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
from sqlalchemy import bindparam, func, or_, select, update

from thawline.adapters.db.schema import account, notification_outbox, notification_preference
from thawline.adapters.delivery import DeliveryError
from thawline.domain import notifications as n
from thawline.domain import webhooks as sig
from thawline.oplog.entry import Actor, ActorKind, LogRecord, Subject
from thawline.oplog.pii import find_identifiers
from thawline.services import templates, vault, webhooks
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

DISPATCHER = Actor(ActorKind.SYSTEM, "dispatcher")
_RECORD = (
    update(notification_outbox)
    .where(notification_outbox.c.id == bindparam("b_id"))
    .values(
        {
            c: bindparam(c)
            for c in (
                "status",
                "attempts",
                "lease_until",
                "last_status",
                "last_error",
                "delivered_at",
                "receipt",
                "next_attempt_at",
            )
        }
    )
)
logger = logging.getLogger("thawline.dispatcher")
T = notification_outbox


@dataclass(slots=True)
class Job:
    """One claimed message, ready to send (addresses and secrets only in memory)."""

    id: str
    channel: n.Channel
    account_id: str | None
    label: str  # template or event type
    attempts: int
    lease: datetime
    to: str = ""
    subject: str = ""
    text: str = ""
    lang: str = "en"
    body: bytes = b""
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did."""

    job: Job
    ok: bool
    status: int | None = None
    receipt: str | None = None
    error: str | None = None
    permanent: bool = False


@dataclass(slots=True)
class RoundStats:
    """Counts of one round."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    deferred: int = 0
    suppressed: int = 0

    def as_json(self) -> dict[str, int]:
        """JSON form."""
        return {k: getattr(self, k) for k in self.__slots__}


def _safe(text: str) -> str:
    """An error message fit for the log: short, and never carrying a personal identifier."""
    text = text[:300]
    return "delivery failed (details withheld: personal data)" if find_identifiers(text) else text


def _failed(job: Job, exc: Exception) -> Outcome:
    """The outcome of an attempt that raised: a channel's report, or a crash (kept, not lost)."""
    if isinstance(exc, DeliveryError):
        return Outcome(job, ok=False, status=exc.status, error=exc.reason, permanent=exc.permanent)
    logger.exception("delivery of %s crashed", job.id, exc_info=exc)  # a bug must not lose other outcomes
    return Outcome(job, ok=False, error=exc.__class__.__name__)


class Dispatcher:
    """Claims, sends and records outbox messages."""

    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.policy = n.RetryPolicy(
            s.outbox_max_attempts,
            timedelta(seconds=s.outbox_backoff_seconds),
            timedelta(seconds=s.outbox_backoff_cap_seconds),
        )
        self.limits = n.SmsLimits(s.sms_per_hour, s.sms_per_day)

    # -- claim -------------------------------------------------------------------------------

    def claim(self, limit: int, ids: list[str] | None = None) -> tuple[list[Job], RoundStats]:
        """Lease up to ``limit`` due messages (or exactly ``ids``) and prepare them for sending."""
        stats = RoundStats()
        if ids is None and not self._anything_due():
            return [], stats  # idle: no write lock taken (SQLite writers queue behind BEGIN IMMEDIATE)
        with UnitOfWork(self.runtime) as uow:
            now = uow.runtime.clock.now()
            # A unique lease time doubles as the claim's token: recording checks it is still ours.
            lease = now + timedelta(
                seconds=self.runtime.settings.dispatcher_lease_seconds,
                microseconds=secrets.randbelow(999_999),
            )
            query = (
                select(T)
                .where(
                    T.c.status == n.Status.PENDING.value,
                    or_(T.c.lease_until.is_(None), T.c.lease_until < now),
                )
                .order_by(T.c.next_attempt_at)
                .limit(limit)
            )
            query = query.where(T.c.id.in_(ids)) if ids else query.where(T.c.next_attempt_at <= now)
            if uow.conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(uow.conn.execute(query))
            if not rows:
                return [], stats
            jobs, leased = [], []
            prepare = _Preparer(uow, now, self.limits)
            for r in rows:
                try:
                    verdict = prepare(r, lease)
                except Exception as exc:  # a message that cannot be prepared must not block the rest
                    logger.exception("outbox message %s cannot be prepared", r.id)
                    verdict = prepare.give_up(r, f"cannot be prepared: {exc.__class__.__name__}")
                if isinstance(verdict, Job):
                    jobs.append(verdict)
                    leased.append(r.id)
                elif verdict[0] == "deferred":
                    stats.deferred += 1
                elif verdict[0] == "dead":
                    stats.dead += 1
                else:
                    stats.suppressed += 1
            for start in range(0, len(leased), 500):
                uow.conn.execute(
                    update(T).where(T.c.id.in_(leased[start : start + 500])).values(lease_until=lease)
                )
            uow.commit()  # the lease is a lock, not a state change; deferrals and suppressions are recorded
        stats.claimed = len(jobs)
        return jobs, stats

    def _anything_due(self) -> bool:
        with UnitOfWork(self.runtime, read_only=True) as uow:
            now = uow.runtime.clock.now()
            due = (
                select(T.c.id)
                .where(T.c.status == n.Status.PENDING.value, T.c.next_attempt_at <= now)
                .limit(1)
            )
            return uow.conn.execute(due).first() is not None

    # -- send --------------------------------------------------------------------------------

    async def send(self, jobs: list[Job], client: aiohttp.ClientSession) -> list[Outcome]:
        """Attempt every job once, at most ``dispatcher_concurrency`` at a time."""
        gate = asyncio.Semaphore(self.runtime.settings.dispatcher_concurrency)

        async def one(job: Job) -> Outcome:
            async with gate:
                try:
                    return await self._attempt(job, client)
                except Exception as exc:
                    return _failed(job, exc)

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    async def _attempt(self, job: Job, client: aiohttp.ClientSession) -> Outcome:
        if job.channel is n.Channel.WEBHOOK:
            stamp = int(time.time())
            headers = sig.headers(job.secrets, job.id, stamp, job.body)
            headers["content-type"] = "application/json"
            headers["user-agent"] = "Thawline-Webhooks/1"
            try:
                async with client.post(
                    job.to, data=job.body, headers=headers, allow_redirects=False
                ) as reply:
                    await reply.read()  # drain it, so the connection goes back to the pool
                    status, receipt = reply.status, reply.headers.get("x-request-id")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DeliveryError(f"{exc.__class__.__name__} calling the endpoint") from exc
            if 200 <= status < 300:
                return Outcome(job, ok=True, status=status, receipt=receipt)
            # 410 Gone: the receiver says stop; anything else may get better, so it is retried.
            return Outcome(job, ok=False, status=status, error=f"HTTP {status}", permanent=status == 410)
        return await asyncio.to_thread(self.attempt_direct, job)

    def attempt_direct(self, job: Job) -> Outcome:
        """Send an email or SMS job from the calling thread (their clients are synchronous)."""
        if job.channel is n.Channel.EMAIL:
            email = self.runtime.email
            if email is None:
                raise DeliveryError("no SMTP server is configured", permanent=True)
            code, receipt = email.send(
                to=job.to, subject=job.subject, body=job.text, message_id=job.id, lang=job.lang
            )
            return Outcome(job, ok=True, status=code, receipt=receipt)
        receipt = self.runtime.sms.send(
            account_id=job.account_id or "", to_e164=job.to, text=job.text, idempotency_key=job.id
        )
        return Outcome(job, ok=True, status=200, receipt=receipt)

    # -- record ------------------------------------------------------------------------------

    def record(self, outcomes: list[Outcome]) -> RoundStats:
        """Store every outcome and its log entry in one unit of work (one batched UPDATE)."""
        stats = RoundStats()
        with UnitOfWork(self.runtime) as uow:
            now = uow.runtime.clock.now()
            held = self._still_ours(uow, [o.job for o in outcomes])
            rows, records = [], []
            for o in outcomes:
                job = o.job
                if job.id not in held:
                    continue  # our lease ran out and another dispatcher took the message over
                attempt = job.attempts + 1
                row: dict[str, Any] = {
                    "b_id": job.id,
                    "attempts": attempt,
                    "lease_until": None,
                    "last_status": o.status,
                    "last_error": None,
                    "delivered_at": None,
                    "receipt": None,
                    "next_attempt_at": now,
                }
                details: dict[str, Any] = {
                    "channel": job.channel.value,
                    "what": job.label,
                    "attempt": attempt,
                }
                if o.status is not None:
                    details["status"] = o.status
                if o.ok:
                    row |= {"status": n.Status.DELIVERED.value, "delivered_at": now, "receipt": o.receipt}
                    if o.receipt:
                        details["receipt_sha256"] = hashlib.sha256(o.receipt.encode()).hexdigest()
                    action = "notification.delivered"
                    stats.delivered += 1
                else:
                    error = _safe(o.error or "failed")
                    row["last_error"] = details["error"] = error
                    if o.permanent or self.policy.exhausted(attempt):
                        row["status"] = n.Status.DEAD.value
                        details["permanent"] = o.permanent
                        action = "notification.dead_lettered"
                        stats.dead += 1
                    else:
                        row["status"] = n.Status.PENDING.value
                        row["next_attempt_at"] = now + self.policy.delay(attempt)
                        details["retry_at"] = row["next_attempt_at"].isoformat()
                        action = "notification.retry_scheduled"
                        stats.retrying += 1
                rows.append(row)
                records.append(
                    LogRecord(
                        action=action,
                        actor=DISPATCHER,
                        subject=Subject(account_id=job.account_id, ref=f"msg:{job.id}"),
                        details=details,
                    )
                )
            if rows:
                uow.conn.execute(_RECORD, rows)  # executemany: one statement, every outcome
                uow.mark_changed()
                for record in records:
                    uow.record(record)
            uow.commit()
        return stats

    @staticmethod
    def _still_ours(uow: UnitOfWork, jobs: list[Job]) -> set[str]:
        """Ids of ``jobs`` whose lease we still hold (locked until commit on PostgreSQL)."""
        held: set[str] = set()
        for lease in {j.lease for j in jobs}:
            ids = [j.id for j in jobs if j.lease == lease]
            for start in range(0, len(ids), 500):
                query = select(T.c.id).where(T.c.id.in_(ids[start : start + 500]), T.c.lease_until == lease)
                if uow.conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                held.update(uow.conn.execute(query).scalars())
        return held

    # -- rounds ------------------------------------------------------------------------------

    async def round(self, client: aiohttp.ClientSession, ids: list[str] | None = None) -> RoundStats:
        """Claim, send and record once."""
        limit = self.runtime.settings.dispatcher_batch
        jobs, stats = await asyncio.to_thread(self.claim, limit, ids)
        if jobs:
            outcomes = await self.send(jobs, client)
            done = await asyncio.to_thread(self.record, outcomes)
            stats.delivered, stats.retrying = done.delivered, done.retrying
            stats.dead += done.dead
        return stats

    def client(self) -> aiohttp.ClientSession:
        """The pooled HTTP client webhooks go out on (create it inside the event loop that uses it).

        aiohttp rather than httpx here: on this 2-CPU machine httpx's pool tops out near 1,100
        requests/s and slows as the pool grows, aiohttp's does about 10,000 (docs/BENCHMARKS.md).
        """
        s = self.runtime.settings
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.webhook_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=s.dispatcher_concurrency),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    def run_once(self) -> RoundStats:
        """One round from synchronous code (the CLI, tests)."""
        return asyncio.run(self._with_client(None))

    def deliver_now(self, ids: list[str]) -> None:
        """Try these messages at once; whatever fails stays in the outbox for the next round."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # inside an event loop (an async caller): the dispatcher thread will send it
            self.runtime.outbox_wake.set()
            return
        try:
            jobs, _stats = self.claim(len(ids), ids)
            if any(j.channel is n.Channel.WEBHOOK for j in jobs):
                outcomes = asyncio.run(self._send_with_client(jobs))
            else:  # a code by SMS: no event loop needed, the carrier's client is synchronous
                outcomes = [self._direct(j) for j in jobs]
            if outcomes:
                self.record(outcomes)
        except Exception:  # the message is safe in the outbox; the dispatcher retries it
            logger.exception("immediate delivery failed; left to the dispatcher")

    def _direct(self, job: Job) -> Outcome:
        try:
            return self.attempt_direct(job)
        except Exception as exc:
            return _failed(job, exc)

    async def _send_with_client(self, jobs: list[Job]) -> list[Outcome]:
        async with self.client() as client:
            return await self.send(jobs, client)

    async def _with_client(self, ids: list[str] | None) -> RoundStats:
        async with self.client() as client:
            return await self.round(client, ids)


class _Preparer:
    """Turns outbox rows into jobs: resolves addresses and secrets, applies quiet hours and SMS limits."""

    def __init__(self, uow: UnitOfWork, now: datetime, limits: n.SmsLimits) -> None:
        self.uow = uow
        self.now = now
        self.limits = limits
        self.keys = vault.derive_keys(uow.runtime.vault_master_key)
        self._subs: dict[str, tuple[str, list[str]] | None] = {}
        self._sms_sent: dict[str, list[int]] = {}

    def __call__(self, r: Any, lease: datetime) -> Job | tuple[str, str]:
        channel = n.Channel(r.channel)
        job = Job(
            id=r.id,
            channel=channel,
            account_id=r.account_id,
            label=r.event_type or r.template or "",
            attempts=r.attempts,
            lease=lease,
            lang=r.lang or "en",
        )
        if channel is n.Channel.WEBHOOK:
            if r.subscription_id not in self._subs:
                self._subs[r.subscription_id] = webhooks.signing_secrets(
                    self.uow, r.subscription_id, self.now
                )
            target = self._subs[r.subscription_id]
            if target is None:
                return self._suppress(r, "the subscription is disabled or gone")
            job.to, job.secrets = target[0], target[1]
            job.body = r.payload.encode()
            return job
        address = self._address(r.account_id, "email" if channel is n.Channel.EMAIL else "phone")
        if address is None:
            return self._suppress(r, "no address on file (or the holder's data was erased)")
        variables = orjson.loads(r.payload)
        if r.sealed is not None:
            variables |= orjson.loads(vault.open_secret(self.keys, bytes(r.sealed), r.id))
        shown = templates.render(r.template, job.lang, variables)
        job.to, job.subject = address, shown.subject
        job.text = shown.body if channel is n.Channel.EMAIL else shown.sms
        if channel is n.Channel.SMS and r.template not in n.QUIET_HOURS_EXEMPT:
            later = self._sms_rules(r)
            if later is not None:
                return later
        return job

    def _address(self, account_id: str | None, kind: str) -> str | None:
        if account_id is None:
            return None
        refs = self.uow.conn.execute(
            select(account.c.identity_refs).where(account.c.id == account_id)
        ).scalar()
        ids = orjson.loads(refs or "{}").get(kind, [])
        return vault.reveal(self.uow, ids[0]) if ids else None

    def _sms_rules(self, r: Any) -> tuple[str, str] | None:
        pref = self.uow.conn.execute(
            select(notification_preference).where(notification_preference.c.account_id == r.account_id)
        ).first()
        if pref is not None and pref.quiet_start is not None and pref.quiet_end is not None:
            quiet = n.QuietHours(pref.quiet_start, pref.quiet_end, pref.time_zone)
            if quiet.contains(self.now):
                return self._defer(r, quiet.ends_after(self.now), "quiet_hours")
        hour, day = self._sent(r.account_id)
        if not self.limits.allows(hour, day):
            if r.mandatory:  # a required notice waits for room; it is never dropped
                return self._defer(r, self.now + timedelta(hours=1), "sms_limit")
            return self._suppress(r, "over the holder's SMS limit; the in-site message carries it")
        self._sms_sent[r.account_id][0] += 1
        self._sms_sent[r.account_id][1] += 1
        return None

    def _sent(self, account_id: str) -> tuple[int, int]:
        if account_id not in self._sms_sent:
            counts = []
            for window in (timedelta(hours=1), timedelta(days=1)):
                counts.append(
                    self.uow.conn.execute(
                        select(func.count())
                        .select_from(T)
                        .where(
                            T.c.account_id == account_id,
                            T.c.channel == n.Channel.SMS.value,
                            T.c.status == n.Status.DELIVERED.value,
                            T.c.template.not_in(tuple(n.QUIET_HOURS_EXEMPT)),
                            T.c.delivered_at > self.now - window,
                        )
                    ).scalar_one()
                )
            self._sms_sent[account_id] = counts
        hour, day = self._sms_sent[account_id]
        return hour, day

    def _defer(self, r: Any, until: datetime, why: str) -> tuple[str, str]:
        self.uow.conn.execute(update(T).where(T.c.id == r.id).values(next_attempt_at=until))
        self._log(r, "notification.deferred", {"why": why, "until": until.isoformat()})
        return ("deferred", why)

    def give_up(self, r: Any, why: str) -> tuple[str, str]:
        """Dead-letter a message that cannot even be prepared (a person must look at it)."""
        self.uow.conn.execute(
            update(T).where(T.c.id == r.id).values(status=n.Status.DEAD.value, last_error=why)
        )
        self._log(r, "notification.dead_lettered", {"why": why, "permanent": True})
        return ("dead", why)

    def _suppress(self, r: Any, why: str) -> tuple[str, str]:
        self.uow.conn.execute(
            update(T).where(T.c.id == r.id).values(status=n.Status.SUPPRESSED.value, last_error=why)
        )
        self._log(r, "notification.suppressed", {"why": why})
        return ("suppressed", why)

    def _log(self, r: Any, action: str, details: dict[str, Any]) -> None:
        self.uow.mark_changed()
        self.uow.record(
            LogRecord(
                action=action,
                actor=DISPATCHER,
                subject=Subject(account_id=r.account_id, ref=f"msg:{r.id}"),
                details={"channel": r.channel, "what": r.event_type or r.template or "", **details},
            )
        )


class DispatcherThread:
    """Runs dispatcher rounds in a background thread (``thawline serve`` and ``thawline worker``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.dispatcher = Dispatcher(runtime)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thawline-dispatcher", daemon=True)
        self.rounds = 0

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current round and wait."""
        self._stop.set()
        self.runtime.outbox_wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        interval = self.runtime.settings.dispatcher_interval_seconds
        wake = self.runtime.outbox_wake
        async with self.dispatcher.client() as client:
            while not self._stop.is_set():
                wake.clear()  # a commit during this round sets it again, so the next wait returns at once
                try:
                    stats = await self.dispatcher.round(client)
                except Exception:  # keep dispatching; the messages are safe in the outbox
                    logger.exception("dispatcher round failed")
                    stats = RoundStats()
                self.rounds += 1
                if stats.claimed == 0:
                    await asyncio.to_thread(wake.wait, interval)
