"""``thawline simulate``: a deterministic synthetic world with ground-truth labels, written or posted.

Files mode (``--out DIR``) writes accounts, events, labels, the blocklist and a summary (see
:mod:`thawline.sim.output`). Post mode (``--post URL --api-key KEY``) registers the accounts with
``POST /v1/accounts`` and sends the events, in arrival order, to ``POST /v1/events`` in batches of
up to 10,000 (``{"events": [...]}``, answered 200 or 207 with ``accepted`` and ``rejected``); with
``--out`` as well it writes the ground truth (accounts, labels, blocklist, summary) next to it.
Only the standard library's ``urllib`` talks HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from time import perf_counter
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from thawline.cli.common import console, print_json
from thawline.domain.events import MAX_BATCH
from thawline.sim import SimConfig, SimConfigError, World, write_dataset
from thawline.sim.output import summarize, write_accounts, write_blocklist, write_labels, write_summary

RETRIES = 3
TIMEOUT_SECONDS = 60.0


class OutputFormat(StrEnum):
    """How events are written."""

    JSONL = "jsonl"
    PARQUET = "parquet"


class PostError(Exception):
    """The server refused a request (4xx) or stayed unreachable; the message is ready to print."""


@dataclass(slots=True)
class PostStats:
    """What the server said about the posted data."""

    accounts: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_sample: list[Any] = field(default_factory=list)


def _problem_text(status: int, body: bytes) -> str:
    """A one-paragraph rendering of an RFC 9457 problem document (or of whatever came back)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return f"HTTP {status}: {body[:500].decode('utf-8', 'replace')}"
    if not isinstance(doc, dict):
        return f"HTTP {status}: {doc!r}"
    text = f"HTTP {status} {doc.get('title', '')}: {doc.get('detail', '')}".rstrip(": ")
    for err in doc.get("errors") or []:
        if isinstance(err, dict):
            text += f"\n  - {err.get('field', '?')}: {err.get('message', err)}"
    return text


def post_json(url: str, api_key: str, payload: Any) -> tuple[int, Any]:
    """POST ``payload`` as JSON; returns (status, parsed body) for 2xx.

    Connection failures, 429 and 5xx are retried (three times, backing off); any other 4xx raises
    :class:`PostError` with the server's problem detail, as does a server that never recovers.
    """
    body = orjson.dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {api_key}",
        "User-Agent": "thawline-simulate",
    }
    last = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code == 429 or exc.code >= 500:
                last = _problem_text(exc.code, raw)
                continue
            raise PostError(f"POST {url} → {_problem_text(exc.code, raw)}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = str(getattr(exc, "reason", exc))
    raise PostError(f"POST {url} failed after {RETRIES + 1} attempts: {last}")


def _count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    return int(value) if isinstance(value, int) else 0


def post_events(base: str, api_key: str, batch: list[dict[str, Any]], stats: PostStats) -> None:
    """Send one batch to ``/v1/events`` and add the server's verdict to ``stats``."""
    status, doc = post_json(f"{base}/v1/events", api_key, {"events": batch})
    if status not in (200, 207) or not isinstance(doc, dict):
        raise PostError(f"POST {base}/v1/events: unexpected answer {status} {doc!r:.300}")
    stats.accepted += _count(doc.get("accepted"))
    rejected = doc.get("rejected") or []
    stats.rejected += _count(rejected)
    if isinstance(rejected, list) and len(stats.rejected_sample) < 5:
        stats.rejected_sample.extend(rejected[: 5 - len(stats.rejected_sample)])


def post_world(world: World, base: str, api_key: str, batch_size: int, progress: Progress) -> PostStats:
    """Register every account, then stream the events in batches, in arrival order."""
    stats = PostStats()
    task = progress.add_task("accounts / 账户", total=world.config.accounts, events=0)
    for payload in world.registrations():
        post_json(f"{base}/v1/accounts", api_key, payload)
        stats.accounts += 1
        progress.advance(task)
    task = progress.add_task("events / 事件", total=world.config.days, events=0)
    batch: list[dict[str, Any]] = []
    sent = 0
    for chunk in world.stream():
        for event in chunk:
            batch.append(event)
            if len(batch) == batch_size:
                post_events(base, api_key, batch, stats)
                sent += len(batch)
                batch = []
        progress.update(task, advance=1, events=sent)
    if batch:
        post_events(base, api_key, batch, stats)
        sent += len(batch)
    progress.update(task, events=sent)
    return stats


def _write_ground_truth(world: World, out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_accounts(world, out)
    write_labels(world, out)
    write_blocklist(world, out)
    write_summary(summary, out)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def simulate(
    *,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            file_okay=False,
            help="Directory for accounts.jsonl, events.jsonl|parquet, labels.jsonl, blocklist.csv, "
            "summary.json. / 输出目录",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives byte-identical files. / 随机种子")
    ] = 7,
    accounts: Annotated[int, typer.Option(min=1, help="Number of accounts. / 账户数量")] = 1000,
    days: Annotated[int, typer.Option(min=1, max=3660, help="Days to simulate. / 模拟天数")] = 30,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD, UTC+08:00). / 起始日期")] = "2026-11-01",
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="Events file format. / 事件文件格式")
    ] = OutputFormat.JSONL,
    abuse_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of abusive accounts (six scenarios). / 违规账户比例"),
    ] = 0.02,
    lookalike_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of benign look-alikes (travel, payday, 11-11, new phone). / 良性相似比例",
        ),
    ] = 0.04,
    late_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Share of events arriving late. / 迟到事件比例")
    ] = 0.005,
    max_late_seconds: Annotated[
        int, typer.Option(min=30, max=86_400, help="Longest delay of a late event. / 最长迟到秒数")
    ] = 3600,
    threshold: Annotated[
        int, typer.Option(min=2000, help="Reporting threshold structuring stays under. / 申报阈值")
    ] = 50_000,
    post: Annotated[
        str | None,
        typer.Option(
            "--post",
            help="Base URL of a Thawline server: register accounts and post events instead of writing "
            "them. / 提交到服务端",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="THAWLINE_SIM_API_KEY",
            help="API key with accounts:write and events:write (for --post). / API 密钥",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="Events per POST /v1/events. / 每批事件数")
    ] = MAX_BATCH,
) -> None:
    """Generate a deterministic synthetic world with ground-truth labels. / 生成带标签的模拟数据。"""
    if out is None and post is None:
        raise typer.BadParameter("give --out DIR, --post URL, or both / 请指定 --out 或 --post")
    if post is not None and not api_key:
        raise typer.BadParameter("--post needs --api-key / --post 需要 --api-key", param_hint="--api-key")
    try:
        first_day = date.fromisoformat(start)
    except ValueError as exc:
        raise typer.BadParameter(f"not a date: {start!r} / 日期无效", param_hint="--start") from exc
    try:
        config = SimConfig(
            seed=seed,
            accounts=accounts,
            days=days,
            start=first_day,
            abuse_rate=abuse_rate,
            lookalike_rate=lookalike_rate,
            late_fraction=late_fraction,
            max_late_seconds=max_late_seconds,
            reporting_threshold=threshold,
        )
    except SimConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    world = World(config)
    started = perf_counter()
    stats: PostStats | None = None
    with _progress() as progress:
        if post is None:
            assert out is not None
            task = progress.add_task("simulating / 模拟中", total=days, events=0)
            summary = write_dataset(
                world,
                out,
                "parquet" if fmt is OutputFormat.PARQUET else "jsonl",
                on_day=lambda day, total: progress.update(task, completed=day + 1, events=total),
            )
        else:
            base = post.rstrip("/")
            try:
                stats = post_world(world, base, api_key or "", batch_size, progress)
            except PostError as exc:
                console.print(f"[red]error:[/red] {escape(str(exc))}")
                raise typer.Exit(1) from exc
            seconds = perf_counter() - started
            summary = summarize(world, None, sum(world.event_counts.values()), seconds)
            summary["posted"] = {
                "url": base,
                "accounts": stats.accounts,
                "events_accepted": stats.accepted,
                "events_rejected": stats.rejected,
            }
            if out is not None:
                _write_ground_truth(world, out, summary)
    print_json(summary)
    gen = summary["generation"]
    console.print(
        f"{summary['events']['total']:,} events for {accounts:,} accounts in {gen['seconds']} s "
        f"({gen['events_per_second'] or 0:,} events/s)"
    )
    if stats is not None and stats.rejected:
        console.print(f"[red]{stats.rejected:,} events rejected[/red]; first ones:")
        for item in stats.rejected_sample:
            console.print(f"  {json.dumps(item, ensure_ascii=False)[:300]}", markup=False)
        raise typer.Exit(1)
