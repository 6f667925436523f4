"""Prometheus metrics: counters and histograms kept in process, store gauges read at scrape time.

The process-wide metrics (events by outcome, decision latency, HTTP requests, broker partitions,
the operation log's append lock) live in ``REGISTRY``. What belongs to the database — the outbox
backlog, the log's size and the age of its last checkpoint — is read by ``StoreCollector`` when
scraped, so every API process and worker reports the same figures and nothing has to keep them up
to date.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from thawline.adapters.db.schema import notification_outbox, oplog_head
from thawline.services.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=True)

# Latency from 0.5 ms to 30 s: fine enough below 100 ms for a p99 by interpolation.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075, 0.1,
    0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

EVENTS = Counter(
    "thawline_events",
    "Events handled by the engine, by outcome (allow, review, restrict, freeze, duplicate, rejected).",
    ["outcome"],
    registry=REGISTRY,
)
DECISION_LATENCY = Histogram(
    "thawline_decision_latency_seconds",
    "From acceptance by the API to the decision being committed, per event.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "thawline_http_requests",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "thawline_http_request_duration_seconds",
    "HTTP request duration by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BROKER_PUBLISHED = Counter(
    "thawline_broker_published",
    "Events published to JetStream by the API, by result (stored, duplicate).",
    ["result"],
    registry=REGISTRY,
)
PARTITION_PENDING = Gauge(
    "thawline_broker_partition_pending",
    "Messages waiting in a partition this worker owns (queue lag), as of its last fetch.",
    ["partition"],
    registry=REGISTRY,
)
PARTITIONS_OWNED = Gauge(
    "thawline_broker_partitions_owned", "Partitions this worker holds a lease on.", registry=REGISTRY
)

# The log's append lock is held for one commit (a durable fsync): from 0.1 ms up, finer below 10 ms.
LOCK_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LOG_LOCK_WAIT = Histogram(
    "thawline_oplog_lock_wait_seconds",
    "Time a unit of work waited for the operation log's append lock (PostgreSQL: the oplog_head row "
    "lock; SQLite: the write lock of BEGIN IMMEDIATE).",
    buckets=LOCK_BUCKETS,
    registry=REGISTRY,
)
LOG_LOCK_HOLD = Histogram(
    "thawline_oplog_lock_hold_seconds",
    "Time a unit of work held the operation log's append lock, from acquiring it to the end of its "
    "COMMIT (or ROLLBACK); every other appender waits meanwhile.",
    buckets=LOCK_BUCKETS,
    registry=REGISTRY,
)

OUTBOX_STATUSES = ("pending", "dead")


def count_outcomes(outcomes: Iterable[str], duplicates: int = 0, rejected: int = 0) -> None:
    """Count one engine batch's outcomes."""
    tally: dict[str, int] = {}
    for o in outcomes:
        tally[o] = tally.get(o, 0) + 1
    tally["duplicate"] = duplicates
    tally["rejected"] = rejected
    for outcome, n in tally.items():
        if n:
            EVENTS.labels(outcome).inc(n)


class StoreCollector(Collector):
    """Gauges read from the database at scrape time: outbox backlog, log size, checkpoint age."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """One read-only unit of work per scrape."""
        backlog = GaugeMetricFamily(
            "thawline_outbox_backlog", "Outbox messages not delivered, by status.", labels=["status"]
        )
        size = GaugeMetricFamily("thawline_log_entries", "Entries in the operation log (the tree size).")
        age = GaugeMetricFamily(
            "thawline_log_checkpoint_age_seconds",
            "Seconds since the last signed checkpoint (absent before the first).",
        )
        unsigned = GaugeMetricFamily(
            "thawline_log_unsigned_entries", "Entries no signed checkpoint covers yet."
        )
        from thawline.services.unit_of_work import UnitOfWork  # noqa: PLC0415 - it reports to this module

        with UnitOfWork(self.runtime, read_only=True) as uow:
            counts: dict[str, int] = dict(
                uow.conn.execute(
                    select(notification_outbox.c.status, func.count())
                    .where(notification_outbox.c.status.in_(OUTBOX_STATUSES))
                    .group_by(notification_outbox.c.status)
                ).all()
            )
            head = uow.conn.execute(
                select(oplog_head.c.tree_size, oplog_head.c.checkpoint_size, oplog_head.c.checkpoint_at)
            ).first()
        for status in OUTBOX_STATUSES:
            backlog.add_metric([status], float(counts.get(status, 0)))
        yield backlog
        tree_size = head.tree_size if head is not None else 0
        size.add_metric([], float(tree_size))
        yield size
        unsigned.add_metric([], float(tree_size - (head.checkpoint_size if head is not None else 0)))
        yield unsigned
        if head is not None and head.checkpoint_at is not None:
            age.add_metric([], (self.runtime.clock.now() - head.checkpoint_at).total_seconds())
            yield age


def exposition(runtime: Runtime | None = None) -> bytes:
    """The Prometheus text exposition: process metrics, then (with a runtime) the store's gauges."""
    text = generate_latest(REGISTRY)
    if runtime is not None:
        store = CollectorRegistry(auto_describe=False)
        store.register(StoreCollector(runtime))
        text += generate_latest(store)
    return text


def observe_log_lock(wait: float, hold: float) -> None:
    """One unit of work's time waiting for and holding the log's append lock, in seconds."""
    LOG_LOCK_WAIT.observe(wait)
    LOG_LOCK_HOLD.observe(hold)


def observe_batch(result: Any, seconds: float) -> None:
    """A batch the engine decided in-process (direct mode): outcomes, and its time for each event."""
    count_outcomes((o.outcome for o in result.accepted), len(result.duplicates), len(result.rejected))
    if result.accepted:
        for _ in result.accepted:
            DECISION_LATENCY.observe(seconds)


def serve_loopback(port: int) -> None:
    """Expose this process's metrics on 127.0.0.1 (a worker has no HTTP API to put them on)."""
    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
