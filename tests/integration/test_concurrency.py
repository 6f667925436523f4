"""Many writers (threads, processes) make one contiguous chain; a crash loses nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import record
from thawline.oplog.entry import decode_entry
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

ROOT = Path(__file__).resolve().parents[2]


def _writer(runtime: Runtime, name: str, count: int, batch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.writer_process",
            runtime.settings.database_url,
            str(runtime.settings.data_dir),
            name,
            str(count),
            str(batch),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _correlations(runtime: Runtime) -> dict[str, int]:
    with UnitOfWork(runtime, read_only=True) as uow:
        rows = uow.oplog.entries(action="test.appended")
        return {decode_entry(data)["correlation_id"]: seq for seq, data, _chain in rows}


def test_threads_appending_at_once_make_one_contiguous_chain(runtime: Runtime) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(40):
                with UnitOfWork(runtime) as uow:
                    uow.record(record(t * 1000 + i, account=f"acc_t{t}"))
                    uow.record(record(t * 1000 + i, account=f"acc_t{t}"))
                    uow.commit()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    report = verify_log(runtime, deep=True)
    assert report.ok, report.problem
    assert report.entries == 6 * 40 * 2


def test_processes_appending_at_once_make_one_contiguous_chain(runtime: Runtime) -> None:
    writers = [_writer(runtime, f"w{p}", 150, 3) for p in range(4)]
    acked: dict[str, int] = {}
    for w in writers:
        out, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
        acked.update({cid: int(seq) for _a, seq, cid in (line.split() for line in out.splitlines())})
    report = verify_log(runtime, deep=True)
    assert report.ok, report.problem
    assert report.entries == 600
    assert sorted(acked.values()) == list(range(600))
    assert _correlations(runtime) == acked


@pytest.mark.slow
def test_sigkill_during_an_append_burst_loses_no_acknowledged_entry(runtime: Runtime) -> None:
    writer = _writer(runtime, "crash", 1_000_000, 7)
    assert writer.stdout is not None
    acked: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(acked) < 1500 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        _ack, seq, cid = line.split()
        acked[cid] = int(seq)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert len(acked) >= 1500, writer.stderr.read() if writer.stderr else ""

    runtime.engine.dispose()  # "restart": fresh connections, recovery of the WAL / PostgreSQL state
    report = verify_log(runtime, deep=True)
    assert report.ok, report.problem
    stored = _correlations(runtime)
    missing = {cid for cid in acked if stored.get(cid) != acked[cid]}
    assert not missing, f"{len(missing)} acknowledged entries lost"
    assert report.entries >= len(acked)
    # The log keeps working after the crash.
    with UnitOfWork(runtime) as uow:
        uow.record(record(0))
        assert uow.commit()[0] == report.entries
