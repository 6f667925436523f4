"""Writing a world to a directory: accounts, events, ground-truth labels, the blocklist, a summary.

Files (all UTF-8, ``\\n`` line ends):

- ``accounts.jsonl``: one ``POST /v1/accounts`` body per line, in account order.
- ``events.jsonl``: one event per line as ``POST /v1/events`` takes them (amounts as decimal strings),
  in arrival order; or ``events.parquet`` (same fields as columns, absent fields null, ``amount`` a
  ``Decimal(18, 2)``, ``occurred_at`` a ``Datetime(ms, Asia/Shanghai)``, ``geo`` a struct).
- ``labels.jsonl``: ``{"account_id", "label", "tags", "abuse_event_ids"}`` per account.
- ``blocklist.csv``: ``kind,value,reason`` (kind is ``resident_id``, ``phone`` or ``bank_card``).
- ``summary.json``: the configuration, counts and the generation speed.

Everything except ``summary.json``'s ``generation`` timings is a function of the configuration:
the same seed gives byte-identical files. Each file is written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from pathlib import Path
from time import perf_counter
from typing import IO, Any, Literal

import orjson
import polars as pl

from thawline.sim.world import World

EventFormat = Literal["jsonl", "parquet"]
ACCOUNTS_FILE = "accounts.jsonl"
LABELS_FILE = "labels.jsonl"
BLOCKLIST_FILE = "blocklist.csv"
SUMMARY_FILE = "summary.json"
PARQUET_PART_ROWS = 100_000
JSONL_SLICE = 1000
_line = partial(orjson.dumps, option=orjson.OPT_APPEND_NEWLINE)

_GEO = pl.Struct({"country": pl.String, "city": pl.String})
RAW_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "type": pl.String(),
    "account_id": pl.String(),
    "occurred_at": pl.String(),
    "ip": pl.String(),
    "device_id": pl.String(),
    "user_agent": pl.String(),
    "success": pl.Boolean(),
    "geo": _GEO,
    "transaction_id": pl.String(),
    "amount": pl.String(),
    "currency": pl.String(),
    "direction": pl.String(),
    "counterparty": pl.String(),
    "channel": pl.String(),
    "order_ref": pl.String(),
    "card_ref": pl.String(),
    "field": pl.String(),
    "value": pl.String(),
    "level": pl.String(),
    "action": pl.String(),
}
ZONE = "Asia/Shanghai"


def events_file(fmt: EventFormat) -> str:
    """``events.jsonl`` or ``events.parquet``."""
    return f"events.{fmt}"


def write_jsonl(f: IO[bytes], records: Iterable[dict[str, Any]]) -> None:
    """Write records as JSON Lines, a slice at a time.

    orjson's results keep a few kilobytes of spare capacity each, so joining a whole day's (or all
    accounts') lines at once would briefly cost several times their size; slices keep that bounded.
    """
    it = iter(records)
    while piece := list(islice(it, JSONL_SLICE)):
        f.write(b"".join(map(_line, piece)))


def events_frame(events: list[dict[str, Any]]) -> pl.DataFrame:
    """Events as a typed frame: decimal amounts, zoned timestamps, absent fields null."""
    raw = pl.DataFrame({c: [e.get(c) for e in events] for c in RAW_SCHEMA}, schema=RAW_SCHEMA)
    return raw.with_columns(
        pl.col("occurred_at")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.3f%:z", time_unit="ms")
        .dt.convert_time_zone(ZONE),
        pl.col("amount").cast(pl.Decimal(18, 2)),
    )


@contextmanager
def _atomic(path: Path, mode: Literal["wb", "w"]) -> Iterator[IO[Any]]:
    """Open ``path``'s temporary sibling for writing; rename it over ``path`` once written."""
    tmp = path.with_name(path.name + ".tmp")
    f: IO[Any] = open(tmp, "wb") if mode == "wb" else open(tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
    with f:
        yield f
    os.replace(tmp, path)


class _ParquetEvents:
    """Events to Parquet in bounded memory: parts of at most PARQUET_PART_ROWS, then one streamed file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts_dir = path.with_name(path.name + ".parts")
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self.parts_dir.mkdir()
        self.pending: list[dict[str, Any]] = []
        self.parts: list[Path] = []

    def add(self, events: list[dict[str, Any]]) -> None:
        self.pending.extend(events)
        if len(self.pending) >= PARQUET_PART_ROWS:
            self._flush()

    def _flush(self) -> None:
        part = self.parts_dir / f"part-{len(self.parts):06d}.parquet"
        events_frame(self.pending).write_parquet(part)
        self.parts.append(part)
        self.pending = []

    def close(self) -> None:
        if self.pending or not self.parts:
            self._flush()
        tmp = self.path.with_name(self.path.name + ".tmp")
        pl.scan_parquet(self.parts).sink_parquet(tmp)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts_dir)


def write_dataset(
    world: World,
    out: Path,
    fmt: EventFormat = "jsonl",
    *,
    on_day: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write every file of ``world`` into ``out`` (created if missing) and return the summary.

    ``on_day(day, events_so_far)`` is called after each simulated day is written (for progress bars).
    """
    out.mkdir(parents=True, exist_ok=True)
    started = perf_counter()
    write_accounts(world, out)
    total = 0
    path = out / events_file(fmt)
    if fmt == "jsonl":
        with _atomic(path, "wb") as f:
            for day, chunk in enumerate(world.stream()):
                write_jsonl(f, chunk)
                total += len(chunk)
                if on_day:
                    on_day(day, total)
    else:
        parquet = _ParquetEvents(path)
        for day, chunk in enumerate(world.stream()):
            parquet.add(chunk)
            total += len(chunk)
            if on_day:
                on_day(day, total)
        parquet.close()
    write_labels(world, out)
    write_blocklist(world, out)
    summary = summarize(world, fmt, total, perf_counter() - started)
    write_summary(summary, out)
    return summary


def write_accounts(world: World, out: Path) -> None:
    """``accounts.jsonl``: the registration payloads."""
    with _atomic(out / ACCOUNTS_FILE, "wb") as f:
        write_jsonl(f, world.registrations())


def write_labels(world: World, out: Path) -> None:
    """``labels.jsonl``: the ground truth (the world's events must have been streamed)."""
    with _atomic(out / LABELS_FILE, "wb") as f:
        write_jsonl(f, world.labels())


def write_blocklist(world: World, out: Path) -> None:
    """``blocklist.csv``: ``kind,value,reason``."""
    with _atomic(out / BLOCKLIST_FILE, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("kind", "value", "reason"))
        writer.writerows((e.kind, e.value, e.reason) for e in world.blocklist)


def write_summary(summary: dict[str, Any], out: Path) -> None:
    """``summary.json``, indented, keys in the order given."""
    with _atomic(out / SUMMARY_FILE, "wb") as f:
        f.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


def summarize(world: World, fmt: EventFormat | None, total: int, seconds: float) -> dict[str, Any]:
    """The summary document: configuration, counts and (under ``generation``) the measured speed."""
    cfg = world.config
    return {
        "seed": cfg.seed,
        "config": {
            "accounts": cfg.accounts,
            "days": cfg.days,
            "start": cfg.start.isoformat(),
            "abuse_rate": cfg.abuse_rate,
            "lookalike_rate": cfg.lookalike_rate,
            "late_fraction": cfg.late_fraction,
            "max_late_seconds": cfg.max_late_seconds,
            "reporting_threshold": cfg.reporting_threshold,
            "currency": cfg.currency,
        },
        "files": {
            "accounts": ACCOUNTS_FILE,
            "events": events_file(fmt) if fmt else None,
            "labels": LABELS_FILE,
            "blocklist": BLOCKLIST_FILE,
        },
        "events": {
            "total": total,
            "by_type": dict(sorted(world.event_counts.items())),
            "late": world.late_events,
            "abusive": sum(len(h.abuse_ids) for h in world.holders),
        },
        "labels": world.label_counts(),
        "lookalike_tags": world.tag_counts(),
        "mule_rings": len(world.rings),
        "blocklist_entries": len(world.blocklist),
        "festival_day": world.festival_date.isoformat(),
        "generation": {
            "seconds": round(seconds, 3),
            "events_per_second": round(total / seconds) if seconds > 0 else None,
        },
    }
