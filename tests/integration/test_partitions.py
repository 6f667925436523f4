"""Monthly partitions of events and the log on PostgreSQL (migration 0013), and what must not change.

A database holding events and log bundles from several months migrates with every row kept, each in
its month's partition, and its log still verifies; downgrading and upgrading again keeps every row; an
event id stays unique across months and against a concurrent writer; every log partition refuses
UPDATE, DELETE and TRUNCATE; partition maintenance is idempotent and safe to run concurrently; the
rows of the default partition move into monthly partitions and the log still verifies. SQLite keeps
plain tables and gets the same guarantees from them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from typer.testing import CliRunner

from tests import lifecycle as lc
from tests.conftest import drop_postgres_schema, fresh_postgres_url, make_settings
from tests.helpers import append
from thawline.adapters.db import partitions
from thawline.adapters.db.bulk import insert_rows
from thawline.adapters.db.engine import create_db_engine
from thawline.adapters.db.event_store import EVENT_COLUMNS, insert_events
from thawline.adapters.db.migrate import alembic_config, current, upgrade
from thawline.adapters.db.partitions import Month, partition_name
from thawline.adapters.db.schema import event, oplog_bundle, risk_decision
from thawline.cli import app
from thawline.domain.clock import FakeClock
from thawline.domain.errors import ConflictError
from thawline.domain.events import Login
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import engine, partitioning
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.verify import verify_log

GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")
runner = CliRunner()


def _at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL schema (never skipped unless PostgreSQL is opted out)."""
    request.getfixturevalue("postgres_available")
    url, schema = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres_schema(schema)


def _runtime(url: str, tmp_path: Path, clock: FakeClock, **overrides: object) -> Runtime:
    return build_runtime(make_settings(url, tmp_path, checkpoint_every_entries=5, **overrides), clock=clock)


def _login(event_id: str, account_id: str, at: datetime, device: str = "d-1") -> Login:
    return Login(id=event_id, account_id=account_id, occurred_at=at, ip="198.51.100.7", device_id=device)


def _snapshot(eng: Engine) -> dict[str, Any]:
    """Every event, decision and log bundle, byte for byte."""
    with eng.connect() as conn:
        events = sorted(tuple(r) for r in conn.execute(select(event)))
        bundles = [
            (r.first_seq, r.ts, bytes(r.data), bytes(r.chains), r.accounts)
            for r in conn.execute(select(oplog_bundle).order_by(oplog_bundle.c.first_seq))
        ]
        decisions = sorted(
            tuple(r) for r in conn.execute(select(risk_decision.c.id, risk_decision.c.event_id))
        )
    return {"events": events, "bundles": bundles, "decisions": decisions}


def _misplaced(conn: Connection) -> list[tuple[str, str, datetime]]:
    """Rows not in the partition their month names."""
    wrong = []
    for table, column in partitions.PARTITIONED.items():
        rows = conn.execute(text(f"SELECT tableoid::regclass::text, {column} FROM {table}"))
        wrong += [(table, p, at) for p, at in rows if p != partition_name(table, Month.of(at))]
    return wrong


def _rows_by_partition(conn: Connection) -> dict[str, int]:
    return {p.name: p.rows or 0 for p in partitions.list_partitions(conn)}


def _count_id(eng: Engine, event_id: str) -> int:
    with eng.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM event WHERE id = :i"), {"i": event_id}).scalar_one()
        )


def _downgrade(eng: Engine, revision: str) -> None:
    cfg = alembic_config(eng.url.render_as_string(hide_password=False))
    with eng.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        conn.commit()


_DECISION_COLUMNS = ("id", "event_id", "account_id", "rule_id", "ruleset_version", "category")
_DECISION_COLUMNS += ("action", "applied", "values", "created_at")
MONTHS = (_at(2021, 3), _at(2026, 9), _at(2026, 10), _at(2026, 11, 2))


def _fill_at_0012(rt: Runtime, clock: FakeClock) -> list[Login]:
    """Accounts, log bundles and stored events in four months, written to a schema-0012 database (the
    events as the engine of that schema stored them: a row per event, decisions referring to it)."""
    logins = []
    for n, at in enumerate(MONTHS):
        clock.advance(at - clock.now())
        lc.register(rt, f"acc_{n}")
        append(rt, 7, batch=3, account=f"log_{n}")  # log entries alone
        batch = [_login(f"ev-{n}-{i}", f"acc_{n}", at + timedelta(minutes=i)) for i in range(3)]
        rows = [
            (
                e.id,
                e.account_id,
                e.type,
                e.occurred_at,
                at,
                orjson.dumps(e.model_dump(mode="json")).decode(),
                "allow",
            )
            for e in batch
        ]
        with rt.engine.begin() as conn:
            insert_rows(conn, event, EVENT_COLUMNS, rows)
            insert_rows(
                conn,
                risk_decision,
                _DECISION_COLUMNS,
                [
                    (
                        f"rd_{n}",
                        batch[0].id,
                        batch[0].account_id,
                        "r",
                        1,
                        "behavior",
                        "review",
                        "shadow",
                        "{}",
                        at,
                    )
                ],
            )
        logins += batch
    return logins


def test_events_and_log_bundles_of_several_months_migrate_into_their_months(
    database_url: str, tmp_path: Path
) -> None:
    old = create_db_engine(database_url)
    upgrade(old, "0012")
    old.dispose()
    clock = FakeClock(MONTHS[0])
    rt = _runtime(database_url, tmp_path, clock, auto_migrate=False)
    logins = _fill_at_0012(rt, clock)
    before = _snapshot(rt.engine)
    assert len(before["events"]) == 12
    assert {Month.of(b[1]) for b in before["bundles"]} == {Month.of(at) for at in MONTHS}
    assert verify_log(rt).ok
    rt.close()

    rt = _runtime(database_url, tmp_path, clock)  # migrates to 0013
    try:
        assert current(rt.engine) >= "0013"  # 0013 or a later head
        assert _snapshot(rt.engine) == before
        report = verify_log(rt)
        assert report.ok, report.problem
        indexes = {i["name"] for i in inspect(rt.engine).get_indexes("appeal")}
        assert "ix_appeal_status_due" in indexes
        with rt.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                assert partitions.is_partitioned(conn)
                assert _misplaced(conn) == []
                counts = _rows_by_partition(conn)
                assert counts["event_default"] == counts["oplog_bundle_default"] == 0
                for at in MONTHS:
                    assert counts[partition_name("event", Month.of(at))] == 3
                    assert counts[partition_name("oplog_bundle", Month.of(at))] > 0
                keys = conn.execute(text("SELECT id, occurred_at FROM event_key")).all()
                assert sorted((k.id, k.occurred_at) for k in keys) == sorted(
                    (e[0], e[3]) for e in before["events"]
                )
                fk = conn.execute(
                    text(
                        "SELECT confrelid::regclass::text FROM pg_constraint "
                        "WHERE conrelid = 'risk_decision'::regclass AND contype = 'f' "
                        "AND conname LIKE 'fk_risk_decision_event_id%'"
                    )
                ).scalar_one()
                assert fk == "event_key"
            else:
                assert not partitions.is_partitioned(conn)
                assert partitions.list_partitions(conn) == []
        # The migrated events are still the engine's history: a replay is a duplicate, a new one stored.
        result = engine.RiskEngine(rt).ingest([logins[0], _login("ev-new", "acc_0", clock.now())], GATEWAY)
        assert result.duplicates == [logins[0].id]
        assert [o.event_id for o in result.accepted] == ["ev-new"]
        assert verify_log(rt).ok
    finally:
        rt.close()


def test_downgrade_and_upgrade_again_keep_every_row(database_url: str, tmp_path: Path) -> None:
    clock = FakeClock(_at(2026, 1))
    rt = _runtime(database_url, tmp_path, clock)
    try:
        partitioning.maintain(rt)
        lc.register(rt, "acc_1", kyc="full")
        eng = engine.RiskEngine(rt)
        for month in range(3):
            eng.ingest(
                [_login(f"ev-{month}-{i}", "acc_1", clock.now() + timedelta(seconds=i)) for i in range(5)],
                GATEWAY,
            )
            clock.advance(timedelta(days=31))
        before = _snapshot(rt.engine)
        _downgrade(rt.engine, "0012")
        assert current(rt.engine) == "0012"
        assert _snapshot(rt.engine) == before
        with rt.engine.connect() as conn:
            assert not partitions.is_partitioned(conn)
            assert "event_key" not in inspect(conn).get_table_names()
        upgrade(rt.engine)
        assert _snapshot(rt.engine) == before
        with rt.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                assert _misplaced(conn) == []
        assert verify_log(rt).ok
    finally:
        rt.close()


def test_a_replayed_event_id_is_recognised_across_months(runtime: Runtime, clock: FakeClock) -> None:
    lc.register(runtime, "acc_1", kyc="full")
    january = _login("ev-1", "acc_1", clock.now())
    assert [o.event_id for o in engine.RiskEngine(runtime).ingest([january], GATEWAY).accepted] == ["ev-1"]
    clock.advance(timedelta(days=60))  # March: another partition on PostgreSQL
    fresh = engine.RiskEngine(runtime)  # a restarted process: nothing in memory
    replay = fresh.ingest([january], GATEWAY)
    assert replay.duplicates == ["ev-1"]
    assert replay.accepted == []
    moved = fresh.ingest([_login("ev-1", "acc_1", clock.now())], GATEWAY)  # same id, another event
    assert [(i, f) for i, _id, f, _m in moved.rejected] == [(0, "id")]
    assert _count_id(runtime.engine, "ev-1") == 1
    with runtime.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            where = conn.execute(
                text("SELECT tableoid::regclass::text FROM event WHERE id = 'ev-1'")
            ).scalar_one()
            assert where == "event_y2026m01"


def _blocked_by(eng: Engine, pid: int) -> bool:
    with eng.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))"), {"p": pid}
        ).scalar_one()
    return bool(n)


def test_a_concurrent_writer_of_the_same_id_never_makes_a_second_row(
    runtime: Runtime, clock: FakeClock
) -> None:
    """Writer A has stored ev-x in January but not committed; the engine (writer B) gets ev-x for March,
    which on PostgreSQL is another partition, where the event's own primary key would not see it."""
    lc.register(runtime, "acc_1", kyc="full")
    january = _login("ev-x", "acc_1", clock.now())
    march = _login("ev-x", "acc_1", clock.now() + timedelta(days=60))
    payload = orjson.dumps(january.model_dump(mode="json")).decode()
    outcome: dict[str, Any] = {}

    def writer_b() -> None:
        try:
            outcome["result"] = engine.RiskEngine(runtime).ingest([march], GATEWAY)
        except ConflictError as exc:
            outcome["error"] = exc

    postgres = runtime.engine.dialect.name == "postgresql"
    with runtime.engine.connect() as a:
        a.begin()  # on SQLite: BEGIN IMMEDIATE, so B waits at its start
        pid = a.execute(text("SELECT pg_backend_pid()")).scalar_one() if postgres else 0
        insert_events(a, [("ev-x", "acc_1", "login", january.occurred_at, clock.now(), payload, "allow")])
        b = threading.Thread(target=writer_b)
        b.start()
        deadline = time.monotonic() + 30
        if postgres:  # B must really be waiting on A's key before A commits
            while not _blocked_by(runtime.engine, pid):
                assert time.monotonic() < deadline, "writer B never waited for writer A"
                time.sleep(0.02)
        else:
            time.sleep(0.3)
        a.commit()
    b.join(timeout=60)
    assert not b.is_alive()
    if postgres:
        assert isinstance(outcome.get("error"), ConflictError)  # the caller retries: then a refusal
    else:
        assert [f for _i, _id, f, _m in outcome["result"].rejected] == ["id"]
    assert _count_id(runtime.engine, "ev-x") == 1
    retried = engine.RiskEngine(runtime).ingest([march], GATEWAY)
    assert [f for _i, _id, f, _m in retried.rejected] == ["id"]
    assert _count_id(runtime.engine, "ev-x") == 1


def test_no_event_row_without_its_key_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    clock = FakeClock(_at(2026, 1))
    rt = _runtime(postgres_url, tmp_path, clock)
    try:
        lc.register(rt, "acc_1")
        row = ("ev-raw", "acc_1", "login", clock.now(), clock.now(), "{}", "allow")
        with pytest.raises(IntegrityError, match="fk_event_id_event_key"), rt.engine.begin() as conn:
            insert_rows(conn, event, EVENT_COLUMNS, [row])  # a writer that forgot the key
        with rt.engine.begin() as conn:
            insert_events(conn, [row])
        later = ("ev-raw", "acc_1", "login", clock.now() + timedelta(days=90), clock.now(), "{}", "allow")
        with pytest.raises(IntegrityError, match="pk_event_key"), rt.engine.begin() as conn:
            insert_events(conn, [later])
        assert _count_id(rt.engine, "ev-raw") == 1
    finally:
        rt.close()


def _postgres_log_in_three_months(url: str, tmp_path: Path) -> tuple[Runtime, FakeClock]:
    """Log entries and events in May and June 2019 (no partitions: the default one) and January 2026."""
    clock = FakeClock(_at(2019, 5))
    rt = _runtime(url, tmp_path, clock)
    lc.register(rt, "acc_1", kyc="full")
    eng = engine.RiskEngine(rt)
    for n, at in enumerate((_at(2019, 5), _at(2019, 6), _at(2026, 1))):
        clock.advance(at - clock.now())
        if at.year == 2026:
            partitioning.maintain(rt)
        append(rt, 12, batch=4, account="log_only")
        eng.ingest(
            [_login(f"ev-{n}-{i}", "acc_1", at + timedelta(minutes=i), f"d-{i}") for i in range(4)], GATEWAY
        )
    return rt, clock


def test_every_log_partition_refuses_update_delete_and_truncate(postgres_url: str, tmp_path: Path) -> None:
    rt, _clock = _postgres_log_in_three_months(postgres_url, tmp_path)
    try:
        with rt.engine.connect() as conn:
            held = [p.name for p in partitions.list_partitions(conn) if p.table == "oplog_bundle" and p.rows]
        assert held == ["oplog_bundle_y2026m01", "oplog_bundle_default"]
        every = [p.name for p in partitioning.list_partitions(rt) if p.table == "oplog_bundle"]
        for name in [*held, "oplog_bundle"]:
            for statement in (f"UPDATE {name} SET accounts = 'x'", f"DELETE FROM {name}", f"TRUNCATE {name}"):
                with pytest.raises(DBAPIError, match="append-only"), rt.engine.begin() as conn:
                    conn.execute(text(statement))
        with rt.engine.connect() as conn:  # the row trigger reaches empty partitions too, before any row
            cloned = conn.execute(
                text(
                    "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE t.tgname = 'oplog_bundle_append_only' AND t.tgparentid <> 0 "
                    "AND c.relnamespace = current_schema()::regnamespace"
                )
            ).scalars()
            assert set(cloned) == set(every)
        for name in every:  # empty ones too: their triggers are there before any row is
            with pytest.raises(DBAPIError, match="append-only"), rt.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {name}"))
        assert verify_log(rt).ok
    finally:
        rt.close()


def test_ensure_partitions_is_idempotent_concurrent_and_never_fails_on_default_rows(
    postgres_url: str, tmp_path: Path
) -> None:
    rt, clock = _postgres_log_in_three_months(postgres_url, tmp_path)
    try:
        assert partitioning.maintain(rt).created == []  # made when the clock reached January
        with rt.engine.begin() as conn:
            again = partitions.ensure_partitions(
                conn, around=clock.now(), months=[Month(2019, 5), Month(2019, 7)]
            )
        # May 2019's rows sit in the default partition: its month waits for --split-default.
        assert sorted(again.blocked) == ["event_y2019m05", "oplog_bundle_y2019m05"]
        assert sorted(again.created) == ["event_y2019m07", "oplog_bundle_y2019m07"]

        created: list[str] = []
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def make() -> None:
            try:
                start.wait()
                with rt.engine.begin() as conn:
                    created.extend(
                        partitions.ensure_partitions(conn, around=_at(2031, 1), months_ahead=5).created
                    )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=make) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert sorted(created) == sorted(
            partition_name(t, Month(2031, 1).plus(i)) for t in partitions.PARTITIONED for i in range(6)
        )
        with rt.engine.connect() as conn:  # only May and June 2019 wait in the default partitions
            stray = {(t, p, Month.of(at)) for t, p, at in _misplaced(conn)}
        assert stray == {
            (t, partition_name(t, None), m)
            for t in partitions.PARTITIONED
            for m in (Month(2019, 5), Month(2019, 6))
        }
    finally:
        rt.close()


def _cli(url: str, tmp_path: Path, *args: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("THAWLINE_")}
    env |= {"THAWLINE_DATABASE_URL": url, "THAWLINE_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(app, ["db", "partitions", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_split_default_moves_rows_into_their_months_and_the_log_still_verifies(
    postgres_url: str, tmp_path: Path
) -> None:
    rt, _clock = _postgres_log_in_three_months(postgres_url, tmp_path)
    try:
        before = _snapshot(rt.engine)
        with rt.engine.connect() as conn:
            counts = _rows_by_partition(conn)
        assert counts["event_default"] == 8
        assert counts["oplog_bundle_default"] > 0
        listed = orjson.loads(_cli(postgres_url, tmp_path, "--json").stdout)
        assert {"table": "event", "partition": "event_default", "month": None, "rows": 8} in listed

        said = _cli(postgres_url, tmp_path, "--split-default").stderr
        assert "moved 4 rows of 2019-05 into event_y2019m05" in " ".join(said.split())

        assert _snapshot(rt.engine) == before
        report = verify_log(rt)
        assert report.ok, report.problem
        with rt.engine.connect() as conn:
            assert _misplaced(conn) == []
            counts = _rows_by_partition(conn)
        assert counts["event_default"] == counts["oplog_bundle_default"] == 0
        assert counts["event_y2019m05"] == counts["event_y2019m06"] == 4
        moved_bundles = counts["oplog_bundle_y2019m05"] + counts["oplog_bundle_y2019m06"]
        assert moved_bundles == sum(1 for b in before["bundles"] if b[1].year == 2019)
        for statement in (
            "UPDATE oplog_bundle_y2019m05 SET accounts = 'x'",
            "TRUNCATE oplog_bundle_y2019m06",
        ):
            with pytest.raises(DBAPIError, match="append-only"), rt.engine.begin() as conn:
                conn.execute(text(statement))
        # Moved events are still known by id; the default partition takes new strays again.
        eng = engine.RiskEngine(rt)
        assert eng.ingest([_login("ev-0-0", "acc_1", _at(2019, 5), "d-0")], GATEWAY).duplicates == ["ev-0-0"]
        stray = eng.ingest([_login("ev-2030", "acc_1", _at(2030, 6))], GATEWAY)
        assert [o.event_id for o in stray.accepted] == ["ev-2030"]
        with rt.engine.connect() as conn:
            assert _rows_by_partition(conn)["event_default"] == 1
        assert "1 rows sit in the default partitions" in " ".join(_cli(postgres_url, tmp_path).stderr.split())
        assert verify_log(rt).ok
    finally:
        rt.close()


def test_the_partitions_command_on_sqlite_says_it_is_a_postgresql_feature(tmp_path: Path) -> None:
    said = _cli(f"sqlite:///{tmp_path / 'thawline.db'}", tmp_path, "--split-default").stderr
    assert "PostgreSQL feature" in " ".join(said.split())


def test_maintenance_runs_at_start_then_daily_and_retries_a_failure_an_hour_later(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(_at(2027, 6, 30))
    rt = _runtime(postgres_url, tmp_path, clock)
    try:
        now = [0.0]
        daily = partitioning.DailyPartitions(rt, monotonic=lambda: now[0])
        assert daily.tick()
        assert not daily.tick()  # same day
        with rt.engine.connect() as conn:
            names = {p.name for p in partitions.list_partitions(conn, count_rows=False)}
        assert {"event_y2027m06", "event_y2027m09", "oplog_bundle_y2027m09"} <= names
        assert "event_y2027m10" not in names
        clock.advance(timedelta(days=1))  # July: October is now three months ahead
        real = partitioning.maintain
        monkeypatch.setattr(partitioning, "maintain", _failing)
        assert not daily.tick()
        monkeypatch.setattr(partitioning, "maintain", real)
        now[0] += 600
        assert not daily.tick()  # waits an hour after a failure
        now[0] += 3600
        assert daily.tick()
        with rt.engine.connect() as conn:
            names = {p.name for p in partitions.list_partitions(conn, count_rows=False)}
        assert {"event_y2027m10", "oplog_bundle_y2027m10"} <= names
    finally:
        rt.close()


def test_maintenance_gives_up_rather_than_hang_while_a_split_holds_the_lock(
    postgres_url: str, tmp_path: Path
) -> None:
    rt = _runtime(postgres_url, tmp_path, FakeClock(_at(2027, 6)))
    try:
        with rt.engine.connect() as split:
            split.begin()
            partitions.lock(split)  # as `db partitions --split-default` holds it while it copies
            started = time.monotonic()
            assert not partitioning.DailyPartitions(rt).tick()  # serve and worker start anyway
            assert 4 < time.monotonic() - started < 30
            split.rollback()
        assert partitioning.DailyPartitions(rt).tick()
    finally:
        rt.close()


def _failing(_runtime: Runtime) -> partitions.EnsureResult:
    raise RuntimeError("lock timeout")


def test_daily_maintenance_does_nothing_on_sqlite(tmp_path: Path) -> None:
    rt = _runtime(f"sqlite:///{tmp_path / 'thawline.db'}", tmp_path, FakeClock())
    try:
        assert not partitioning.DailyPartitions(rt).tick()
        assert partitioning.maintain(rt).created == []
        assert partitioning.split_default(rt) == {}
    finally:
        rt.close()
