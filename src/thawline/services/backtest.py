"""Backtests: load history (the database or a simulator's files), replay it, compare, and record it.

The replay itself is pure (:mod:`thawline.domain.backtest`); this module reads events into the
shape it takes, finds known outcomes (approved appeals on rule freezes are wrongful freezes,
rejected ones rightful; or the simulator's labels), and records that an analyst ran a what-if —
analysis changes no state, but the log says who compared which candidate with what result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from sqlalchemy import select

from thawline.adapters.db.schema import account, appeal, event, freeze, ruleset
from thawline.domain.appeals import AppealStatus
from thawline.domain.backtest import Outcomes, Sweep, compare, replay, sweep_table
from thawline.domain.errors import InvalidInputError
from thawline.domain.features import IpRanges
from thawline.domain.lists import normalise
from thawline.domain.rules import Ruleset, RulesetError
from thawline.domain.vector_features import EVENT_SCHEMA
from thawline.oplog.entry import Actor, LogRecord, Subject
from thawline.services import lists
from thawline.services.engine import REBUILD_WINDOW, default_ip_ranges, default_ruleset_text
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

Progress = Callable[[str, int, int], None]  # (stage, done, total)
DB_CHUNK = 50_000
_PAYLOAD = pl.Struct({c: t for c, t in EVENT_SCHEMA.items() if c not in ("ts_us", "hour", "amount")} | {
    "occurred_at": pl.String(), "amount": pl.String()
})  # fmt: skip


@dataclass(slots=True)
class History:
    """Events to replay (``in_period`` marks those counted), and what is known about the accounts."""

    events: pl.DataFrame
    outcomes: Outcomes
    kyc: dict[str, str]
    blacklisted: set[str]
    source: str


def parse_ruleset(text: str, *, field: str = "candidate") -> Ruleset:
    """Compile a ruleset; InvalidInputError names ``field`` and the rule at fault."""
    try:
        return Ruleset.from_yaml(text)
    except RulesetError as exc:
        raise InvalidInputError(str(exc), field=field) from None


def _from_strings(df: pl.DataFrame) -> pl.DataFrame:
    """Events whose ``occurred_at`` is RFC 3339 text and ``amount`` decimal text (JSON Lines, payloads)."""
    for column, dtype in EVENT_SCHEMA.items():
        if column not in df.columns and column not in ("ts_us", "hour"):
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return df.with_columns(
        ts_us=pl.col("occurred_at")
        .str.replace(r"Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", time_unit="us")
        .dt.epoch("us"),
        hour=pl.col("occurred_at").str.slice(11, 2).cast(pl.Int8),  # the hour in the sender's zone
        amount=pl.col("amount").cast(pl.Float64),
    ).select(list(EVENT_SCHEMA))


def _from_parquet(path: Path) -> pl.DataFrame:
    """The simulator's Parquet: zoned timestamps (the hour is taken in that zone), decimal amounts."""
    df = pl.read_parquet(path)
    if df.schema.get("occurred_at") == pl.String:
        return _from_strings(df)
    for column, dtype in EVENT_SCHEMA.items():
        if column not in df.columns and column not in ("ts_us", "hour"):
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return df.with_columns(
        ts_us=pl.col("occurred_at").dt.epoch("us"),
        hour=pl.col("occurred_at").dt.hour().cast(pl.Int8),
        amount=pl.col("amount").cast(pl.Float64),
    ).select(list(EVENT_SCHEMA))


def _period(df: pl.DataFrame, since: datetime | None, until: datetime | None) -> pl.DataFrame:
    """Keep the warm-up before ``since`` (the engine's rebuild window) and mark the counted events."""
    lo = int(since.timestamp() * 1_000_000) if since else None
    hi = int(until.timestamp() * 1_000_000) if until else None
    keep = pl.lit(True)
    if lo is not None:
        keep = keep & (pl.col("ts_us") >= lo - int(REBUILD_WINDOW.total_seconds() * 1_000_000))
    if hi is not None:
        keep = keep & (pl.col("ts_us") < hi)
    counted = pl.col("ts_us") >= lo if lo is not None else pl.lit(True)
    return df.filter(keep).with_columns(in_period=counted)


def load_files(path: Path, since: datetime | None = None, until: datetime | None = None) -> History:
    """Events from Parquet or JSON Lines; next to them, a simulator's labels, accounts and blocklist."""
    if not path.is_file():
        raise InvalidInputError(f"no such events file: {path}", field="events")
    try:
        if path.suffix == ".parquet":
            df = _from_parquet(path)
        else:
            df = _from_strings(pl.read_ndjson(path, infer_schema_length=None))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidInputError(f"cannot read the events: {exc}", field="events") from None
    folder = path.parent
    return History(
        _period(df, since, until),
        _labels(folder / "labels.jsonl"),
        _kyc(folder / "accounts.jsonl"),
        _blocklisted(folder),
        str(path),
    )


def _labels(path: Path) -> Outcomes:
    if not path.is_file():
        return Outcomes()
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    benign = frozenset(r["account_id"] for r in rows if r["label"] == "benign")
    abusive = frozenset(r["account_id"] for r in rows if r["label"] != "benign")
    return Outcomes(wrongful=benign, rightful=abusive, complete=True, source="simulator labels")


def _kyc(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    rows = (orjson.loads(line) for line in path.read_bytes().splitlines() if line)
    return {r["id"]: r.get("kyc_level", "full") for r in rows}


def _blocklisted(folder: Path) -> set[str]:
    """Accounts whose holder's resident id, phone or bank card is on the world's blocklist."""
    listing, accounts = folder / "blocklist.csv", folder / "accounts.jsonl"
    if not listing.is_file() or not accounts.is_file():
        return set()
    listed = set()
    for row in csv.DictReader(io.StringIO(listing.read_text("utf-8"))):
        try:
            listed.add((row["kind"], normalise(row["kind"], row["value"])))
        except (ValueError, KeyError):
            continue
    out = set()
    for line in accounts.read_bytes().splitlines():
        if not line:
            continue
        acc = orjson.loads(line)
        holder = acc.get("holder", {})
        values = [("resident_id", holder.get("resident_id")), ("phone", holder.get("phone"))]
        values += [("bank_card", c) for c in holder.get("bank_cards", [])]
        for kind, value in values:
            try:
                if value and (kind, normalise(kind, value)) in listed:
                    out.add(acc["id"])
            except ValueError:
                continue
    return out


def load_database(
    runtime: Runtime,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> History:
    """Stored events (identifiers already hashed), account KYC levels, today's blocklist matches and
    the outcomes of appeals against rule freezes."""
    step = progress or (lambda _s, _d, _t: None)
    query = select(event.c.payload).order_by(event.c.occurred_at, event.c.id)
    if since is not None:
        query = query.where(event.c.occurred_at >= since - REBUILD_WINDOW)
    if until is not None:
        query = query.where(event.c.occurred_at < until)
    with UnitOfWork(runtime, read_only=True) as uow:
        chunks: list[pl.DataFrame] = []
        done = 0
        result = uow.conn.execution_options(yield_per=DB_CHUNK).execute(query)
        for part in result.partitions():
            payloads = pl.Series("payload", [r[0] for r in part], dtype=pl.String)
            chunks.append(payloads.str.json_decode(_PAYLOAD).struct.unnest())
            done += len(part)
            step("load", done, 0)
        raw = pl.concat(chunks) if chunks else pl.DataFrame(schema=_PAYLOAD.to_schema())
        df = _from_strings(raw)
        ids = df["account_id"].unique().to_list()
        kyc = {r.id: r.kyc_level for r in uow.conn.execute(select(account.c.id, account.c.kyc_level))}
        index = lists.load_index(uow)
        blacklisted = set()
        if index.size:
            for account_id in ids:
                found = lists.account_matches(uow, account_id, index)
                if any(m.list_type == "block" for m in found) and not any(
                    m.list_type == "allow" for m in found
                ):
                    blacklisted.add(account_id)
        outcomes = appeal_outcomes(uow)
    return History(_period(df, since, until), outcomes, kyc, blacklisted, "database")


def appeal_outcomes(uow: UnitOfWork) -> Outcomes:
    """Accounts with a rule freeze released on an approved appeal (wrongful) or kept on a rejected
    one (rightful; an account with both counts as wrongful)."""
    rows = uow.conn.execute(
        select(appeal.c.account_id, appeal.c.status)
        .join(freeze, freeze.c.id == appeal.c.freeze_id)
        .where(
            freeze.c.source == "rule",
            appeal.c.status.in_([AppealStatus.APPROVED.value, AppealStatus.REJECTED.value]),
        )
    ).all()
    wrongful = frozenset(r.account_id for r in rows if r.status == AppealStatus.APPROVED.value)
    rightful = frozenset(r.account_id for r in rows if r.status == AppealStatus.REJECTED.value) - wrongful
    return Outcomes(wrongful=wrongful, rightful=rightful, complete=False, source="appeal decisions")


def live_ruleset(runtime: Runtime) -> tuple[int | None, Ruleset]:
    """The active ruleset and its version; the shipped default (version None) if none was loaded yet."""
    with UnitOfWork(runtime, read_only=True) as uow:
        row = uow.conn.execute(
            select(ruleset.c.version, ruleset.c.source).where(ruleset.c.active.is_(True))
        ).first()
    if row is None:
        return None, Ruleset.from_yaml(default_ruleset_text())
    return int(row.version), Ruleset.from_yaml(row.source)


def run(
    history: History,
    live: Ruleset,
    candidate: Ruleset,
    *,
    ip_ranges: IpRanges | None = None,
    sweep: Sweep | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``history`` through both rulesets and compare; with ``sweep``, the threshold table."""
    if sweep is not None:
        try:
            candidate.get(sweep.rule_id)
        except KeyError:
            raise InvalidInputError(f"the candidate has no rule '{sweep.rule_id}'", field="sweep") from None
    if history.events.is_empty():
        raise InvalidInputError("no events in the chosen period", field="since")
    step = progress or (lambda _s, _d, _t: None)
    tests = [1]  # conditions to test; known once the replay names them ("rules i/n")

    def advance(stage: str) -> None:
        if stage.startswith("rules "):
            done, tests[0] = (int(x) for x in stage.split()[1].split("/"))
            step("rules", done + 1, tests[0] + 2)
        else:
            step(stage, 1, tests[0] + 2)

    try:
        result = replay(
            history.events,
            live,
            candidate,
            ip_ranges=ip_ranges or default_ip_ranges(),
            kyc=history.kyc,
            blacklisted=history.blacklisted,
            sweep=sweep,
            progress=advance,
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="sweep" if sweep else "candidate") from None
    step("compare", tests[0] + 1, tests[0] + 2)
    report = compare(result, history.outcomes)
    report["source"] = history.source
    if sweep is not None:
        report["sweep"] = sweep_table(result, sweep, history.outcomes)
    return report


def record(runtime: Runtime, actor: Actor, report: dict[str, Any], live_version: int | None) -> None:
    """Log that ``actor`` ran a what-if: which candidate, against which live version, and the counts."""
    candidate = report["candidate"]
    details: dict[str, Any] = {
        "candidate_sha256": candidate["ruleset_sha256"],
        "live_sha256": report["live"]["ruleset_sha256"],
        "live_version": live_version,
        "source": "database" if report["source"] == "database" else "file",
        "events": report["events"],
        "frozen_live": report["live"]["frozen_accounts"],
        "frozen_candidate": candidate["frozen_accounts"],
        "freezes_added": report["freezes_added"]["accounts"],
        "freezes_removed": report["freezes_removed"]["accounts"],
        "changed_rules": [r["rule"] for r in report["rules"] if r["changed"]],
        # The log refuses floats: rates as decimal text.
        "wrongful_rate_live": _text(report["live"]["wrongful_freeze_rate"]),
        "wrongful_rate_candidate": _text(candidate["wrongful_freeze_rate"]),
    }
    if "sweep" in report:
        details["sweep"] = {
            "rule": report["sweep"]["rule"],
            "param": report["sweep"]["param"],
            "target": _text(report["sweep"]["target_wrongful"]),
            "recommended": _text(report["sweep"]["recommended"]),
        }
    with UnitOfWork(runtime) as uow:
        uow.record(
            LogRecord(
                action="rules.backtested",
                actor=actor,
                subject=Subject(ref=f"ruleset-candidate:{candidate['ruleset_sha256'][:16]}"),
                details=details,
            )
        )
        uow.commit()


def _text(value: float | None) -> str | None:
    return None if value is None else repr(value)
