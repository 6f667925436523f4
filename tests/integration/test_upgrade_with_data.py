"""An existing database, filled by an older Thawline, upgrades to today's schema and keeps working.

The older Thawline is the real one: its source is taken from this repository's history with
``git archive`` (commit ``OLD``, whose schema was 0009 — before the notifications outbox, the holder
portal and staff users) and its own ``thawline demo`` fills a database on each backend. Today's code
then migrates that database, verifies the log the old code wrote, and runs the way back on the old data:
a new event through the engine (rebuilding state from old stored events), an appeal on an old
freeze, a new freeze on an old account and its release.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests import lifecycle as lc
from tests.conftest import make_settings
from thawline.adapters.db import partitions
from thawline.adapters.db.engine import create_db_engine
from thawline.adapters.db.migrate import current
from thawline.adapters.db.schema import event
from thawline.adapters.db.schema import freeze as freeze_table
from thawline.domain.events import Login
from thawline.domain.freezes import FreezeStatus
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import appeals, engine, freezes
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

pytestmark = pytest.mark.slow
OLD = "3c95308"  # schema 0009
ROOT = Path(__file__).resolve().parents[2]
GATEWAY = Actor(ActorKind.INTEGRATOR, "ak_gateway")
OPERATOR = Actor(ActorKind.REVIEWER, "st_operator")


def _old_source(into: Path) -> Path:
    """The package as it was at ``OLD`` (fails loudly outside a git checkout: the test must run; a
    shallow clone, which has no history to take it from, is the one reported skip)."""
    shallow = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if shallow == "true":
        pytest.skip(f"a shallow clone has no commit {OLD} to build the older database from")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD, "src/thawline"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def test_a_database_filled_by_an_older_thawline_upgrades_and_keeps_working(
    database_url: str, tmp_path: Path
) -> None:
    old_src = _old_source(tmp_path / "old")
    env = {
        **os.environ,
        "THAWLINE_DATABASE_URL": database_url,
        "THAWLINE_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(old_src),
    }
    filled = subprocess.run(
        [
            sys.executable,
            "-c",
            "from thawline.cli import main; main()",
            "demo",
            "--accounts",
            "40",
            "--days",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert filled.returncode == 0, filled.stderr[-2000:]
    old_engine = create_db_engine(database_url)
    try:
        assert current(old_engine) == "0009"  # the old code made this database
        with old_engine.connect() as conn:
            frozen_before = conn.execute(
                select(freeze_table.c.id, freeze_table.c.account_id, freeze_table.c.category).where(
                    freeze_table.c.status == FreezeStatus.ACTIVE.value
                )
            ).all()
            events_before = conn.execute(select(func.count()).select_from(event)).scalar_one()
    finally:
        old_engine.dispose()
    assert frozen_before, "the old demo should have frozen some accounts"

    rt = build_runtime(make_settings(database_url, tmp_path))  # migrates to today's head
    try:
        assert current(rt.engine) != "0009"
        before = verify_log(rt)
        assert before.ok, before.problem
        if rt.engine.dialect.name == "postgresql":  # 0013: every old row sits in its month's partition
            with rt.engine.connect() as conn:
                assert partitions.is_partitioned(conn)
                for table, column in partitions.PARTITIONED.items():
                    placed = conn.execute(
                        text(f"SELECT tableoid::regclass::text, {column} FROM {table}")
                    ).all()
                    assert placed
                    assert all(
                        p == partitions.partition_name(table, partitions.Month.of(at)) for p, at in placed
                    )
                assert conn.execute(text("SELECT count(*) FROM event_key")).scalar_one() == events_before
        freeze_id, account_id, _category = frozen_before[0]
        # The engine rebuilds the account's state from events the old code stored, and decides.
        late = rt.clock.now() + timedelta(minutes=1)
        login = Login(
            id="upgrade-1", account_id=account_id, occurred_at=late, ip="198.51.100.7", device_id="d-new"
        )
        (outcome,) = engine.RiskEngine(rt).ingest([login], GATEWAY).accepted
        assert outcome.outcome in {"allow", "review", "restrict", "freeze"}
        with UnitOfWork(rt) as uow:  # the way back on an old freeze, through today's services
            appeal, _ = appeals.open_appeal(
                uow,
                freeze_id,
                explanation="upgrade check",
                contact_channel="in_site",
                contact_value=None,
                actor=Actor(ActorKind.HOLDER, account_id),
            )
            uow.commit()
        manual = lc.freeze(rt, account_id)  # a new freeze on an old account, and its release
        with UnitOfWork(rt) as uow:
            released = freezes.release(uow, manual, OPERATOR, "released after the upgrade check")
            uow.commit()
        assert released.status is FreezeStatus.RELEASED
        with UnitOfWork(rt, read_only=True) as uow:
            assert appeals.get(uow, appeal.id).status.value == "draft"
            assert uow.conn.execute(select(func.count()).select_from(event)).scalar_one() == events_before + 1
        after = verify_log(rt)
        assert after.ok, after.problem
        assert after.entries > before.entries
    finally:
        rt.close()
