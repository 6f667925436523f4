"""SIGKILL the dispatcher in the middle of a burst and restart it: nothing lost, repeats recognisable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.receivers import HttpReceiver, Received, wait_for
from thawline.adapters.db.schema import notification_outbox
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import accounts, freezes, webhooks
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

OPS = Actor(ActorKind.SYSTEM, "ops")
BURST = 300


def _slow(_r: Received) -> int:
    time.sleep(0.01)  # a receiver that takes its time, so the kill lands mid-burst
    return 200


def _fill(rt: Runtime, url: str) -> None:
    with UnitOfWork(rt) as uow:
        for i in range(10):
            accounts.register(uow, accounts.RegisterAccount(f"acc_{i}", "李雷", integrator="ak_gw"), OPS)
        webhooks.create(uow, "ak_gw", url=url, event_types=["account.frozen"], description="", actor=OPS)
        uow.commit()
    for start in range(0, BURST, 50):
        with UnitOfWork(rt) as uow:
            for i in range(start, start + 50):
                cmd = freezes.FreezeAccount(
                    f"acc_{i % 10}",
                    Restriction(FreezeScope.FULL),
                    ReasonCategory.MANUAL,
                    ("BURST",),
                    SourceKind.REVIEWER,
                    "rv_1",
                    "terms",
                    "internal",
                    "holder reason",
                )
                freezes.freeze_account(uow, cmd, OPS)
            uow.commit()


def _worker(database_url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAWLINE_")} | {
        "THAWLINE_DATABASE_URL": database_url,
        "THAWLINE_DATA_DIR": str(data_dir),
        "THAWLINE_DISPATCHER_BATCH": "20",
        "THAWLINE_DISPATCHER_CONCURRENCY": "4",
        "THAWLINE_DISPATCHER_LEASE_SECONDS": "2",
        "THAWLINE_DISPATCHER_INTERVAL_SECONDS": "0.05",
        "THAWLINE_SCHEDULER_INTERVAL_SECONDS": "3600",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "thawline", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _statuses(rt: Runtime) -> Counter[str]:
    with UnitOfWork(rt, read_only=True) as uow:
        return Counter(uow.conn.execute(select(notification_outbox.c.status)).scalars())


@pytest.mark.slow
def test_a_killed_dispatcher_loses_nothing_and_repeats_carry_the_same_id(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path)
    rt = build_runtime(settings)
    with HttpReceiver(status=_slow) as receiver:
        try:
            _fill(rt, receiver.url)
            assert _statuses(rt) == Counter({"pending": BURST})
            first = _worker(database_url, settings.data_dir)
            try:
                wait_for(lambda: len(receiver.received) >= BURST // 3, timeout=60)
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
            assert first.returncode == -signal.SIGKILL
            assert _statuses(rt)["pending"] > 0  # killed mid-burst

            second = _worker(database_url, settings.data_dir)
            try:
                wait_for(lambda: _statuses(rt) == Counter({"delivered": BURST}), timeout=120)
            finally:
                second.send_signal(signal.SIGTERM)
                _out, err = second.communicate(timeout=60)
            assert second.returncode == 0, err.decode()

            with UnitOfWork(rt, read_only=True) as uow:
                ids = set(uow.conn.execute(select(notification_outbox.c.id)).scalars())
                delivered = Counter(
                    decode_entry(d)["subject"]["ref"]
                    for _s, d, _c in uow.oplog.entries(action="notification.delivered")
                )
            seen = Counter(receiver.ids())
            assert set(seen) == ids  # every message arrived at least once
            repeats = {i for i, n in seen.items() if n > 1}
            assert len(repeats) <= 20  # at most the round in flight at the kill, each under its own id
            # Exactly one delivery record per message: the killed round recorded nothing.
            assert delivered == Counter({f"msg:{i}": 1 for i in ids})
            assert verify_log(rt).ok
        finally:
            rt.close()
