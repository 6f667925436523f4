"""Benchmark the risk engine: in-process evaluation, HTTP ingestion, the gateway check, and accuracy.

    python bench/engine.py [--quick] [--accounts N] [--days D] [--seed S]

Prints one JSON object:

- ``engine_events_per_s``: features + the default ruleset, in process, one core, over a simulated
  world's events (no database); ``engine_cpu_events_per_s`` the same per second of this process's
  CPU time (steadier than the wall clock on a shared machine); ``engine_compiled`` whether the
  compiled feature update (``tools/build_accel.py``) was in use — ``THAWLINE_PURE_PYTHON=1``
  measures the plain module.
- ``ingest_events_per_s``: batches of 10,000 through ``POST /v1/events`` on a real ``thawline serve``
  (uvicorn, loopback, SQLite) with storage, decisions, freezes and the operation log;
  ``ingest_server_cpu_events_per_s`` the same per second of the server's CPU time (Linux).
- ``authorize_p99_ms``: ``POST /v1/authorize`` at 1,000 requests/s over loopback, open loop (latency
  measured from each request's scheduled send time, so queueing counts);
  ``authorize_server_p99_ms_at_most``: the server's own latency histogram for the same requests (the
  smallest bucket bound holding 99% of them: the handler's share, without the client or loopback).
- ``precision``, ``recall``, ``wrongful_freeze_rate_dynamic`` / ``_static``: on the simulated world's
  ground truth, an account counts as frozen when any non-shadow freeze/restrict rule fires on it;
  "static" evaluates the same rules with their fixed-threshold conditions.
"""

from __future__ import annotations

import argparse
import csv
import gc
import http.client
import io
import json
import os
import platform
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter
from sqlalchemy import create_engine, insert

from thawline.adapters.db.schema import account, vault_subject
from thawline.domain.events import Event
from thawline.domain.features import ACCELERATED, AccountState, Thresholds
from thawline.domain.lists import normalise
from thawline.domain.rules import Action, Ruleset
from thawline.services.engine import default_ip_ranges, default_ruleset_text

ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def simulate(out: Path, accounts: int, days: int, seed: int) -> None:
    """Write a simulated world with `thawline simulate` (JSON Lines)."""
    subprocess.run(
        [sys.executable, "-m", "thawline", "simulate", "--seed", str(seed), "--accounts", str(accounts),
         "--days", str(days), "--out", str(out), "--format", "jsonl"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def load_events(path: Path) -> list[Any]:
    """The world's events as validated models, in file order."""
    raw = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return ADAPTER.validate_python(raw)


def blocklisted(world: Path) -> set[str]:
    """Accounts whose holder identifiers are on the world's blocklist (what the list index would find)."""
    listed = set()
    for row in csv.DictReader(io.StringIO((world / "blocklist.csv").read_text("utf-8"))):
        try:
            listed.add((row["kind"], normalise(row["kind"], row["value"])))
        except ValueError:
            continue
    out = set()
    for line in (world / "accounts.jsonl").read_bytes().splitlines():
        if not line:
            continue
        acc = orjson.loads(line)
        holder = acc["holder"]
        values = [
            ("resident_id", holder.get("resident_id")),
            ("phone", holder.get("phone")),
            ("name", holder.get("name")),
        ]
        values += [("bank_card", c) for c in holder.get("bank_cards", [])]
        for kind, value in values:
            if value and (kind, normalise(kind, value)) in listed:
                out.add(acc["id"])
    return out


def engine_rate(
    events: list[Any],
    rules: Ruleset,
    listed: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[float, float, dict[str, set[str]]]:
    """Events per second through features + rules (wall clock, CPU time); and which accounts each
    mode would freeze."""
    ranges, thresholds = default_ip_ranges(), Thresholds()
    states: dict[str, AccountState] = {}
    frozen: dict[str, set[str]] = {"dynamic": set(), "static": set()}
    started, cpu = time.perf_counter(), time.process_time()
    for e in events:
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level="full")
        features = st.observe(e, ranges, thresholds)
        features["blacklisted"] = e.account_id in listed
        for h in rules.evaluate(features):
            if not h.rule.shadow and h.rule.action >= Action.RESTRICT:
                frozen["dynamic"].add(e.account_id)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    states.clear()
    for e in events:  # the same rules on fixed thresholds (not timed)
        st = states.get(e.account_id)
        if st is None:
            st = states[e.account_id] = AccountState(e.account_id, kyc_level="full")
        features = st.observe(e, ranges, thresholds)
        features["blacklisted"] = e.account_id in listed
        for h in rules.evaluate(features, static=True):
            if not h.rule.shadow and h.rule.action >= Action.RESTRICT:
                frozen["static"].add(e.account_id)
    return len(events) / elapsed, len(events) / cpu, frozen


def accuracy(frozen: dict[str, set[str]], labels: dict[str, str]) -> dict[str, float]:
    """Precision and recall of the dynamic rules, and the wrongful-freeze rate of both modes."""
    abusive = {a for a, label in labels.items() if label != "benign"}
    dyn, sta = frozen["dynamic"], frozen["static"]
    return {
        "precision": round(len(dyn & abusive) / len(dyn), 4) if dyn else 0.0,
        "recall": round(len(dyn & abusive) / len(abusive), 4) if abusive else 0.0,
        "wrongful_freeze_rate_dynamic": round(len(dyn - abusive) / len(dyn), 4) if dyn else 0.0,
        "wrongful_freeze_rate_static": round(len(sta - abusive) / len(sta), 4) if sta else 0.0,
        "frozen_dynamic": len(dyn),
        "frozen_static": len(sta),
        "abusive_accounts": len(abusive),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real `thawline serve` on loopback with its own SQLite database."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.env = {
            **os.environ,
            "THAWLINE_DATABASE_URL": f"sqlite:///{tmp / 'engine.db'}",
            "THAWLINE_DATA_DIR": str(tmp / "data"),
            "THAWLINE_CHECKPOINT_EVERY_ENTRIES": "100000",
        }
        self.url = tmp / "engine.db"
        out = subprocess.run(
            [sys.executable, "-m", "thawline", "apikey", "create", "--name", "bench", "--scope", "admin",
             "--json"],
            env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.key = json.loads(out.stdout)["key"]
        self.proc: subprocess.Popen[bytes] | None = None

    def register(self, account_ids: list[str]) -> None:
        """Bulk-load the accounts (setup, not measured)."""
        engine = create_engine(f"sqlite:///{self.url}")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(vault_subject),
                [{"id": f"ds_{a}", "wrapped_key": b"x", "created_at": now} for a in account_ids],
            )
            conn.execute(
                insert(account),
                [
                    {"id": a, "integrator": "bench", "holder_subject_id": f"ds_{a}", "identity_refs": "{}",
                     "identity_digest": b"\0" * 32, "kyc_level": "full", "vip_tier": 0, "language": "zh-CN",
                     "created_at": now}
                    for a in account_ids
                ],
            )  # fmt: skip
        engine.dispose()

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thawline", "serve", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def headers(self) -> dict[str, str]:
        """Authenticated JSON headers."""
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


def _batches(lines: list[bytes], size: int) -> Iterator[bytes]:
    for start in range(0, len(lines), size):
        yield b'{"events":[' + b",".join(lines[start : start + size]) + b"]}"


def _cpu_seconds(pid: int) -> float | None:
    """A process's CPU time (user + system) from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_rate(server: Server, lines: list[bytes]) -> tuple[float, float | None]:
    """Events per second through POST /v1/events in batches of 10,000 (wall clock; server CPU time)."""
    conn = server.connection()
    pid = server.proc.pid if server.proc is not None else 0
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    for body in _batches(lines, 10_000):
        conn.request("POST", "/v1/events", body=body, headers=server.headers())
        answer = conn.getresponse()
        payload = answer.read()
        if answer.status not in (200, 207):
            raise RuntimeError(f"ingest failed: {answer.status} {payload[:300]!r}")
    elapsed = time.perf_counter() - started
    after = _cpu_seconds(pid)
    used = after - cpu if after is not None and cpu is not None else None
    return len(lines) / elapsed, (len(lines) / used if used else None)


def authorize_latencies(server: Server, account_ids: list[str], rate: int, seconds: float) -> list[float]:
    """Open-loop load at ``rate`` requests/s; milliseconds from scheduled send to full response."""
    todo: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
    out: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = server.connection()
        while (item := todo.get()) is not None:
            due, body = item
            conn.request("POST", "/v1/authorize", body=body, headers=server.headers())
            answer = conn.getresponse()
            answer.read()
            done = time.perf_counter()
            with lock:
                out.append((done - due) * 1000)

    workers = [threading.Thread(target=worker) for _ in range(16)]
    # The client's own garbage collector must not stall the load: a full collection of this
    # process's heap (~100 ms) would be measured as server latency. Its garbage here is acyclic.
    gc.collect()
    gc.freeze()
    gc.disable()
    for w in workers:
        w.start()
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        body = orjson.dumps(
            {
                "account_id": account_ids[i % len(account_ids)],
                "direction": "debit",
                "amount": "88.50",
                "currency": "CNY",
            }
        )
        todo.put((due, body))
    for _ in workers:
        todo.put(None)
    for w in workers:
        w.join()
    gc.enable()
    gc.unfreeze()
    return out


def authorize_buckets(server: Server) -> dict[float, float]:
    """The server's own latency histogram for ``POST /v1/authorize`` (``GET /metrics``): cumulative
    request counts by upper bound in seconds."""
    conn = server.connection()
    conn.request("GET", "/metrics", headers=server.headers())
    text = conn.getresponse().read().decode()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("thawline_http_request_duration_seconds_bucket{") and '"/v1/authorize"' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(bound)] = float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """The smallest histogram bound (ms) that holds a ``q`` share of the requests: the server-side
    quantile to the histogram's resolution, without the client's or the loopback's share."""
    total = buckets.get(float("inf"), 0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= q * total:
            return round(bound * 1000, 3)
    return None


def main() -> None:
    """Run everything and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    accounts = args.accounts or (500 if args.quick else 5000)
    days = args.days or (14 if args.quick else 30)
    tmp = Path(tempfile.mkdtemp(prefix="thawline-engine-bench-"))
    world = tmp / "world"
    started = time.perf_counter()
    simulate(world, accounts, days, args.seed)
    simulate_s = time.perf_counter() - started
    lines = [line for line in (world / "events.jsonl").read_bytes().splitlines() if line]
    events = load_events(world / "events.jsonl")
    labels = {
        row["account_id"]: row["label"]
        for row in (orjson.loads(x) for x in (world / "labels.jsonl").read_bytes().splitlines() if x)
    }
    rules = Ruleset.from_yaml(default_ruleset_text())
    rate, cpu_rate, frozen = engine_rate(events, rules, blocklisted(world))
    account_ids, n_events = sorted({e.account_id for e in events}), len(events)
    # The load generator below is this process: free the world's 700k event models first, or a
    # full collection of that heap in the client (~0.5 s) would show up as server latency.
    del events
    gc.collect()
    server = Server(tmp)
    server.register(account_ids)
    with server:
        ingest, ingest_cpu = ingest_rate(server, lines[: 20_000 if args.quick else 100_000])
        served_before = authorize_buckets(server)
        latencies = sorted(
            authorize_latencies(server, sorted(labels), rate=1000, seconds=3 if args.quick else 10)
        )
        served = {le: n - served_before.get(le, 0) for le, n in authorize_buckets(server).items()}
    result = {
        "engine_events_per_s": round(rate, 1),
        "engine_cpu_events_per_s": round(cpu_rate, 1),
        "engine_compiled": ACCELERATED,
        "ingest_events_per_s": round(ingest, 1),
        "ingest_server_cpu_events_per_s": round(ingest_cpu, 1) if ingest_cpu else None,
        "authorize_p50_ms": round(statistics.median(latencies), 3),
        "authorize_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        "authorize_server_p99_ms_at_most": bucket_quantile(served, 0.99),
        "authorize_requests": len(latencies),
        "authorize_rate_per_s": 1000,
        **accuracy(frozen, labels),
        "world": {"accounts": accounts, "days": days, "seed": args.seed, "events": n_events,
                  "simulate_s": round(simulate_s, 1)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "quick": args.quick,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
