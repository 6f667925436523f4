"""The worker side of broker mode: partition leases, ordered consumption, commit then acknowledge.

Ownership. Each partition has a lease in JetStream's key-value bucket (``<stream>_leases``,
key ``p.<n>``, value = the worker id). The bucket's TTL is ``THAWLINE_BROKER_LEASE_SECONDS``:
a lease not renewed (CAS on its revision) within it lapses, and any worker may then create it
again — that is how a dead worker's partitions are taken over. Workers also put a heartbeat key
(``w.<id>``); each aims at ⌈partitions / live workers⌉ leases, takes free ones up to that, and
hands back the excess when others join. A lost or handed-back partition's accounts are dropped
from this process's engine (``RiskEngine.forget``): whoever owns them next rebuilds their state
from the stored events, and so does this worker if it gets them back.

Order. The new owner deletes the partition's durable consumer and creates it again, delivering
from the first message not yet acknowledged (the stream keeps only those: work-queue retention),
so what a dead owner had fetched but not committed comes back at once and in order. Each
partition has one batch in flight: fetch → evaluate and commit → acknowledge → fetch again.

Rounds. The partitions' fetched batches are evaluated together: one ``RiskEngine.ingest`` (one
transaction, one log entry) per round for every owned partition that has a batch ready, instead of
one per partition. The engine's fixed costs per call (ruleset and list versions, the risky-link
search, the log append under the head row's lock, a durable commit) are then paid once per round;
order per account still holds, since an account lives in one partition and a partition has at
most one batch in a round. Messages of different integrators go in successive rounds (a log entry
names one actor), each partition's in its stream order. A batch joins a round only while at least
half its lease is left; a batch of a lost lease is dropped unacknowledged (its next owner gets the
messages again). If a round fails as a whole, its partitions are retried one by one, so one bad
batch hands back only its own partition.

Exactly once in effect. A message is acknowledged only after its batch committed. A crash
between commit and acknowledgement redelivers it, and the engine skips event ids it has stored;
two owners racing on the same events (a paused worker whose lease lapsed) collide on the event's
primary key, and the loser's transaction rolls back whole.

The fence. A lease alone cannot stop a paused worker from committing after its successor took
over, which could interleave two workers' rounds for one account. Taking a lease therefore also
raises the partition's epoch in the database (``partition_fence.claim``, logged), and every round's
transaction first checks the epochs it holds (``partition_fence.check``, ``FOR SHARE`` on
PostgreSQL): a stale round fails it and rolls back, and its partitions are given up as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from thawline.domain.errors import ConflictError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import logs, partition_fence
from thawline.services.broker import HDR_ACCEPTED, HDR_ACTOR, HDR_REQUEST, BrokerConfig, connect
from thawline.services.engine import EVENT_ADAPTER, RiskEngine
from thawline.services.metrics import DECISION_LATENCY, PARTITION_PENDING, PARTITIONS_OWNED, count_outcomes
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

log = logging.getLogger("thawline.broker")
T = TypeVar("T")
FETCH_WAIT_SECONDS = 1.0
# Once the first batch of a round is ready, wait at most this long for the other owned partitions'
# fetches (the previous round's commit released them all; under load they answer at once); an
# idle partition's fetch lingers for FETCH_WAIT_SECONDS and is not waited for.
ROUND_GATHER_SECONDS = 0.05


@dataclass
class Lease:
    """One partition this worker owns."""

    partition: int
    revision: int
    renewed: float  # monotonic time of the last successful create/renew
    sub: JetStreamContext.PullSubscription | None = None
    task: asyncio.Task[None] | None = None
    accounts: set[str] = field(default_factory=set)  # whose state this engine built while owning
    stopping: bool = False
    lost: bool = False  # a renewal failed: nothing fetched under this lease may be committed any more
    epoch: int = 0  # this worker's epoch in partition_owner (the fence every round checks)


@dataclass(eq=False)
class Batch:
    """One partition's fetched messages, waiting for a round; ``done`` is True once committed and
    acknowledged, False when dropped or failed (nothing acknowledged)."""

    lease: Lease
    msgs: list[Msg]
    done: asyncio.Future[bool]


@dataclass(eq=False)
class _Parsed:
    batch: Batch
    runs: list[tuple[str, list[Msg], list[Any]]]  # (integrator, messages, their events) in stream order
    dropped: bool = False  # its lease was lost before all its runs were committed: never acknowledged


class PartitionConsumer:
    """Owns partitions through leases and feeds their events, in order, to one ``RiskEngine``."""

    def __init__(self, runtime: Runtime, engine: RiskEngine | None = None, *, worker_id: str = "") -> None:
        self.runtime = runtime
        self.cfg = BrokerConfig.from_settings(runtime.settings)
        self.engine = engine or RiskEngine(runtime)
        self.worker_id = worker_id or f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.leases: dict[int, Lease] = {}
        self.processed = 0
        self._nc: Nats | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ready: dict[int, Batch] = {}  # partition → its fetched batch, waiting for the next round
        self._wake = asyncio.Event()
        self.rounds = 0

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases and consume until ``stop`` is set; then hand every lease back."""
        self._nc, self._js = await connect(self.cfg)
        self._kv = await self._bucket()
        log.info(
            "worker %s consuming %s (%d partitions)", self.worker_id, self.cfg.stream, self.cfg.partitions
        )
        tick = self.cfg.lease_seconds / 3
        rounds = asyncio.create_task(self._round_loop(), name="rounds")
        try:
            while not stop.is_set():
                try:
                    await self._maintain()
                except Exception:  # the broker hiccuped: keep what we can, retry next tick
                    log.exception("lease maintenance failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick)
        finally:
            # The round loop keeps running until the batches in flight are committed.
            await asyncio.gather(*(self._give_up(x, hand_back=True) for x in list(self.leases.values())))
            await asyncio.gather(*self._background, return_exceptions=True)
            rounds.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rounds
            await self._nc.drain()

    async def _bucket(self) -> KeyValue:
        assert self._js is not None
        try:
            return await self._js.key_value(self.cfg.bucket)
        except Exception:  # not found (the exact error differs between servers)
            return await self._js.create_key_value(
                bucket=self.cfg.bucket, ttl=self.cfg.lease_seconds, history=1
            )

    # -- leases -----------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Heartbeat, renew, hand back the excess, take free partitions up to the fair share."""
        assert self._kv is not None
        await self._kv.put(f"w.{self.worker_id}", b"")
        for lease in list(self.leases.values()):  # stopping ones too, until their batch is done
            try:
                lease.revision = await self._kv.update(
                    f"p.{lease.partition}", self.worker_id.encode(), last=lease.revision
                )
                lease.renewed = time.monotonic()
            except (KeyWrongLastSequenceError, JsNotFoundError):
                if lease.partition not in self.leases:
                    continue  # handed back meanwhile
                log.warning("lost the lease on partition %d", lease.partition)
                lease.stopping = lease.lost = True
                self._wake.set()  # a batch of it waiting for a round is dropped
                self._in_background(self._give_up(lease, hand_back=False))
        try:
            live = len([k for k in await self._kv.keys() if k.startswith("w.")])
        except NoKeysError:
            live = 1
        share = math.ceil(self.cfg.partitions / max(live, 1))
        owned = sorted(p for p, lease in self.leases.items() if not lease.stopping)
        for p in owned[share:]:  # others joined: hand back after the batch in flight
            self.leases[p].stopping = True
            self._in_background(self._give_up(self.leases[p], hand_back=True))
        start = int.from_bytes(self.worker_id.encode()[-4:], "big") % self.cfg.partitions
        for i in range(self.cfg.partitions):
            if len([x for x in self.leases.values() if not x.stopping]) >= share:
                break
            p = (start + i) % self.cfg.partitions
            if p not in self.leases:
                await self._try_take(p)
        PARTITIONS_OWNED.set(len(self.leases))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the maintenance loop: waiting for a batch in flight must not delay
        the renewal of the other leases."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _try_take(self, p: int) -> None:
        assert self._kv is not None
        assert self._js is not None
        try:
            revision = await self._kv.create(f"p.{p}", self.worker_id.encode())
        except KeyWrongLastSequenceError:
            return  # someone holds it
        lease = Lease(p, revision, time.monotonic())
        try:  # the fence: from now on rounds of the partition's previous owner cannot commit
            lease.epoch = await asyncio.to_thread(
                partition_fence.claim,
                self.runtime,
                self.cfg.stream,
                p,
                self.worker_id,
                wait_seconds=self.cfg.lease_seconds,
            )
        except Exception:
            log.exception("could not record the claim of partition %d; releasing it", p)
            with contextlib.suppress(Exception):
                await self._kv.delete(f"p.{p}", last=revision)
            return
        self.leases[p] = lease
        # A fresh consumer delivers from the first unacknowledged message, in stream order.
        with contextlib.suppress(JsNotFoundError):
            await self._js.delete_consumer(self.cfg.stream, self.cfg.durable(p))
        lease.sub = await self._js.pull_subscribe(
            self.cfg.subject(p),
            durable=self.cfg.durable(p),
            stream=self.cfg.stream,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                max_ack_pending=self.cfg.batch,
                ack_wait=max(30.0, self.cfg.lease_seconds * 3),
            ),
        )
        lease.task = asyncio.create_task(self._consume(lease), name=f"partition-{p}")
        log.info("took partition %d", p)

    async def _give_up(self, lease: Lease, *, hand_back: bool) -> None:
        """Stop consuming after the batch in flight, drop the accounts' state, release the lease."""
        lease.stopping = True
        if lease.task is not None and lease.task is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await lease.task
        if lease.sub is not None:
            with contextlib.suppress(Exception):
                await lease.sub.unsubscribe()
        # Whatever this engine knows of these accounts may be stale by the time it owns them again.
        self.engine.forget(lease.accounts)
        self.leases.pop(lease.partition, None)
        with contextlib.suppress(KeyError):
            PARTITION_PENDING.remove(str(lease.partition))
        if hand_back and self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(f"p.{lease.partition}", last=lease.revision)
        log.info("%s partition %d", "handed back" if hand_back else "dropped", lease.partition)

    def _safe(self, lease: Lease) -> bool:
        """True while at least half the lease is left: a batch started now ends before it lapses."""
        return time.monotonic() - lease.renewed < self.cfg.lease_seconds / 2

    # -- consumption ------------------------------------------------------------------------------

    async def _consume(self, lease: Lease) -> None:
        """One partition: fetch, hand the batch to the next round, await its commit; one in flight."""
        assert lease.sub is not None
        loop = asyncio.get_running_loop()
        while not lease.stopping:
            if not self._safe(lease):
                await asyncio.sleep(0.05)
                continue
            try:
                msgs = await lease.sub.fetch(self.cfg.batch, timeout=FETCH_WAIT_SECONDS)
            except TimeoutError:
                continue
            except Exception:
                if _stopping(lease):  # the subscription was closed under us
                    return
                log.exception("fetch failed on partition %d", lease.partition)
                await asyncio.sleep(0.5)
                continue
            if not msgs:  # only status messages came back
                continue
            batch = Batch(lease, msgs, loop.create_future())
            self._ready[lease.partition] = batch
            self._wake.set()
            if not await batch.done:
                # Nothing was acknowledged: hand the partition back; it restarts from these messages.
                # (A lost lease is already being given up.)
                if not lease.lost:
                    self._in_background(self._give_up(lease, hand_back=True))
                return

    def _gathered(self) -> bool:
        """Every partition still consuming has a batch waiting."""
        return all(
            p in self._ready
            for p, lease in self.leases.items()
            if not lease.stopping and lease.task is not None and not lease.task.done()
        )

    def _take(self) -> list[Batch]:
        """The waiting batches that may join a round now; those of lost leases are dropped."""
        taken = []
        for p, b in list(self._ready.items()):
            if b.lease.lost:
                del self._ready[p]
                _settle(b, ok=False)
            elif self._safe(b.lease):
                taken.append(self._ready.pop(p))
        return taken

    async def _round_loop(self) -> None:
        """Evaluate the waiting batches of all partitions together, round after round."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._ready:
                await self._wake.wait()
            self._wake.clear()
            deadline = loop.time() + ROUND_GATHER_SECONDS
            while not self._gathered() and (left := deadline - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
                self._wake.clear()
            taken = self._take()
            if not taken:
                if self._ready:  # only batches whose lease is due for renewal: wait for it
                    await asyncio.sleep(0.05)
                continue
            try:
                await self._round(taken)
            except Exception:  # never leave a partition waiting for a round that died
                log.exception("round failed")
            finally:
                for b in taken:
                    _settle(b, ok=False)  # no-op for those already settled

    async def _round(self, taken: list[Batch]) -> None:
        """One round: evaluate and commit every taken batch together, then acknowledge them."""
        self.rounds += 1
        parsed: list[_Parsed] = []
        for b in taken:
            try:
                runs = [
                    (actor, run, [EVENT_ADAPTER.validate_json(m.data) for m in run])
                    for actor, run in _runs(b.msgs)
                ]
            except Exception:
                log.exception("unreadable message on partition %d; handing it back", b.lease.partition)
                _settle(b, ok=False)
                continue
            parsed.append(_Parsed(b, runs))
        if not parsed:
            return
        try:
            await self._commit(parsed)
        except Exception:
            if len(parsed) == 1:
                log.exception(
                    "batch failed on partition %d; handing it back", parsed[0].batch.lease.partition
                )
                return
            log.warning(
                "a round of %d partitions failed; committing them one by one", len(parsed), exc_info=True
            )
            for one in parsed:
                try:
                    await self._commit([one])
                except Exception:
                    log.exception("batch failed on partition %d; handing it back", one.batch.lease.partition)
                    _settle(one.batch, ok=False)
                else:
                    if not one.dropped:
                        await self._acknowledge(one.batch)
            return
        await asyncio.gather(*(self._acknowledge(one.batch) for one in parsed if not one.dropped))

    async def _commit(self, parsed: list[_Parsed]) -> None:
        """Evaluate the batches in stream order per partition: one ``ingest`` per integrator run."""
        for actor_ref, merged in _merge(
            [[(actor, (one, run, events)) for actor, run, events in one.runs] for one in parsed]
        ):
            # Checked before every engine call: nothing more is committed for a lease lost meanwhile
            # (the primary key on the event id stops a second commit should the loss come later).
            for one, _run, _evs in merged:
                one.dropped = one.dropped or one.batch.lease.lost
            group = [g for g in merged if not g[0].dropped]
            if not group:
                continue
            events = [e for _one, _run, evs in group for e in evs]
            msgs = [m for _one, run, _evs in group for m in run]
            partitions = sorted({one.batch.lease.partition for one, _run, _evs in group})
            requests = sorted({m.headers.get(HDR_REQUEST, "") for m in msgs if m.headers} - {""})
            token = logs.request_id.set(requests[0] if len(requests) == 1 else ",".join(requests[:5]))
            held = {one.batch.lease.partition: one.batch.lease.epoch for one, _run, _evs in group}
            try:
                result = await asyncio.to_thread(self._ingest, events, actor_ref, held)
            except partition_fence.LeaseLostError as lost:
                for p in lost.partitions:  # another worker claimed them: nothing more from us
                    lease = self.leases.get(p)
                    if lease is not None and not lease.lost:
                        log.warning("partition %d was claimed by another worker; dropping it", p)
                        lease.stopping = lease.lost = True
                        self._in_background(self._give_up(lease, hand_back=False))
                raise
            else:
                log.info(
                    "partitions %s: %d events committed (%d duplicates, %d refused)",
                    ",".join(map(str, partitions)),
                    len(result.accepted),
                    len(result.duplicates),
                    len(result.rejected),
                    extra={"partitions": partitions},
                )
            finally:
                logs.request_id.reset(token)
            done = time.time_ns()
            for m in msgs:
                accepted = (m.headers or {}).get(HDR_ACCEPTED)
                if accepted:
                    DECISION_LATENCY.observe(max(0, done - int(accepted)) / 1e9)
            count_outcomes((o.outcome for o in result.accepted), len(result.duplicates), len(result.rejected))
            for _i, ident, fld, message in result.rejected:
                log.warning("event %s refused: %s: %s", ident, fld, message)
            for one, _run, evs in group:
                one.batch.lease.accounts.update(e.account_id for e in evs)
            self.processed += len(msgs)

    async def _acknowledge(self, batch: Batch) -> None:
        """Acknowledge a committed batch (the last one synchronously) and settle it."""
        try:
            for m in batch.msgs[:-1]:
                await m.ack()
            await batch.msgs[-1].ack_sync()
        except Exception:
            # Committed but maybe not acknowledged: its next owner finds the events stored (duplicates).
            log.exception("acknowledging partition %d failed; handing it back", batch.lease.partition)
            _settle(batch, ok=False)
            return
        pending = batch.msgs[-1].metadata.num_pending
        if pending is not None:
            PARTITION_PENDING.labels(str(batch.lease.partition)).set(pending)
        _settle(batch, ok=True)

    def _ingest(self, events: list[Any], actor_ref: str, held: dict[int, int]) -> Any:
        actor = Actor(ActorKind.INTEGRATOR, actor_ref) if actor_ref else Actor(ActorKind.SYSTEM, "broker")

        def fence(uow: UnitOfWork) -> None:
            # A round stalled twice a lease long is ended by PostgreSQL, freeing its partitions.
            partition_fence.check(uow, self.cfg.stream, held, stall_seconds=2 * self.cfg.lease_seconds)

        try:
            return self.engine.ingest(events, actor, fence=fence)
        except ConflictError:  # another owner stored some of these meanwhile: now they are duplicates
            return self.engine.ingest(events, actor, fence=fence)


def _settle(batch: Batch, *, ok: bool) -> None:
    if not batch.done.done():
        batch.done.set_result(ok)


def _merge(partitions: list[list[tuple[str, T]]]) -> list[tuple[str, list[T]]]:
    """Combine the partitions' runs (integrator, item) into rounds of one integrator each.

    Each round takes, from every partition whose next run belongs to the first waiting partition's
    integrator, that run; so each partition's runs stay in order, one per round at most.
    """
    queues = [list(reversed(runs)) for runs in partitions]
    out: list[tuple[str, list[T]]] = []
    while True:
        heads = [q for q in queues if q]
        if not heads:
            return out
        actor = heads[0][-1][0]
        out.append((actor, [q.pop()[1] for q in heads if q[-1][0] == actor]))


def _stopping(lease: Lease) -> bool:
    return lease.stopping


def _runs(msgs: list[Msg]) -> list[tuple[str, list[Msg]]]:
    """Consecutive messages of the same integrator (one log entry names one actor)."""
    out: list[tuple[str, list[Msg]]] = []
    for m in msgs:
        actor = (m.headers or {}).get(HDR_ACTOR, "")
        if out and out[-1][0] == actor:
            out[-1][1].append(m)
        else:
            out.append((actor, [m]))
    return out


class ConsumerThread:
    """Runs a ``PartitionConsumer`` on its own event loop beside the worker's timers."""

    def __init__(self, runtime: Runtime, engine: RiskEngine | None = None) -> None:
        self.consumer = PartitionConsumer(runtime, engine)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="thawline-broker", daemon=True)

    def start(self) -> None:
        """Start consuming."""
        self._thread.start()
        self._ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            await self.consumer.run(self._stop)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:
            self.error = exc
            log.exception("broker consumer stopped")
            self._ready.set()
        finally:
            self._loop.close()

    @property
    def alive(self) -> bool:
        """False once the consumer stopped (on request or after an error)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Finish the batches in flight, hand the leases back, and wait."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=max(30.0, self.consumer.cfg.lease_seconds * 2))
