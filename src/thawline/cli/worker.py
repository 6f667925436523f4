"""``thawline worker``: act on due timers and send queued notifications (the outbox dispatcher).

Every deadline is a stored column, so a worker can be stopped and started at any time, and
several may run at once (with each other and with ``thawline serve``): each due item is
changed and recorded by exactly one of them.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated

import typer

from thawline.cli.common import console, print_json, runtime
from thawline.services import logs, metrics, partitioning, scheduler
from thawline.services.broker_worker import ConsumerThread
from thawline.services.dispatcher import Dispatcher, DispatcherThread


def worker(
    once: Annotated[
        bool, typer.Option(help="Scan once, print what was handled as JSON, and exit. / 只扫描一次。")
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Seconds between scans (default THAWLINE_SCHEDULER_INTERVAL_SECONDS). / 扫描间隔（秒）。",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve Prometheus metrics on 127.0.0.1:PORT (unauthenticated; loopback only). "
            "/ 在本机端口提供监控指标。",
        ),
    ] = None,
) -> None:
    """Run the timers and the outbox dispatcher until Ctrl-C or SIGTERM; with THAWLINE_BROKER_URL
    also consume event partitions from JetStream. / 运行定时任务与通知投递（配置消息代理时消费事件分区）。"""
    with runtime() as rt:
        logs.configure(rt.settings.log_format)
        daily = partitioning.DailyPartitions(rt)  # PostgreSQL: the coming months' partitions, now and daily
        daily.tick()
        if once:
            timers = scheduler.run_due(rt)
            print_json({"timers": timers, "outbox": Dispatcher(rt).run_once().as_json()})
            return
        dispatcher = DispatcherThread(rt)
        dispatcher.start()
        consumer = ConsumerThread(rt) if rt.settings.broker_url else None
        if consumer is not None:
            consumer.start()
        if metrics_port is not None:
            metrics.serve_loopback(metrics_port)
        every = interval or rt.settings.scheduler_interval_seconds
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            console.print(f"{signal.Signals(signum).name}: stopping after the current scan")
            stop.set()
            # A second Ctrl-C interrupts at once; an open transaction is rolled back.
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        console.print(f"worker: timers every {every:g} s, outbox dispatcher running (Ctrl-C to stop)")
        try:
            while not stop.is_set():
                if consumer is not None and not consumer.alive:
                    console.print(f"[red]broker consumer stopped:[/red] {consumer.error!r}")
                    raise typer.Exit(1)
                daily.tick()
                try:
                    counts = scheduler.run_due(rt)
                except Exception as exc:  # a failed scan is retried on the next tick
                    console.print(f"[red]timer scan failed:[/red] {exc!r}")
                else:
                    handled = ", ".join(f"{name}={n}" for name, n in counts.items() if n)
                    if handled:
                        console.print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z handled {handled}")
                stop.wait(every)
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
        finally:
            if consumer is not None:
                consumer.stop()
            dispatcher.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        console.print("worker stopped")
