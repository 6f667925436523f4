"""Contention on the operation log's append lock with several writer processes (issue #8 item 3).

    python bench/logcontention.py [--quick] [--database-url URL] [--seconds T] [--writers 1,2,4,8]
                                  [--workloads log1,freeze,batch3,engine] [--engine-batch 50]

Prints one JSON object (progress goes to stderr). For each workload and each number K of writer
processes, K processes (forked, each with its own runtime and connection pool, like K workers or API
processes) run units of work through the real services for T seconds (``--seconds``; 10, ``--quick``:
2), all appending to one log. The workloads:

- ``log1``: one log entry and nothing else: the log's own cost, the most lock-bound case.
- ``freeze``: the freeze command (``freezes.freeze_account``, a rule freeze with evidence) and, in the
  next unit of work, its release (``freezes.release``): one entry each, plus what the outbox writes
  (the holder's in-site message and a webhook for the integrator's subscription).
- ``batch3``: three entries per commit: two freezes (then two releases) and an ``events.ingested``
  summary, like an engine batch that froze two accounts.
- ``engine``: the real risk engine (``RiskEngine.ingest``) on ``--engine-batch`` events of the writer's
  own accounts (transactions and logins): stores events, features, rules, decisions, freezes, then the
  log entries — the realistic case, with the transaction's other work done before the append.

Per run: ``commits_per_s`` and ``entries_per_s`` (all writers), the lock wait and hold p50/p99 in ms
(from the ``lock_wait``/``lock_held`` each unit of work measures for the
``thawline_oplog_lock_*_seconds`` histograms), ``lock_held_share`` (sum of every hold / wall time: the
holds are mutually exclusive, so near 1.0 means the lock is the bottleneck; timing from the client
side makes it slightly overlap, so it can pass 1.0 a little), the mean hold split into
``hold_append_ms`` (lock granted → append returned: numbering, hashing, bundle and node inserts, head
update, a due checkpoint), ``hold_outbox_ms`` (the outbox's share under the lock: checking what the
messages were routed by, numbering and inserting them) and ``hold_rest_ms`` (the rest: on PostgreSQL
the COMMIT with its WAL flush; on SQLite, whose lock is taken at BEGIN, also the work done before the
append), and the CPU: ``cpu_busy_share`` (of all the machine's CPUs, every process counted, from
/proc/stat), ``writers_cpu_s``, ``postgres_cpu_s`` (the backends serving the writers, by application
name), ``other_cpu_s`` (everything else the machine ran meanwhile: other work on a shared machine),
and the load average. ``cpu_ms_per_commit`` is the writers' and their backends' CPU per commit, and
``lock_saturates_at_cores`` that divided by the mean hold: how many cores busy with this work it takes
before the lock, not the CPU, is what limits the rate (read it at one writer, where holds are not
stretched by waiting for a core). The machine may be shared: read the figures with the load.

A fresh PostgreSQL schema (default: the test database) or SQLite file is created and removed; the log
is verified at the end (``log_verified``) and its size checked against the entries every writer
committed (``chain_complete``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

import _scratch as scratch  # bench/_scratch.py, beside this script
from thawline.config import Settings
from thawline.domain.events import Login, Transaction
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, EvidenceRef, LogRecord, Subject
from thawline.services import accounts, engine, freezes, outbox, webhooks
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

POSTGRES_URL = os.environ.get("THAWLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")
WORKLOADS = ("log1", "freeze", "batch3", "engine")
ACCOUNTS_PER_WRITER = 24
RULE = Actor(ActorKind.RULE, "velocity")
GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")
OPERATOR = Actor(ActorKind.REVIEWER, "rv_bench")


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:13]) / TICK


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs of the machine."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def quantile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(int(q * len(ordered)), len(ordered) - 1)], 3)


def account_id(writer: int, i: int) -> str:
    return f"acc_w{writer}_{i}"


def freeze_command(account: str, n: int) -> freezes.FreezeAccount:
    """A rule freeze as the engine makes one: rule and version, evidence, feature values."""
    return freezes.FreezeAccount(
        account,
        Restriction(FreezeScope.FULL),
        ReasonCategory.HIGH_FREQUENCY,
        ("HF_10MIN",),
        SourceKind.RULE,
        "velocity",
        "terms §4",
        "more than 10 payments in 10 minutes",
        "unusual payment activity",
        evidence=(EvidenceRef("event", f"ev_{n}"), EvidenceRef("transaction", f"tx_{n}")),
        rule_version=1,
        details={"features": {"txn_count_10m": 11, "event_type": "transaction"}},
    )


def summary_record(n: int, frozen: int) -> LogRecord:
    """An ``events.ingested``-like entry: counts and a digest of the batch."""
    return LogRecord(
        action="events.ingested",
        actor=GATEWAY,
        subject=Subject(ref=f"batch:b{n}"),
        details={
            "accepted": 50,
            "duplicates": 0,
            "rejected": 0,
            "outcomes": {"allow": 50 - frozen, "freeze": frozen},
            "ruleset_version": 1,
            "events_sha256": secrets.token_hex(32),
        },
    )


class Workload:
    """One writer's loop body: ``step()`` runs one unit of work (through the real services)."""

    def __init__(self, rt: Runtime, name: str, writer: int, engine_batch: int) -> None:
        self.rt = rt
        self.writer = writer
        self.run = secrets.token_hex(3)  # event ids unique across runs
        self.engine_batch = engine_batch
        self.n = 0
        self.open: list[str] = []  # freezes to release next
        self.engine = engine.RiskEngine(rt) if name == "engine" else None
        self.step: Callable[[], None] = getattr(self, "_" + name)

    def _log1(self) -> None:
        self.n += 1
        with UnitOfWork(self.rt) as uow:
            uow.record(
                LogRecord(
                    action="account.noted",
                    actor=OPERATOR,
                    subject=Subject(account_id=account_id(self.writer, self.n % ACCOUNTS_PER_WRITER)),
                    reason_codes=("NOTE",),
                    details={"note_sha256": secrets.token_hex(32)},
                )
            )
            uow.commit()

    def _freezes(self, count: int, *, summary: bool) -> None:
        with UnitOfWork(self.rt) as uow:
            if self.open:
                for freeze_id in self.open:
                    freezes.release(uow, freeze_id, OPERATOR, "cleared after review")
                self.open = []
            else:
                for _ in range(count):
                    self.n += 1
                    account = account_id(self.writer, self.n % ACCOUNTS_PER_WRITER)
                    made, _created = freezes.freeze_account(uow, freeze_command(account, self.n), RULE)
                    self.open.append(made.id)
            if summary:
                uow.record(summary_record(self.n, count))
            uow.commit()

    def _freeze(self) -> None:
        self._freezes(1, summary=False)

    def _batch3(self) -> None:
        self._freezes(2, summary=True)

    def _engine(self) -> None:
        assert self.engine is not None
        now = datetime.now(UTC)
        events: list[Any] = []
        for i in range(self.engine_batch):
            self.n += 1
            n = self.n
            account = account_id(self.writer, (n * 7) % ACCOUNTS_PER_WRITER)
            at = now - timedelta(milliseconds=self.engine_batch - i)
            if n % 5 == 0:
                events.append(
                    Login(
                        id=f"{self.run}w{self.writer}e{n}",
                        account_id=account,
                        occurred_at=at,
                        ip=f"10.{self.writer}.{n % 4}.{1 + n % 200}",
                        device_id=f"dev_{account}_{n % 2}",
                    )
                )
            else:
                events.append(
                    Transaction(
                        id=f"{self.run}w{self.writer}e{n}",
                        account_id=account,
                        occurred_at=at,
                        transaction_id=f"{self.run}w{self.writer}t{n}",
                        amount=Decimal(f"{20 + (n * 37) % 900}.50"),
                        currency="CNY",
                        direction="debit" if n % 3 else "credit",
                        counterparty=f"m_{n % 300}",
                    )
                )
        self.engine.ingest(events, GATEWAY)


class Timing:
    """Times each commit's append and outbox write by wrapping the real functions (they still run),
    and keeps the unit of work to read its lock figures once it has committed."""

    def __init__(self, rt: Runtime) -> None:
        self.entries = 0
        self.pending: list[list[Any]] = []  # [unit of work, append seconds under the lock, outbox seconds]
        real_append = rt.log.append

        def append(uow: UnitOfWork, records: Any) -> range:
            waited = uow.lock_wait  # SQLite: already waited at BEGIN; PostgreSQL: 0 until lock_head
            started = time.perf_counter()
            appended = real_append(uow, records)
            self.pending.append([uow, time.perf_counter() - started - (uow.lock_wait - waited), 0.0])
            self.entries += len(appended)
            return appended

        def timed(real: Callable[..., int], uow_of: Callable[..., UnitOfWork]) -> Callable[..., int]:
            def call(*args: Any) -> int:
                started = time.perf_counter()
                queued = real(*args)
                if self.pending and self.pending[-1][0] is uow_of(*args):
                    self.pending[-1][2] += time.perf_counter() - started
                return queued

            return call

        rt.log.append = append  # type: ignore[method-assign]
        if hasattr(outbox, "Pending"):  # built before the append, inserted under the lock
            outbox.Pending.write = timed(outbox.Pending.write, lambda pending, *_: pending.uow)  # type: ignore[method-assign]
        else:  # the code before: built and inserted under the lock (to compare)
            outbox.write = timed(outbox.write, lambda uow, *_: uow)

    def take(self) -> list[tuple[float, float, float, float]]:
        """(wait, hold, append, outbox) of every unit of work that appended since the last call."""
        done = [(uow.lock_wait, uow.lock_held, a, o) for uow, a, o in self.pending]
        self.pending = []
        return done


@dataclass(frozen=True)
class Job:
    """One run: a workload, its number of writers and how long they write."""

    settings: Settings
    workload: str
    writers: int
    seconds: float
    engine_batch: int
    app: str | None  # PostgreSQL application name of the writers' connections


def writer_main(job: Job, writer: int, barrier: Barrier, out: Connection) -> None:
    """One writer process: warm up, wait for the others, run units of work for ``seconds``."""
    rt = build_runtime(job.settings)
    try:
        work = Workload(rt, job.workload, writer, job.engine_batch)
        timing = Timing(rt)
        for _ in range(3):
            work.step()
        timing.take()
        entries0 = timing.entries
        barrier.wait()
        samples: list[tuple[float, float, float, float]] = []
        commits = 0
        cpu0 = time.process_time()
        started = time.perf_counter()
        deadline = started + job.seconds
        while time.perf_counter() < deadline:
            work.step()
            samples.extend(timing.take())
            commits += 1
        elapsed = time.perf_counter() - started
        out.send(
            {
                "commits": commits,
                "entries": timing.entries - entries0,
                "elapsed": elapsed,
                "cpu_s": time.process_time() - cpu0,
                "samples": samples,
                "all_entries": timing.entries,
            }
        )
        barrier.wait(timeout=300)  # keep the connections open until the parent has read their CPU
    finally:
        rt.close()
        out.close()


def run(job: Job) -> dict[str, Any]:
    """K writers of one workload; their merged figures."""
    ctx = mp.get_context("fork")
    k, app = job.writers, job.app
    barrier = ctx.Barrier(k + 1)
    pipes = [ctx.Pipe(duplex=False) for _ in range(k)]
    procs = [
        ctx.Process(
            target=writer_main,
            args=(job, w, barrier, pipes[w][1]),
            daemon=True,
        )
        for w in range(k)
    ]
    for p in procs:
        p.start()
    monitor = psycopg.connect(scratch.conninfo(job.settings.database_url), autocommit=True) if app else None
    barrier.wait(timeout=300)
    busy0, total0 = cpu_times()
    pg0 = _backend_cpu(monitor, app) if monitor and app else {}
    results = [pipes[w][0].recv() for w in range(k)]
    busy1, total1 = cpu_times()
    pg1 = _backend_cpu(monitor, app) if monitor and app else {}
    load = os.getloadavg()[0]
    barrier.wait(timeout=300)
    if monitor:
        monitor.close()
    for p in procs:
        p.join(60)
    wall = max(r["elapsed"] for r in results)
    samples = [s for r in results for s in r["samples"]]
    waits = [s[0] for s in samples]
    holds = [s[1] for s in samples]
    commits = sum(r["commits"] for r in results)
    entries = sum(r["entries"] for r in results)
    writers_cpu = sum(r["cpu_s"] for r in results)
    postgres_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    n = max(len(samples), 1)
    mean_hold = sum(holds) / n
    mean_append = sum(s[2] for s in samples) / n
    mean_outbox = sum(s[3] for s in samples) / n
    return {
        "writers": k,
        "commits_per_s": round(commits / wall, 1),
        "entries_per_s": round(entries / wall, 1),
        "entries_per_commit": round(entries / max(commits, 1), 2),
        "lock_wait_p50_ms": quantile_ms(waits, 0.50),
        "lock_wait_p99_ms": quantile_ms(waits, 0.99),
        "lock_hold_p50_ms": quantile_ms(holds, 0.50),
        "lock_hold_p99_ms": quantile_ms(holds, 0.99),
        "lock_held_share": round(sum(holds) / wall, 3),
        "lock_wait_share": round(sum(waits) / (wall * k), 3),
        "hold_mean_ms": round(1000 * mean_hold, 3),
        "hold_append_ms": round(1000 * mean_append, 3),
        "hold_outbox_ms": round(1000 * mean_outbox, 3),
        "hold_rest_ms": round(1000 * (mean_hold - mean_append - mean_outbox), 3),
        "cpu_ms_per_commit": round(1000 * (writers_cpu + postgres_cpu) / max(commits, 1), 3),
        "lock_saturates_at_cores": round(
            (writers_cpu + postgres_cpu) / max(commits, 1) / max(mean_hold, 1e-9), 2
        ),
        "cpu_busy_share": round((busy1 - busy0) / max(total1 - total0, 1), 3),
        "writers_cpu_s": round(writers_cpu, 2),
        "postgres_cpu_s": round(postgres_cpu, 2) if app else None,
        "other_cpu_s": round((busy1 - busy0) / TICK - writers_cpu - postgres_cpu, 2),
        "loadavg": round(load, 2),
        "seconds": round(wall, 2),
        "_all_entries": sum(r["all_entries"] for r in results),
    }


def _backend_cpu(conn: psycopg.Connection[Any], app: str) -> dict[int, float]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return {int(pid): cpu_seconds(int(pid)) for (pid,) in rows}


def setup(rt: Runtime, writers: int) -> None:
    """Every writer's accounts (with a phone and an e-mail) and one webhook subscription."""
    with UnitOfWork(rt) as uow:
        webhooks.create(
            uow,
            "bench",
            url="https://hooks.example.com/thawline",
            event_types=["account.*"],
            description="bench",
            actor=OPERATOR,
        )
        uow.commit()
    for w in range(writers):
        with UnitOfWork(rt) as uow:
            for i in range(ACCOUNTS_PER_WRITER):
                accounts.register(
                    uow,
                    accounts.RegisterAccount(
                        account_id(w, i),
                        f"用户{w}-{i}",
                        phone=f"1380013{w:02d}{i:02d}",
                        email=f"h{w}x{i}@example.com",
                        kyc_level="full",
                        integrator="bench",
                    ),
                    OPERATOR,
                )
            uow.commit()


def main() -> None:
    """Run the benchmark and print one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s per run; finishes in about a minute")
    ap.add_argument("--database-url", default=POSTGRES_URL)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--writers", default="1,2,4,8")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--engine-batch", type=int, default=50)
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    ks = [int(k) for k in args.writers.split(",")]
    names = [w for w in args.workloads.split(",") if w]
    if unknown := set(names) - set(WORKLOADS):
        ap.error(f"unknown workloads: {', '.join(sorted(unknown))}")

    tmp = Path(tempfile.mkdtemp(prefix="thawline-logcontention-"))
    backend = make_url(args.database_url).get_backend_name()
    url, schema = scratch.create(args.database_url, tag_connections=True)
    app = schema  # the writers' backends carry the schema's name
    settings = Settings(database_url=url, data_dir=tmp / "data")  # type: ignore[call-arg]
    rt = build_runtime(settings)
    try:
        setup(rt, max(ks))
        rt.engine.dispose()  # no connection crosses a fork
        settings = settings.model_copy(update={"auto_migrate": False})
        load0 = os.getloadavg()[0]
        runs: dict[str, list[dict[str, Any]]] = {}
        with UnitOfWork(rt, read_only=True) as uow:
            appended = uow.oplog.head().tree_size  # the setup's entries
        for name in names:
            runs[name] = []
            for k in ks:
                say(f"{name}: {k} writer(s) for {seconds:g} s")
                figures = run(Job(settings, name, k, seconds, args.engine_batch, app))
                appended += figures.pop("_all_entries")
                runs[name].append(figures)
        with UnitOfWork(rt, read_only=True) as uow:
            size = uow.oplog.head().tree_size
        report = verify_log(rt)
        result = {
            "backend": backend,
            "seconds_per_run": seconds,
            "engine_batch": args.engine_batch,
            "runs": runs,
            "log_entries": size,
            "log_verified": report.ok,
            "chain_complete": size == appended,
            "loadavg_before": round(load0, 2),
            "loadavg_after": round(os.getloadavg()[0], 2),
            "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}",
        }
        print(json.dumps(result))
    finally:
        rt.close()
        scratch.drop(args.database_url, schema)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
