"""Benchmark notifications: webhook delivery throughput from the outbox, and SSE latency of status changes.

    python bench/notify.py [--quick] [--database-url URL] [--messages N] [--settings 500x64,1000x64,1000x16]
                           [--sse-changes N] [--profile [--profile-out FILE]] [--skip-sse] [--keep-tmp]

Prints one JSON object (progress goes to stderr):

- ``deliveries_per_s``: webhook deliveries per second drained from a pre-filled outbox by
  ``Dispatcher.round()`` in a loop (one event loop, one pooled client) to a local HTTP/1.1 receiver
  in a separate process (asyncio, keep-alive, answers 200). The outbox is filled with real freezes
  through the service layer (accounts without phone or email, integrator ``ak_bench`` subscribed to
  ``account.frozen``, so each freeze queues exactly one webhook row); the fill is not timed. Each
  ``batch x concurrency`` setting drains the same rows (reset to pending between runs); the best
  is reported, every run under ``dispatch_runs`` with its claim/send/record split.
- ``sse_latency_p50_ms`` / ``_p99_ms`` / ``_max_ms``: from ``uow.commit()`` returning to the matching
  ``event: status`` arriving on an open ``GET /v1/accounts/{id}/stream``, with the change committed by
  another process than the server's (a real ``thawline serve``; its live feed sees it on its poll).
- ``sse_latency_same_process_*``: the same with the server (uvicorn in a thread) and the commit
  sharing one runtime, so the commit wakes the live feed at once.

SQLite (a temporary file) by default; PostgreSQL with --database-url postgresql://... (a fresh
schema is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import http.client
import inspect
import io
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from thawline.adapters.db.schema import notification_outbox
from thawline.api.app import create_app
from thawline.config import Settings
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, apikeys, freezes, webhooks
from thawline.services.dispatcher import Dispatcher
from thawline.services.live import LiveFeed
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork

OPS = Actor(ActorKind.REVIEWER, "rv_bench")
INTEGRATOR = "ak_bench"
SSE_ACCOUNT = "acc_sse"
T = notification_outbox
TARGETS = {"deliveries_per_s": 2000, "sse_latency_p99_ms": 1000}


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    print(f"[notify {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


# -- the webhook receiver (its own process) ---------------------------------------------------

_REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def _receiver_main(port_out: Any, count: Any, unique: Any, bad: Any) -> None:
    """A minimal HTTP/1.1 server: reads each request (headers and Content-Length body), answers 200."""
    ids: set[bytes] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, msg_id = 0, b""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        msg_id = value.strip()
                if length:
                    await reader.readexactly(length)
                if not head.startswith(b"POST ") or not msg_id:
                    bad.value += 1
                count.value += 1
                ids.add(msg_id)
                unique.value = len(ids)
                writer.write(_REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        port_out.close()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Receiver:
    """The receiver process; ``count`` is every request it answered, ``unique`` distinct webhook ids."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._count = ctx.RawValue("q", 0)
        self._unique = ctx.RawValue("q", 0)
        self._bad = ctx.RawValue("q", 0)
        parent, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_receiver_main, args=(child, self._count, self._unique, self._bad), daemon=True
        )
        self._proc.start()
        child.close()
        if not parent.poll(30):
            self.close()
            raise RuntimeError("the webhook receiver did not start")
        self.port = int(parent.recv())
        parent.close()

    @property
    def url(self) -> str:
        """Where the subscription points."""
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def count(self) -> int:
        """Requests answered so far."""
        return int(self._count.value)

    @property
    def unique(self) -> int:
        """Distinct webhook-id values seen so far."""
        return int(self._unique.value)

    @property
    def bad(self) -> int:
        """Requests that were not a POST with a webhook-id."""
        return int(self._bad.value)

    def close(self) -> None:
        """Stop the process."""
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)


# -- database ----------------------------------------------------------------------------------


class Database:
    """A temporary SQLite file, or a fresh PostgreSQL schema dropped at the end."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.schema: str | None = None
        self.conninfo = ""
        self.url = url or f"sqlite:///{tmp / 'notify.db'}"
        self.backend = make_url(self.url).get_backend_name()
        if self.backend == "postgresql":
            u = make_url(self.url)
            self.schema = "bench_" + secrets.token_hex(4)
            self.conninfo = (
                f"host={u.host or '127.0.0.1'} port={u.port or 5432} dbname={u.database} "
                f"user={u.username or 'postgres'}" + (f" password={u.password}" if u.password else "")
            )
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            self.url = u.set(
                drivername="postgresql+psycopg", query={"options": f"-csearch_path={self.schema}"}
            ).render_as_string(hide_password=False)

    def vacuum(self) -> None:
        """PostgreSQL: clear the dead row versions a run leaves (autovacuum's job in production)."""
        if self.schema is not None:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute(f"VACUUM ANALYZE {self.schema}.notification_outbox")

    def drop(self) -> None:
        """Drop the schema (PostgreSQL)."""
        if self.schema is not None:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


# -- population --------------------------------------------------------------------------------


def register_accounts(rt: Runtime, ids: list[str], integrator: str) -> None:
    """Register accounts without phone or email (so a freeze queues no SMS or email)."""
    for start in range(0, len(ids), 500):
        with UnitOfWork(rt) as uow:
            for account_id in ids[start : start + 500]:
                accounts.register(
                    uow, accounts.RegisterAccount(account_id, "韩梅梅", integrator=integrator), OPS
                )
            uow.commit()


def subscribe(rt: Runtime, url: str) -> str:
    """One active subscription of the bench integrator to ``account.frozen``."""
    with UnitOfWork(rt) as uow:
        sub, _secret = webhooks.create(
            uow, INTEGRATOR, url=url, event_types=["account.frozen"], description="bench", actor=OPS
        )
        uow.commit()
    return sub.id


def _freeze_cmd(account_id: str) -> freezes.FreezeAccount:
    return freezes.FreezeAccount(
        account_id,
        Restriction(FreezeScope.FULL),
        ReasonCategory.MANUAL,
        ("BENCH",),
        SourceKind.REVIEWER,
        OPS.id,
        "terms §4",
        "bench",
        "a routine check",
    )


def fill(rt: Runtime, total: int, account_ids: list[str], per_commit: int) -> float:
    """``total`` freezes through the service layer, ``per_commit`` per unit of work; returns seconds."""
    started = time.perf_counter()
    done = 0
    while done < total:
        with UnitOfWork(rt) as uow:
            for i in range(done, min(done + per_commit, total)):
                freezes.freeze_account(uow, _freeze_cmd(account_ids[i % len(account_ids)]), OPS)
            uow.commit()
        done = min(done + per_commit, total)
        if done % (per_commit * 10) == 0 or done == total:
            log(f"filled {done}/{total}")
    return time.perf_counter() - started


def outbox_counts(rt: Runtime, sub_id: str) -> dict[str, int]:
    """Rows of the bench subscription by status."""
    with UnitOfWork(rt, read_only=True) as uow:
        rows = uow.conn.execute(
            select(T.c.status, func.count()).where(T.c.subscription_id == sub_id).group_by(T.c.status)
        )
        return {str(status): int(n) for status, n in rows}


def other_channels(rt: Runtime) -> int:
    """Outbox rows that are not webhooks (expected none: the accounts have no phone or email)."""
    with UnitOfWork(rt, read_only=True) as uow:
        return int(
            uow.conn.execute(select(func.count()).select_from(T).where(T.c.channel != "webhook")).scalar_one()
        )


def reset(rt: Runtime, sub_id: str) -> None:
    """Put the subscription's rows back to pending as they were filled (between runs; not timed)."""
    with rt.engine.begin() as conn:
        conn.execute(
            update(T)
            .where(T.c.subscription_id == sub_id)
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=T.c.created_at,
                lease_until=None,
                delivered_at=None,
                last_error=None,
                last_status=None,
                receipt=None,
            )
        )


# -- dispatch ----------------------------------------------------------------------------------


class Phases:
    """Wraps a dispatcher's claim/send/record to time each (and optionally profile each)."""

    def __init__(self, d: Dispatcher, profile: bool) -> None:
        self.seconds = {"claim": 0.0, "send": 0.0, "record": 0.0}
        self.profiles: dict[str, cProfile.Profile] = {}
        claim, send, record = d.claim, d.send, d.record
        if profile:
            self.profiles = {k: cProfile.Profile() for k in self.seconds}

        def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                prof = self.profiles.get(name)
                started = time.perf_counter()
                if prof is not None:
                    prof.enable()  # in the worker thread this phase runs in
                try:
                    return fn(*args, **kwargs)
                finally:
                    if prof is not None:
                        prof.disable()
                    self.seconds[name] += time.perf_counter() - started

            return wrapper

        async def timed_send(*args: Any, **kwargs: Any) -> Any:
            prof = self.profiles.get("send")
            started = time.perf_counter()
            if prof is not None:
                prof.enable()
            try:
                return await send(*args, **kwargs)
            finally:
                if prof is not None:
                    prof.disable()
                self.seconds["send"] += time.perf_counter() - started

        d.claim = timed("claim", claim)  # type: ignore[method-assign]
        d.record = timed("record", record)  # type: ignore[method-assign]
        d.send = timed_send  # type: ignore[method-assign]


def drain(rt: Runtime, receiver: Receiver, timeout: float, profile: bool) -> tuple[dict[str, Any], Phases]:
    """Run ``Dispatcher.round()`` until nothing is claimed; times the rounds that made progress."""
    d = Dispatcher(rt)
    phases = Phases(d, profile)
    before = receiver.count

    async def run() -> dict[str, Any]:
        totals = {"rounds": 0, "claimed": 0, "delivered": 0, "retrying": 0, "dead": 0, "suppressed": 0}
        async with d.client() as client:
            started = time.perf_counter()
            last = started
            deadline = started + timeout
            while True:
                stats = await d.round(client)
                if stats.claimed == 0:
                    break
                last = time.perf_counter()
                totals["rounds"] += 1
                for k in ("claimed", "delivered", "retrying", "dead", "suppressed"):
                    totals[k] += getattr(stats, k)
                if last > deadline:
                    log(f"timed out after {timeout:.0f} s")
                    break
        return totals | {"seconds": last - started}

    totals = asyncio.run(run())
    totals["receiver_requests"] = receiver.count - before
    return totals, phases


def dispatch_runs(
    rt: Runtime,
    db: Database,
    sub_id: str,
    receiver: Receiver,
    *,
    messages: int,
    trials: list[tuple[int, int]],
    profile: bool,
) -> tuple[list[dict[str, Any]], str]:
    """Drain the ``messages`` rows once per (batch, concurrency); returns each run, and the profile text."""
    runs: list[dict[str, Any]] = []
    report = ""
    timeout = max(120.0, messages / 100)
    for i, (batch, concurrency) in enumerate(trials):
        if i:
            reset(rt, sub_id)
        db.vacuum()
        counts = outbox_counts(rt, sub_id)
        assert counts == {"pending": messages}, counts
        settings = rt.settings.model_copy(
            update={"dispatcher_batch": batch, "dispatcher_concurrency": concurrency}
        )
        trial_rt = build_runtime(settings)
        try:
            log(f"draining {messages} webhooks: batch {batch}, concurrency {concurrency}")
            totals, phases = drain(trial_rt, receiver, timeout, profile)
        finally:
            trial_rt.close()
        counts = outbox_counts(rt, sub_id)
        rate = totals["delivered"] / totals["seconds"] if totals["seconds"] else 0.0
        run = {
            "batch": batch,
            "concurrency": concurrency,
            "deliveries_per_s": round(rate, 1),
            "seconds": round(totals["seconds"], 3),
            **{k: totals[k] for k in ("rounds", "delivered", "retrying", "dead", "receiver_requests")},
            "phase_s": {k: round(v, 3) for k, v in phases.seconds.items()},
            "phase_ms_per_message": {
                k: round(v * 1000 / max(totals["delivered"], 1), 4) for k, v in phases.seconds.items()
            },
            "all_delivered": counts == {"delivered": messages},
        }
        runs.append(run)
        log(f"  {rate:,.0f} deliveries/s; phases {run['phase_s']}; outbox {counts}")
        if counts != {"delivered": messages} or totals["receiver_requests"] < messages:
            raise RuntimeError(f"not every message was delivered: outbox {counts}, run {run}")
        if phases.profiles:
            out = io.StringIO()
            out.write(f"=== profile: batch {batch}, concurrency {concurrency} ===\n")
            for name, prof in phases.profiles.items():
                out.write(f"--- {name} ({phases.seconds[name]:.2f} s) ---\n")
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
                out.write(f"--- {name}: by own time ---\n")
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            report += out.getvalue()
    return runs, report


# -- SSE -----------------------------------------------------------------------------------------


class SseListener:
    """An open ``GET /v1/accounts/{id}/stream`` in its own thread; notes when each event arrives."""

    def __init__(self, base_url: str, account_id: str, key: str) -> None:
        self.url = f"{base_url}/v1/accounts/{account_id}/stream"
        self.key = key
        # (seq, event) -> (perf_counter, action); a change's "status" and "message" events share its seq
        self.arrivals: dict[tuple[int, str], tuple[float, str]] = {}
        self.cond = threading.Condition()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="bench-sse", daemon=True)

    def __enter__(self) -> SseListener:
        self._thread.start()
        if not self.ready.wait(30) or self.error is not None:
            self.__exit__()
            raise RuntimeError(f"the SSE stream did not open: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the waiter
            self.error = exc
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10.0, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.url, headers=headers) as reply,
        ):
            if reply.status_code != 200:
                body = await reply.aread()
                raise RuntimeError(f"stream answered {reply.status_code}: {body[:300]!r}")
            fields: dict[str, str] = {}
            with contextlib.suppress(asyncio.CancelledError):
                async for line in reply.aiter_lines():
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value.strip()
                        if name == "retry":
                            self.ready.set()  # the stream's queue is subscribed before this is sent
                        continue
                    now = time.perf_counter()
                    if fields.get("id", "").isdigit():
                        action = json.loads(fields.get("data", "{}")).get("action", "")
                        with self.cond:
                            self.arrivals.setdefault(
                                (int(fields["id"]), fields.get("event", "")), (now, action)
                            )
                            self.cond.notify_all()
                    fields = {}

    def wait(self, seqs: range, action: str, timeout: float) -> float | None:
        """When a ``status`` event for ``action`` with a seq in ``seqs`` arrived (None on timeout)."""

        def found() -> float | None:
            for seq in seqs:
                hit = self.arrivals.get((seq, "status"))
                if hit is not None and hit[1] == action:
                    return hit[0]
            return None

        with self.cond:
            self.cond.wait_for(lambda: found() is not None or self.error is not None, timeout)
            return found()


def status_changes(
    rt: Runtime, listener: SseListener, changes: int, jitter: float
) -> tuple[list[float], int]:
    """Freeze and release in turn ``changes`` times through ``rt``; milliseconds commit → SSE event."""
    latencies: list[float] = []
    lost = 0
    freeze_id = ""
    for i in range(changes):
        time.sleep(random.uniform(0, jitter))  # random phase against the feed's poll interval
        with UnitOfWork(rt) as uow:
            if i % 2 == 0:
                made, _ = freezes.freeze_account(uow, _freeze_cmd(SSE_ACCOUNT), OPS)
                freeze_id, action = made.id, "account.frozen"
            else:
                freezes.release(uow, freeze_id, OPS, "bench: checked")
                action = "freeze.released"
            appended = uow.commit()
            committed = time.perf_counter()
        arrived = listener.wait(appended, action, timeout=10.0)
        if listener.error is not None:
            raise RuntimeError(f"the SSE stream failed: {listener.error!r}")
        if arrived is None:
            lost += 1
            log(f"  no SSE event for {action} {list(appended)} within 10 s")
            continue
        latencies.append((arrived - committed) * 1000)
    return latencies, lost


def _wait_ready(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not start")


@contextlib.contextmanager
def serve_subprocess(settings: Settings, tmp: Path) -> Iterator[str]:
    """A real ``thawline serve`` on the same database and keys; yields its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "THAWLINE_DATABASE_URL": settings.database_url,
        "THAWLINE_DATA_DIR": str(settings.data_dir),
        "THAWLINE_SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
        "THAWLINE_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
    }
    with (tmp / "serve.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thawline", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_ready(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.contextmanager
def serve_thread(rt: Runtime) -> Iterator[str]:
    """``create_app(rt)`` under uvicorn in a thread of this process; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(rt), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    try:
        _wait_ready(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def latency_summary(prefix: str, values: list[float], lost: int) -> dict[str, Any]:
    """p50/p99/max in milliseconds."""
    if not values:
        return {f"{prefix}_samples": 0, f"{prefix}_lost": lost}
    return {
        f"{prefix}_p50_ms": round(statistics.median(values), 2),
        f"{prefix}_p99_ms": round(percentile(values, 99), 2),
        f"{prefix}_max_ms": round(max(values), 2),
        f"{prefix}_samples": len(values),
        f"{prefix}_lost": lost,
    }


# -- main ----------------------------------------------------------------------------------------


def parse_trials(spec: str) -> list[tuple[int, int]]:
    """``500x64,1000x128`` → [(500, 64), (1000, 128)]."""
    out = []
    for part in spec.split(","):
        batch, _, concurrency = part.strip().partition("x")
        out.append((int(batch), int(concurrency)))
    return out


def main() -> None:  # noqa: PLR0915 - one linear script
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes within a minute")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--messages", type=int, default=None, help="webhooks to drain (20,000; 2,000 quick)")
    parser.add_argument(
        "--accounts", type=int, default=None, help="accounts the freezes are spread over (messages / 20)"
    )
    parser.add_argument("--fill-batch", type=int, default=500, help="freezes per unit of work in the fill")
    parser.add_argument(
        "--settings", default="500x64,1000x64,1000x16", help="dispatcher batch x concurrency runs"
    )
    parser.add_argument("--sse-changes", type=int, default=None, help="status changes timed (200; 30 quick)")
    parser.add_argument("--profile", action="store_true", help="cProfile each phase; report on stderr")
    parser.add_argument("--profile-out", type=Path, default=None, help="also write the profile report here")
    parser.add_argument("--skip-sse", action="store_true", help="only the delivery benchmark")
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the temporary directory (logs, database)"
    )
    args = parser.parse_args()
    messages = args.messages or (2_000 if args.quick else 20_000)
    # Each freeze reads the account's active freezes, so piling thousands on one account slows the fill.
    n_accounts = args.accounts or max(100, messages // 20)
    changes = args.sse_changes or (30 if args.quick else 200)
    trials = parse_trials(args.settings)

    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="thawline-notify-bench-"))
    db = Database(args.database_url, tmp)
    receiver: Receiver | None = None
    rt: Runtime | None = None
    result: dict[str, Any] = {}
    try:
        receiver = Receiver()
        settings = Settings(  # type: ignore[call-arg]
            database_url=db.url,
            data_dir=tmp / "data",
            webhook_allow_private_urls=True,  # the receiver is on loopback
        )
        rt = build_runtime(settings)
        log(f"database {db.backend}; receiver on {receiver.url}")
        account_ids = [f"acc_b{i:05d}" for i in range(n_accounts)]
        register_accounts(rt, account_ids, INTEGRATOR)
        register_accounts(rt, [SSE_ACCOUNT], "ak_nobody")  # no subscription: the SSE part queues no webhooks
        sub_id = subscribe(rt, receiver.url)
        with UnitOfWork(rt) as uow:
            _info, key = apikeys.create_key(uow, "bench-sse", ["accounts:read"], OPS)
            uow.commit()

        fill_s = fill(rt, messages, account_ids, args.fill_batch)
        extra = other_channels(rt)
        if extra:
            raise RuntimeError(
                f"{extra} non-webhook outbox rows: the bench accounts must have no phone/email"
            )
        runs, report = dispatch_runs(
            rt, db, sub_id, receiver, messages=messages, trials=trials, profile=args.profile
        )
        if report:
            print(report, file=sys.stderr)
            if args.profile_out is not None:
                args.profile_out.write_text(report, encoding="utf-8")
        best = max(runs, key=lambda r: r["deliveries_per_s"])
        result = {
            "deliveries_per_s": best["deliveries_per_s"],
            "batch_size": best["batch"],
            "concurrency": best["concurrency"],
            "drain_seconds": best["seconds"],
            "messages": messages,
            "accounts": n_accounts,
            "fill_seconds": round(fill_s, 2),
            "fill_freezes_per_s": round(messages / fill_s, 1),
            "receiver_requests": receiver.count,
            "receiver_unique_ids": receiver.unique,
            "receiver_malformed": receiver.bad,
            "dispatch_runs": runs,
        }

        if not args.skip_sse:
            log(f"SSE, committed by another process: {changes} status changes")
            with serve_subprocess(settings, tmp) as base, SseListener(base, SSE_ACCOUNT, key) as sse:
                # Random gaps a little longer than the live feed's 0.25 s poll: commits land at every phase.
                cross, cross_lost = status_changes(rt, sse, changes, jitter=0.3)
            log(f"SSE, committed through the server's runtime: {changes} status changes")
            with serve_thread(rt) as base, SseListener(base, SSE_ACCOUNT, key) as sse:
                same, same_lost = status_changes(rt, sse, changes, jitter=0.05)  # the commit wakes the feed
            result |= latency_summary("sse_latency", cross, cross_lost)
            result |= latency_summary("sse_latency_same_process", same, same_lost)
            result["sse_changes"] = changes
            result["sse_poll_interval_s"] = inspect.signature(LiveFeed).parameters["interval"].default

        result |= {
            "targets": TARGETS,
            "meets_targets": {
                "deliveries_per_s": result["deliveries_per_s"] >= TARGETS["deliveries_per_s"],
                "sse_latency_p99_ms": result.get("sse_latency_p99_ms", math.inf)
                <= TARGETS["sse_latency_p99_ms"],
            },
            "http_client": {"aiohttp": version("aiohttp")},
            "database": db.backend,
            "sqlite_synchronous": settings.sqlite_synchronous if db.backend == "sqlite" else None,
            "checkpoint_every_entries": settings.checkpoint_every_entries,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "quick": args.quick,
            "seconds": round(time.perf_counter() - began, 1),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    finally:
        if rt is not None:
            rt.close()
        if receiver is not None:
            receiver.close()
        db.drop()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
