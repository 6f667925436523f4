"""Broker mode end to end: one API process, three ``thawline worker`` processes, NATS JetStream and
PostgreSQL. One worker is SIGKILLed in the middle of a burst; every accepted event must still be
evaluated exactly once in effect, in order per account, and the log must verify.

NATS is required, like PostgreSQL: the test fails (never skips) when it is down. ``.ci/run``
starts ``nats-server -js`` when nothing answers on 127.0.0.1:4222.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
from sqlalchemy import create_engine, select, text

from tests.conftest import drop_postgres_schema, fresh_postgres_url
from thawline.adapters.db.schema import event, freeze, risk_decision
from thawline.domain.partitions import partition_of

NATS_URL = os.environ.get("THAWLINE_TEST_NATS_URL", "nats://127.0.0.1:4222")
THAWLINE = str(Path(sys.executable).with_name("thawline"))
PARTITIONS = 16
ACCOUNTS = 48
PER_ACCOUNT = 40  # 1,920 events
BATCH = 96

pytestmark = pytest.mark.slow


def nats_or_fail() -> None:
    """NATS with JetStream must answer; CI starts it (never skip)."""

    async def probe() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        pytest.fail(f"NATS JetStream at {NATS_URL} is required for the broker tests: {exc!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    env: dict[str, str]
    db_url: str
    stream: str
    base: str
    tmp: Path
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [THAWLINE, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )

    def start_worker(self, n: int) -> subprocess.Popen[bytes]:
        err = (self.tmp / f"worker{n}.log").open("wb")
        proc = subprocess.Popen(
            [THAWLINE, "worker", "--interval", "30"], env=self.env, stdout=err, stderr=err
        )
        self.workers.append(proc)
        return proc

    def worker_id(self, n: int) -> str:
        """The id a worker announced in its first JSON log line about the stream."""
        for line in (self.tmp / f"worker{n}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = orjson.loads(line)
                if entry.get("logger") == "thawline.broker" and "consuming" in entry["message"]:
                    return str(entry["message"].split()[1])
        raise AssertionError(f"worker {n} never announced itself")


async def _leases(stream: str) -> dict[int, str]:
    nc = await nats.connect(NATS_URL)
    try:
        try:
            kv = await nc.jetstream().key_value(f"{stream}_leases")
        except nats.js.errors.BucketNotFoundError:
            return {}  # no worker made it yet
        out = {}
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        for k in keys:
            if k.startswith("p."):
                try:
                    with_value = await kv.get(k)
                except nats.js.errors.KeyNotFoundError:
                    continue  # handed back between the listing and the read
                out[int(k[2:])] = (with_value.value or b"").decode()
        return out
    finally:
        await nc.close()


async def _drop_stream(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        for name in (stream, f"KV_{stream}_leases"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def _republish(stream: str, event: dict[str, Any], msg_id: str) -> None:
    """Put a stored event on its partition again under a new message id (past JetStream's dedupe)."""
    nc = await nats.connect(NATS_URL)
    try:
        p = partition_of(event["account_id"], PARTITIONS)
        ack = await nc.jetstream().publish(
            f"{stream}.p.{p}", orjson.dumps(event), headers={"Nats-Msg-Id": msg_id}
        )
        assert not ack.duplicate
    finally:
        await nc.close()


@pytest.fixture
def cluster(tmp_path: Path, postgres_available: None) -> Iterator[Cluster]:
    nats_or_fail()
    db_url, schema = fresh_postgres_url()
    stream = "TLTEST_" + secrets.token_hex(4).upper()
    port = free_port()
    env = {
        **os.environ,
        "THAWLINE_DATABASE_URL": db_url,
        "THAWLINE_DATA_DIR": str(tmp_path / "data"),
        "THAWLINE_BROKER_URL": NATS_URL,
        "THAWLINE_BROKER_STREAM": stream,
        "THAWLINE_BROKER_PARTITIONS": str(PARTITIONS),
        "THAWLINE_BROKER_LEASE_SECONDS": "4",
        "THAWLINE_BROKER_BATCH": "100",
        "THAWLINE_LOG_FORMAT": "json",
        "THAWLINE_CHECKPOINT_EVERY_ENTRIES": "50",
    }
    c = Cluster(env, db_url, stream, f"http://127.0.0.1:{port}", tmp_path)
    try:
        assert c.run("db", "upgrade").returncode == 0
        api_log = (tmp_path / "api.log").open("wb")
        c.api = subprocess.Popen(
            [THAWLINE, "serve", "--port", str(port)], env=env, stdout=api_log, stderr=api_log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(c.base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.3)
        yield c
    finally:
        for proc in [*c.workers, *([c.api] if c.api else [])]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*c.workers, *([c.api] if c.api else [])]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_drop_stream(stream))
        drop_postgres_schema(schema)


def _events() -> list[dict[str, Any]]:
    """Per account, card-testing style debits 15 s apart (the rules freeze some), interleaved."""
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    out = []
    for i in range(PER_ACCOUNT):
        for a in range(ACCOUNTS):
            out.append(
                {
                    "id": f"ev_{a}_{i}",
                    "type": "transaction",
                    "account_id": f"acc_{a}",
                    "occurred_at": (t0 + timedelta(seconds=15 * i + a)).isoformat(),
                    "transaction_id": f"tx_{a}_{i}",
                    "amount": "2.00" if (i + a) % 3 else "180.00",
                    "currency": "CNY",
                    "direction": "debit",
                    "order_ref": f"O-{a}-{i}",
                }
            )
    return out


def assert_exactly_once_in_order(db: Any, accepted: list[str]) -> None:
    """Every accepted event stored and evaluated once, accounts frozen once per rule, in order."""
    with db.connect() as conn:
        ingested = [
            orjson.loads(entry)
            for (data,) in conn.execute(text("SELECT data FROM oplog_bundle ORDER BY first_seq"))
            for entry in bytes(data).split(b"\n")
            if b'"events.ingested"' in entry
        ]

    with db.connect() as conn:
        rows = conn.execute(
            select(event.c.id, event.c.account_id, event.c.occurred_at, event.c.received_at)
        ).all()
        decisions = conn.execute(select(risk_decision.c.event_id, risk_decision.c.rule_id)).all()
        freezes = conn.execute(
            select(freeze.c.account_id, freeze.c.source_ref).where(freeze.c.status == "active")
        ).all()
    # Exactly once in effect: one row per accepted event, one decision set, one evaluation in the log.
    assert sorted(r.id for r in rows) == sorted(accepted)
    assert not [k for k, n in Counter((d.event_id, d.rule_id) for d in decisions).items() if n > 1]
    assert {d.event_id for d in decisions} <= set(accepted)
    assert sum(e["details"]["accepted"] for e in ingested) == len(accepted)
    assert freezes, "the card-testing bursts should freeze accounts"
    assert not [k for k, n in Counter((f.account_id, f.source_ref) for f in freezes).items() if n > 1]
    # Per-account order: evaluated batch by batch in the order sent (within a batch, by event time).
    by_account: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_account[r.account_id].append(r)
    for account_id, mine in by_account.items():
        evaluated = [
            int(r.id.rsplit("_", 1)[1]) for r in sorted(mine, key=lambda r: (r.received_at, r.occurred_at))
        ]
        assert evaluated == sorted(evaluated), f"{account_id} evaluated out of order: {evaluated}"


def start(cluster: Cluster) -> httpx.Client:
    """An admin client, the accounts, and three workers sharing the partitions."""
    key = cluster.run("apikey", "create", "--name", "it", "--scope", "admin", "--json")
    assert key.returncode == 0, key.stderr
    headers = {"Authorization": "Bearer " + orjson.loads(key.stdout)["key"]}
    http = httpx.Client(base_url=cluster.base, headers=headers, timeout=60)
    for a in range(ACCOUNTS):
        made = http.post(
            "/v1/accounts", json={"id": f"acc_{a}", "holder": {"name": f"持卡人{a}"}, "kyc_level": "full"}
        )
        assert made.status_code == 201, made.text
    for n in range(3):
        cluster.start_worker(n)
    deadline = time.monotonic() + 90
    while True:  # wait until the three share the partitions
        leases = asyncio.run(_leases(cluster.stream))
        if len(leases) == PARTITIONS and len(set(leases.values())) == 3:
            break
        assert time.monotonic() < deadline, f"leases never spread: {leases}"
        time.sleep(0.5)
    return http


def wait_until_stored(db: Any, accepted: list[str], seconds: float = 180) -> None:
    """Wait until every accepted event is in the database."""
    deadline = time.monotonic() + seconds
    while True:
        with db.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM event")).scalar_one()
        if stored >= len(accepted):
            return
        assert time.monotonic() < deadline, f"only {stored} of {len(accepted)} events were evaluated"
        time.sleep(0.5)


def burst(
    http: httpx.Client,
    batches: list[list[dict[str, Any]]],
    victim: subprocess.Popen[bytes],
    sig: int,
    at: int,
) -> list[str]:
    """Post the batches (request ids ``burst-<k>``), sending ``sig`` to the victim after batch ``at``;
    the ids accepted, each once, each on its account's partition."""
    accepted: list[str] = []
    for k, batch in enumerate(batches):
        answer = http.post("/v1/events", json={"events": batch}, headers={"X-Request-ID": f"burst-{k}"})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert (body["rejected"], body["duplicates"]) == ([], [])
        accepted += [a["id"] for a in body["accepted"]]
        assert all(a["partition"] == partition_of(a["account_id"], PARTITIONS) for a in body["accepted"])
        if k == at:
            victim.send_signal(sig)  # mid-burst: it holds leases and batches in flight
            if sig == signal.SIGKILL:
                victim.wait(timeout=10)
    assert len(accepted) == sum(map(len, batches)) == len(set(accepted))
    return accepted


def test_a_worker_killed_mid_burst_loses_nothing_and_repeats_nothing(cluster: Cluster) -> None:
    http = start(cluster)
    events = _events()
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    victim_id = cluster.worker_id(0)
    accepted = burst(http, batches, cluster.workers[0], signal.SIGKILL, len(batches) // 2)
    # A replay inside JetStream's window is a duplicate at once.
    again = http.post("/v1/events", json={"events": batches[0][:5]})
    assert (again.status_code, len(again.json()["duplicates"])) == (202, 5)

    db = create_engine(cluster.db_url)
    wait_until_stored(db, accepted)
    # A redelivery beyond JetStream's duplicate window: the engine skips the stored event id.
    asyncio.run(_republish(cluster.stream, events[0], "replay-" + secrets.token_hex(4)))
    deadline = time.monotonic() + 60
    survivors = [cluster.tmp / f"worker{n}.log" for n in (1, 2)]
    while "0 events committed (1 duplicates" not in "".join(p.read_text(errors="replace") for p in survivors):
        assert time.monotonic() < deadline, "the replayed event was never consumed"
        time.sleep(0.5)
    assert_exactly_once_in_order(db, accepted)
    # The dead worker's partitions moved to the survivors.
    leases = asyncio.run(_leases(cluster.stream))
    assert victim_id not in leases.values()
    # The log verifies: chain, Merkle tree, every checkpoint.
    verdict = cluster.run("log", "verify", "--json")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert orjson.loads(verdict.stdout)["ok"] is True
    # The correlation id travelled with the events to the workers' lines.
    worker_logs = "".join((cluster.tmp / f"worker{n}.log").read_text(errors="replace") for n in (1, 2))
    assert '"request_id":"burst-' in worker_logs or '"request_id": "burst-' in worker_logs
    db.dispose()


def test_a_paused_worker_commits_nothing_after_its_partitions_moved(cluster: Cluster) -> None:
    """SIGSTOP a worker mid-burst (a long GC, a frozen VM) until the others took its partitions,
    then SIGCONT it: the fence (partition epochs) makes its stale rounds roll back."""
    http = start(cluster)
    events = _events()
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    victim = cluster.workers[0]
    victim_id = cluster.worker_id(0)
    accepted = burst(http, batches, victim, signal.SIGSTOP, len(batches) // 3)  # paused, maybe in a round
    deadline = time.monotonic() + 120
    while True:  # the survivors take over every partition of the paused worker
        leases = asyncio.run(_leases(cluster.stream))
        if len(leases) == PARTITIONS and victim_id not in leases.values():
            break
        assert time.monotonic() < deadline, f"the paused worker's partitions never moved: {leases}"
        time.sleep(0.5)
    db = create_engine(cluster.db_url)
    wait_until_stored(db, accepted)
    log0 = cluster.tmp / "worker0.log"
    before = len(log0.read_text(errors="replace"))
    victim.send_signal(signal.SIGCONT)  # it wakes up believing it still owns its partitions
    deadline = time.monotonic() + 60
    # What it says depends on where the pause caught it: a lease found lost, a round refused by the
    # fence, or a round whose session PostgreSQL had ended meanwhile (the batch fails, is handed back).
    while not any(
        words in log0.read_text(errors="replace")[before:]
        for words in ("lost the lease", "claimed by another worker", "dropped partition", "handing it back")
    ):
        assert time.monotonic() < deadline, "the resumed worker never noticed it lost its partitions"
        time.sleep(0.5)
    time.sleep(2)  # let whatever it still had in flight try to commit
    assert_exactly_once_in_order(db, accepted)
    with db.connect() as conn:
        epochs = dict(conn.execute(text("SELECT partition, epoch FROM partition_owner")).all())
    assert len(epochs) == PARTITIONS
    assert max(epochs.values()) >= 2  # the paused worker's partitions were claimed again
    verdict = cluster.run("log", "verify", "--json")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    db.dispose()
