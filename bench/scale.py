"""Benchmark broker mode (issue #8): two API processes, three workers, NATS JetStream, PostgreSQL.

    python bench/scale.py [--quick] [--seconds 60] [--accounts 400] [--batch 200] [--max-backlog 3000]

Prints one JSON object (progress goes to stderr):

- ``broker_ingest_events_per_s``: events the two ``thawline serve`` processes accepted (JetStream
  acknowledged, ``202``) per second, sustained over ``--seconds`` (60; ``--quick``: 15). The load is
  closed-loop with a bounded queue: the generator pauses while more than ``--max-backlog`` accepted
  events wait for a decision, so the rate is what the whole pipeline sustains, not how fast the
  stream can be filled.
- ``decided_events_per_s``: events committed by the workers (rows in ``event``) in the same window.
- ``decision_latency_p50_ms`` / ``_p99_ms``: from the API publishing an event to the worker's
  commit, from the three workers' ``thawline_decision_latency_seconds`` histograms (scraped from
  ``--metrics-port`` and merged; quantiles by linear interpolation inside a bucket).
- ``api_cpu_s`` / ``worker_cpu_s`` / ``postgres_cpu_s``: where the CPU went, to find the bottleneck
  (``postgres_cpu_s``: the backends serving this benchmark's processes, found by application name;
  ``postgres_cpu_all_s``: every ``postgres`` process on the machine, others' included);
  ``worker_cpu_ms_per_event`` / ``postgres_cpu_ms_per_event``: the same per decided event, which
  depends far less than the rates on what else the machine runs.
- ``log_lock_wait_p50_ms`` / ``_p99_ms``, ``log_lock_hold_p50_ms`` / ``_p99_ms``: how long the
  workers' commits waited for and held the operation log's append lock (the ``oplog_head`` row) during
  the window, from their ``thawline_oplog_lock_*_seconds`` histograms (scraped at both ends of the
  window and subtracted, merged over the workers); ``log_lock_held_share``: the workers' summed hold
  time over the window (near 1.0 would mean the single log is the bottleneck); ``log_lock_commits``.
- ``loadavg_before`` / ``loadavg_after``: the machine's 1-minute load average around the window (the
  machine may be shared: compare runs made under similar load).

Every process is real (``thawline serve``/``thawline worker`` subprocesses); a fresh PostgreSQL
schema and a uniquely named stream are created and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("THAWLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("THAWLINE_BENCH_NATS_URL", "nats://127.0.0.1:4222")
THAWLINE = str(Path(sys.executable).with_name("thawline"))
TICK = os.sysconf("SC_CLK_TCK")


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (and its reaped children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def backend_cpu(conn: psycopg.Connection[Any], application: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving this benchmark's processes (by application
    name): the server is shared, so its other backends are not counted."""
    pids = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
    ).fetchall()
    return {int(pid): cpu_seconds(int(pid)) for (pid,) in pids}


def postgres_cpu() -> float:
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(d.name))
    return total


def conninfo() -> str:
    u = make_url(POSTGRES_URL)
    return f"host={u.host} port={u.port or 5432} dbname={u.database} user={u.username or 'postgres'}"


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (upper bound, count) buckets."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def scrape_latency(ports: list[int]) -> list[tuple[float, float]]:
    return scrape_histogram(ports, "thawline_decision_latency_seconds")[0]


def scrape_histogram(ports: list[int], name: str) -> tuple[list[tuple[float, float]], float]:
    """A histogram merged over the processes: cumulative (upper bound, count) buckets and the sum."""
    merged: dict[float, float] = {}
    total = 0.0
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == name:
                for s in family.samples:
                    if s.name.endswith("_bucket"):
                        le = float(s.labels["le"])
                        merged[le] = merged.get(le, 0.0) + s.value
                    elif s.name.endswith("_sum"):
                        total += s.value
    return sorted(merged.items()), total


LOCK_WAIT = "thawline_oplog_lock_wait_seconds"
LOCK_HOLD = "thawline_oplog_lock_hold_seconds"


def lock_figures(
    before: dict[str, tuple[list[tuple[float, float]], float]],
    after: dict[str, tuple[list[tuple[float, float]], float]],
    seconds: float,
) -> dict[str, Any]:
    """The log lock's wait and hold over a window, from histograms scraped at both of its ends."""

    def delta(name: str) -> tuple[list[tuple[float, float]], float]:
        start = dict(before[name][0])
        buckets = [(le, count - start.get(le, 0.0)) for le, count in after[name][0]]
        return buckets, after[name][1] - before[name][1]

    wait, _wait_sum = delta(LOCK_WAIT)
    hold, hold_sum = delta(LOCK_HOLD)
    if not hold or hold[-1][1] == 0:
        return {"log_lock_commits": 0}
    return {
        "log_lock_wait_p50_ms": round(quantile(wait, 0.50) * 1000, 2),
        "log_lock_wait_p99_ms": round(quantile(wait, 0.99) * 1000, 2),
        "log_lock_hold_p50_ms": round(quantile(hold, 0.50) * 1000, 2),
        "log_lock_hold_p99_ms": round(quantile(hold, 0.99) * 1000, 2),
        "log_lock_held_share": round(hold_sum / seconds, 3),
        "log_lock_commits": int(hold[-1][1]),
    }


def make_batches(accounts: int, batch: int, count: int, seed: int) -> list[bytes]:
    """Pre-rendered request bodies: transactions and logins over the accounts, in time order."""
    rng = random.Random(seed)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    n = 0
    for _ in range(count):
        items = []
        for _ in range(batch):
            a = rng.randrange(accounts)
            at = (t0 + timedelta(seconds=n * 0.05)).isoformat()
            n += 1
            if rng.random() < 0.2:
                items.append(
                    {
                        "id": f"ev{n}",
                        "type": "login",
                        "account_id": f"acc_{a}",
                        "occurred_at": at,
                        "ip": f"10.{a % 200}.{rng.randrange(4)}.{rng.randrange(1, 250)}",
                        "device_id": f"dev_{a}_{rng.randrange(2)}",
                        "success": True,
                    }
                )
            else:
                items.append(
                    {
                        "id": f"ev{n}",
                        "type": "transaction",
                        "account_id": f"acc_{a}",
                        "occurred_at": at,
                        "transaction_id": f"tx{n}",
                        "amount": f"{rng.lognormvariate(5, 1.2):.2f}",
                        "currency": "CNY",
                        "direction": rng.choice(("debit", "debit", "credit")),
                        "counterparty": f"m_{rng.randrange(300)}",
                    }
                )
        out.append(json.dumps({"events": items}).encode())
    return out


async def lease_owners(stream: str) -> dict[str, str]:
    """Partition → owning worker, from the lease bucket."""
    nc = await nats.connect(NATS_URL)
    try:
        kv = await nc.jetstream().key_value(f"{stream}_leases")
        keys = [k for k in await kv.keys() if k.startswith("p.")]
        return {k: ((await kv.get(k)).value or b"").decode() for k in keys}
    except Exception:  # no bucket or no keys yet
        return {}
    finally:
        await nc.close()


class Decided:
    """Rows in ``event``, read every half second by one connection."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.value = 0

    def read(self) -> int:
        self.value = int(self.conn.execute("SELECT count(*) FROM event").fetchone()[0])  # type: ignore[index]
        return self.value


async def load(
    bases: list[str], key: str, bodies: list[bytes], *, seconds: float, max_backlog: int, decided: Decided
) -> tuple[int, float]:
    """Closed loop: 2 senders per API, paused while the decision backlog is over ``max_backlog``."""
    accepted = 0
    stop_at = time.monotonic() + seconds
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def watch() -> None:
        while time.monotonic() < stop_at:
            await asyncio.to_thread(decided.read)
            await asyncio.sleep(0.5)

    async def sender(base: str) -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            while time.monotonic() < stop_at and queue:
                if accepted - decided.value > max_backlog:
                    await asyncio.sleep(0.05)
                    continue
                body = queue.pop()
                answer = await client.post("/v1/events", content=body)
                if answer.status_code != 202:
                    raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
                accepted += len(answer.json()["accepted"])

    started = time.monotonic()
    await asyncio.gather(watch(), *(sender(b) for b in bases for _ in range(2)))
    return accepted, time.monotonic() - started


def main() -> None:  # noqa: PLR0912, PLR0915 - one straight script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--accounts", type=int, default=400)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--max-backlog", type=int, default=3000)
    ap.add_argument("--partitions", type=int, default=16)
    args = ap.parse_args()
    seconds = args.seconds or (15.0 if args.quick else 60.0)

    schema = "bench_" + secrets.token_hex(5)
    with psycopg.connect(conninfo(), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    db_url = (
        make_url(POSTGRES_URL)
        .set(
            drivername="postgresql+psycopg",
            query={"options": f"-csearch_path={schema}", "application_name": schema},
        )
        .render_as_string(hide_password=False)
    )
    stream = "TLBENCH_" + secrets.token_hex(4).upper()
    tmp = Path(tempfile.mkdtemp(prefix="thawline-scale-"))
    env = {
        **os.environ,
        "THAWLINE_DATABASE_URL": db_url,
        "THAWLINE_DATA_DIR": str(tmp / "data"),
        "THAWLINE_BROKER_URL": NATS_URL,
        "THAWLINE_BROKER_STREAM": stream,
        "THAWLINE_BROKER_PARTITIONS": str(args.partitions),
        "THAWLINE_LOG_FORMAT": "json",
    }
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *cmd: str) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("wb")
        p = subprocess.Popen([THAWLINE, *cmd], env=env, stdout=log, stderr=log)
        procs.append(p)
        return p

    try:
        subprocess.run([THAWLINE, "db", "upgrade"], env=env, check=True, capture_output=True)
        made = subprocess.run(
            [THAWLINE, "apikey", "create", "--name", "bench", "--scope", "admin", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(made.stdout)["key"]
        api_ports = [free_port(), free_port()]
        apis = [spawn(f"api{i}", "serve", "--port", str(p)) for i, p in enumerate(api_ports)]
        bases = [f"http://127.0.0.1:{p}" for p in api_ports]
        for base in bases:
            for _ in range(120):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
        say(f"creating {args.accounts} accounts")
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            for a in range(args.accounts):
                body = {"id": f"acc_{a}", "holder": {"name": f"用户{a}"}, "kyc_level": "full"}
                r = http.post(bases[a % 2] + "/v1/accounts", json=body)
                assert r.status_code == 201, r.text
        metric_ports = [free_port() for _ in range(3)]
        workers = [
            spawn(f"worker{i}", "worker", "--interval", "60", "--metrics-port", str(p))
            for i, p in enumerate(metric_ports)
        ]
        say("waiting for the workers to share the partitions")
        for _ in range(120):
            owners = asyncio.run(lease_owners(stream))
            if len(owners) == args.partitions and len(set(owners.values())) == len(workers):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the leases never spread: {owners}")
        decided = Decided(conninfo() + f" options='-csearch_path={schema}'")
        bodies = make_batches(args.accounts, args.batch, int(seconds * 15_000 / args.batch) + 50, seed=8)
        say(f"load for {seconds:g} s through {len(bases)} APIs and {len(workers)} workers")
        load0 = os.getloadavg()[0]
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        pg0 = postgres_cpu()
        ours0 = backend_cpu(decided.conn, schema)
        locks0 = {name: scrape_histogram(metric_ports, name) for name in (LOCK_WAIT, LOCK_HOLD)}
        wall0 = time.monotonic()
        start_count = decided.read()
        accepted, elapsed = asyncio.run(
            load(bases, key, bodies, seconds=seconds, max_backlog=args.max_backlog, decided=decided)
        )
        decided_in_window = decided.read() - start_count
        cpu1 = {p.pid: cpu_seconds(p.pid) for p in procs}
        pg1 = postgres_cpu()
        ours1 = backend_cpu(decided.conn, schema)
        load1 = os.getloadavg()[0]
        wall = time.monotonic() - wall0
        locks = lock_figures(
            locks0, {name: scrape_histogram(metric_ports, name) for name in (LOCK_WAIT, LOCK_HOLD)}, wall
        )
        say("draining the backlog")
        drain0 = time.monotonic()
        while decided.read() - start_count < accepted and time.monotonic() - drain0 < 300:
            time.sleep(0.5)
        drain_s = time.monotonic() - drain0
        latency = scrape_latency(metric_ports)
        worker_cpu = sum(cpu1[p.pid] - cpu0[p.pid] for p in workers)
        # Backends opened during the window count from zero; ones closed during it are missed (the
        # pools keep theirs open).
        pg_ours = sum(cpu - ours0.get(pid, 0.0) for pid, cpu in ours1.items())
        result = {
            "broker_ingest_events_per_s": round(accepted / elapsed),
            "decided_events_per_s": round(decided_in_window / elapsed),
            "decision_latency_p50_ms": round(quantile(latency, 0.50) * 1000, 1),
            "decision_latency_p99_ms": round(quantile(latency, 0.99) * 1000, 1),
            "events_accepted": accepted,
            "seconds": round(elapsed, 1),
            "drain_after_s": round(drain_s, 1),
            "max_backlog": args.max_backlog,
            "batch": args.batch,
            "accounts": args.accounts,
            "partitions": args.partitions,
            "api_cpu_s": round(sum(cpu1[p.pid] - cpu0[p.pid] for p in apis), 1),
            "worker_cpu_s": round(worker_cpu, 1),
            "postgres_cpu_s": round(pg_ours, 1),
            "postgres_cpu_all_s": round(pg1 - pg0, 1),
            "worker_cpu_ms_per_event": round(1000 * worker_cpu / max(decided_in_window, 1), 3),
            "postgres_cpu_ms_per_event": round(1000 * pg_ours / max(decided_in_window, 1), 3),
            **locks,
            "loadavg_before": round(load0, 2),
            "loadavg_after": round(load1, 2),
            "wall_s": round(wall, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}",
        }
        print(json.dumps(result))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

        async def drop() -> None:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            for name in (stream, f"KV_{stream}_leases"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()

        asyncio.run(drop())
        with psycopg.connect(conninfo(), autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
