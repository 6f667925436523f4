"""The ``thawline`` command line, run as a real process, on the embedded SQLite default."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import append
from tests.integration.tamper import edit_bundle
from thawline.config import Settings
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, freezes
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THAWLINE_")}
    return env | {"THAWLINE_CHECKPOINT_EVERY_ENTRIES": "100", "THAWLINE_WEBHOOK_ALLOW_PRIVATE_URLS": "true"}


def thawline(tmp_path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``tmp_path`` (its working directory holds the default SQLite file)."""
    proc = subprocess.run(
        [sys.executable, "-m", "thawline", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with a 300-entry log in ./thawline.db (the embedded default)."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'thawline.db'}",
        data_dir=tmp_path / "thawline-data",
        checkpoint_every_entries=100,
    )  # type: ignore[call-arg]
    rt = build_runtime(settings)
    append(rt, 300, batch=100)
    rt.close()
    return tmp_path


def test_first_start_creates_the_database_and_a_private_signing_key(tmp_path: Path) -> None:
    out = thawline(tmp_path, "apikey", "create", "--name", "gw", "--scope", "log:read", "--json").stdout
    assert json.loads(out)["key"].startswith("tlk_ak_")
    assert (tmp_path / "thawline.db").exists()
    key = tmp_path / "thawline-data" / "log-signing-ed25519.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    listed = json.loads(thawline(tmp_path, "apikey", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["gw"]
    assert "key" not in listed[0]


def test_verify_prints_ok_with_counts(workdir: Path) -> None:
    proc = thawline(workdir, "log", "verify")
    assert proc.stdout.startswith("OK: 300 entries, 3 checkpoints")
    doc = json.loads(thawline(workdir, "log", "verify", "--json", "--deep").stdout)
    assert doc["ok"] is True
    assert doc["entries"] == 300


def test_verify_names_the_first_bad_entry_and_exits_non_zero(workdir: Path) -> None:
    rt = build_runtime(
        Settings(database_url=f"sqlite:///{workdir / 'thawline.db'}", data_dir=workdir / "thawline-data")
    )  # type: ignore[call-arg]

    def alter(entries: list[bytes], _c: list[bytes], _a: list[str], i: int) -> None:
        entries[i] = entries[i].replace(b"frozen", b"active")

    edit_bundle(rt.engine, 123, alter)
    rt.close()
    proc = thawline(workdir, "log", "verify", ok=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL at seq 123")
    doc = json.loads(thawline(workdir, "log", "verify", "--json", ok=False).stdout)
    assert doc["problem"]["seq"] == 123


def test_proofs_check_offline_with_only_the_public_key(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    vkey = thawline(workdir, "log", "public-key").stdout.strip()
    auditor = tmp_path_factory.mktemp("auditor")  # no database, no key files here
    thawline(workdir, "log", "prove", "inclusion", "150", "-o", str(auditor / "incl.json"))
    thawline(workdir, "log", "prove", "consistency", "100", "300", "-o", str(auditor / "cons.json"))
    thawline(workdir, "log", "export", "--from", "20", "--to", "220", "-o", str(auditor / "export.jsonl"))
    for name, expected in (
        ("incl.json", "entry 150"),
        ("cons.json", "tree 300"),
        ("export.jsonl", "export of 200"),
    ):
        proc = thawline(auditor, "log", "check", name, "--vkey", vkey)
        assert expected in proc.stdout
    assert not (auditor / "thawline.db").exists()
    bundle = json.loads((auditor / "incl.json").read_text())
    bundle["seq"] = 151
    (auditor / "incl.json").write_text(json.dumps(bundle))
    proc = thawline(auditor, "log", "check", "incl.json", "--vkey", vkey, ok=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL")


def test_legal_holds_are_recorded_and_listed(workdir: Path) -> None:
    hold_id = thawline(
        workdir, "log", "hold", "add", "--reason", "court-order-77", "--account", "acc_1"
    ).stdout.strip()
    holds = json.loads(thawline(workdir, "log", "hold", "list").stdout)
    assert [h["id"] for h in holds] == [hold_id]
    status = json.loads(thawline(workdir, "log", "retention", "--json").stdout)
    assert status["retention_days"] >= 1826
    assert status["active_holds"][0]["reason"] == "court-order-77"
    assert status["held_accounts"] == ["acc_1"]
    whole = thawline(workdir, "log", "hold", "add", "--reason", "regulator-inquiry").stdout.strip()
    held = json.loads(thawline(workdir, "log", "retention", "--json").stdout)
    assert held["past_retention_before"] is None  # a hold on the whole log keeps everything
    thawline(workdir, "log", "hold", "release", whole)
    thawline(workdir, "log", "hold", "release", hold_id)
    assert json.loads(thawline(workdir, "log", "hold", "list").stdout) == []
    shown = thawline(workdir, "log", "show", "--from", "300").stdout.splitlines()
    assert [json.loads(line)["action"] for line in shown] == [
        "legal_hold.placed",
        "legal_hold.placed",
        "legal_hold.released",
        "legal_hold.released",
    ]


def test_serve_answers_health_and_readiness(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "thawline", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert response.json() == {"status": "ready", "database": "sqlite"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_account_commands_show_check_and_release(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'thawline.db'}", data_dir=tmp_path / "thawline-data"
    )  # type: ignore[call-arg]
    rt = build_runtime(settings)
    actor = Actor(ActorKind.REVIEWER, "rv_1")
    with UnitOfWork(rt) as uow:
        accounts.register(uow, accounts.RegisterAccount("acc_9", "赵六", language="en"), actor)
        uow.commit()
    with UnitOfWork(rt) as uow:
        made, _created = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                "acc_9",
                Restriction(FreezeScope.DEBIT),
                ReasonCategory.BEHAVIOR,
                ("PROFILE_24H",),
                SourceKind.REVIEWER,
                "rv_1",
                "terms §4",
                "5 profile changes",
                "Many changes today",
            ),
            actor,
        )
        uow.commit()
    rt.close()
    shown = json.loads(thawline(tmp_path, "account", "show", "acc_9").stdout)
    assert (shown["status"], shown["freezes"][0]["id"]) == ("restricted", made.id)
    denied = thawline(tmp_path, "account", "authorize", "acc_9", "--amount", "12.00", ok=False)
    assert denied.returncode == 3
    assert json.loads(denied.stdout)["holder_reason"] == "Many changes today"
    thawline(tmp_path, "account", "authorize", "acc_9", "--amount", "12.00", "--direction", "credit")
    thawline(tmp_path, "freeze", "release", made.id, "--reason", "holder confirmed the changes")
    thawline(tmp_path, "account", "authorize", "acc_9", "--amount", "12.00")
    lines = thawline(tmp_path, "account", "timeline", "acc_9", "--audience", "holder").stdout.splitlines()
    assert [line.split()[3] for line in lines] == ["account.registered", "account.frozen", "freeze.released"]
    assert "Restriction lifted" in lines[-1]
