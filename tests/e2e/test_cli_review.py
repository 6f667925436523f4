"""The review, second-verification and timer commands, driven through the CLI on SQLite.

Accounts, freezes and appeals are set up through the services with a clock set in the recent
past; the CLI runs on the system clock, so deadlines set in that past are due "now".
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.files import pdf
from thawline.adapters.face import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_signature
from thawline.adapters.sms import LocalSmsOutbox
from thawline.cli import app
from thawline.config import Settings
from thawline.domain.appeals import MaterialKind
from thawline.domain.clock import FakeClock
from thawline.domain.freezes import FreezeScope, ReasonCategory, Restriction, SourceKind
from thawline.oplog.entry import Actor, ActorKind, decode_entry
from thawline.services import accounts, appeals, freezes, verification
from thawline.services.runtime import Runtime, build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.services.verify import verify_log

RULE = Actor(ActorKind.RULE, "behavior")
HOLDER = Actor(ActorKind.HOLDER, "holder")
PHONE = "13800138000"
MATERIALS = {
    ReasonCategory.BEHAVIOR: (MaterialKind.EXPLANATION_LETTER,),
    ReasonCategory.AML: (MaterialKind.ID_DOCUMENT, MaterialKind.SOURCE_OF_FUNDS, MaterialKind.BANK_STATEMENT),
}
runner = CliRunner()


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'thawline.db'}", data_dir=tmp_path / "thawline-data")  # type: ignore[call-arg]


def _env(tmp_path: Path) -> dict[str, str | None]:
    """Point the CLI at the test's database and keys, and nothing else from the environment."""
    clear: dict[str, str | None] = {k: None for k in os.environ if k.startswith("THAWLINE_")}
    return clear | {
        "THAWLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'thawline.db'}",
        "THAWLINE_DATA_DIR": str(tmp_path / "thawline-data"),
    }


def cli(tmp_path: Path, *args: str, code: int = 0) -> Result:
    """Run one CLI command in-process and check its exit status (never an unexpected exception)."""
    result = runner.invoke(app, list(args), env=_env(tmp_path))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    return result


def _said(result: Result) -> str:
    """stderr with Rich's line wrapping undone."""
    return " ".join(result.stderr.split())


@pytest.fixture
def past(tmp_path: Path) -> Iterator[tuple[Runtime, FakeClock]]:
    """A runtime on the CLI's database whose clock starts three days ago."""
    clock = FakeClock(datetime.now(UTC) - timedelta(days=3))
    rt = build_runtime(_settings(tmp_path), clock=clock)
    try:
        yield rt, clock
    finally:
        rt.close()


def _register(rt: Runtime, account_id: str) -> None:
    with UnitOfWork(rt) as uow:
        accounts.register(
            uow, accounts.RegisterAccount(account_id, "韩梅梅", phone=PHONE, language="en"), RULE
        )
        uow.commit()


def _freeze(
    rt: Runtime,
    account_id: str,
    category: ReasonCategory = ReasonCategory.BEHAVIOR,
    *,
    expires_at: datetime | None = None,
    review_by: datetime | None = None,
) -> str:
    with UnitOfWork(rt) as uow:
        made, _ = freezes.freeze_account(
            uow,
            freezes.FreezeAccount(
                account_id,
                Restriction(FreezeScope.FULL),
                category,
                ("PROFILE_24H",),
                SourceKind.RULE,
                "behavior",
                "terms §4",
                "5 profile changes in a day",
                "Many changes today",
                rule_version=1,
                expires_at=expires_at,
                review_by=review_by,
            ),
            RULE,
        )
        uow.commit()
    return made.id


def _appeal(rt: Runtime, freeze_id: str, category: ReasonCategory = ReasonCategory.BEHAVIOR) -> str:
    """Open, complete and submit an appeal; returns its id."""
    with UnitOfWork(rt) as uow:
        made, _ = appeals.open_appeal(
            uow,
            freeze_id,
            explanation="I moved house and updated my details.",
            contact_channel="phone",
            contact_value=PHONE,
            actor=HOLDER,
        )
        for i, kind in enumerate(MATERIALS[category]):
            appeals.add_material(
                uow, made.id, kind=kind, data=pdf(f"document {i}"), transaction_ids=(), actor=HOLDER
            )
        appeals.submit(uow, made.id, HOLDER)
        uow.commit()
    return made.id


def _actions(rt: Runtime, account_id: str) -> list[str]:
    """The account's recorded steps, without the delivery records of the messages they caused."""
    with UnitOfWork(rt, read_only=True) as uow:
        actions = [decode_entry(d)["action"] for _s, d, _c in uow.oplog.entries(account_id=account_id)]
    return [a for a in actions if not a.startswith("notification.")]


class _FaceEndpoint:
    """Stands in for the server's ``POST /v1/callbacks/face``: checks the signature, records the result."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.received: list[dict[str, object]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                problem = check_signature(
                    endpoint.rt.face_callback_key,
                    signature=self.headers.get(SIGNATURE_HEADER, ""),
                    timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                    body=body,
                    now=time.time(),
                )
                if self.path != "/v1/callbacks/face" or problem is not None:
                    self._answer(401, {"detail": problem or "wrong path"})
                    return
                doc = json.loads(body)
                endpoint.received.append(doc)
                with UnitOfWork(endpoint.rt) as uow:
                    v = verification.face_result(
                        uow,
                        doc["session_id"],
                        passed=doc["passed"],
                        score=doc["score"],
                        provider_ref=doc["provider_ref"],
                    )
                    uow.commit()
                self._answer(200, {"status": v.status})

            def _answer(self, status: int, doc: dict[str, object]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _FaceEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_claim_decide_verify_and_release_through_the_cli(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, clock = past
    clock.advance(timedelta(days=3) - timedelta(minutes=30))  # half an hour ago
    _register(rt, "acc_1")
    freeze_id = _freeze(rt, "acc_1")
    appeal_id = _appeal(rt, freeze_id)

    (queued,) = json.loads(cli(tmp_path, "review", "queue", "--json").stdout)
    assert (queued["id"], queued["status"], queued["assignee"]) == (appeal_id, "submitted", None)
    assert queued["machine_recommendation"] == "approve"
    assert appeal_id in cli(tmp_path, "review", "queue").stdout  # the table

    # Deciding a case nobody holds is refused, and says why.
    refused = cli(
        tmp_path, "review", "decide", appeal_id, "approve", "--reason", "evidence_sufficient",
        "--as", "reviewer:rv_1", code=1,
    )  # fmt: skip
    assert f"claim appeal {appeal_id} before deciding it" in _said(refused)
    bad_actor = cli(tmp_path, "review", "claim", appeal_id, "--as", "rv_1", code=2)
    assert "reviewer:<id>" in bad_actor.output

    cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_1")
    mine = json.loads(cli(tmp_path, "review", "queue", "--mine", "reviewer:rv_1", "--json").stdout)
    assert [(m["id"], m["status"]) for m in mine] == [(appeal_id, "in_review")]
    assert json.loads(cli(tmp_path, "review", "queue", "--unassigned", "--json").stdout) == []
    taken = cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_2", code=1)
    assert "held by reviewer:rv_1" in _said(taken)
    wrong_code = cli(
        tmp_path, "review", "decide", appeal_id, "approve", "--reason", "voucher_mismatch",
        "--as", "reviewer:rv_1", code=1,
    )  # fmt: skip
    assert "unknown reason codes for 'approve': voucher_mismatch" in _said(wrong_code)

    decided = cli(
        tmp_path, "review", "decide", appeal_id, "approve", "--reason", "evidence_sufficient",
        "--reason", "false_positive", "--note", "moved house; documents match", "--as", "reviewer:rv_1",
    )  # fmt: skip
    assert f"{appeal_id} approved" in _said(decided)
    shown = json.loads(cli(tmp_path, "review", "show", appeal_id).stdout)
    assert shown["appeal"]["status"] == "approved"
    assert shown["four_eyes"] is False
    machine, human = shown["reviews"]
    assert (machine["kind"], machine["decision"]) == ("machine", "approve")
    assert float(machine["confidence"]) > 0.5
    assert {f["check"] for f in machine["findings"]} >= {"completeness", "identity", "fresh_risk"}
    assert (human["reviewer"], human["decision"], human["agrees_with_machine"]) == (
        "reviewer:rv_1",
        "approve",
        True,
    )
    assert human["reason_codes"] == ["evidence_sufficient", "false_positive"]
    assert (shown["human_decisions"], shown["disagreements"]) == (["approve"], [])

    # Second verification: the SMS code first.
    pending = json.loads(cli(tmp_path, "verification", "show", appeal_id).stdout)
    assert (pending["status"], pending["required"], pending["passed"]) == (
        "pending",
        ["sms_code", "face"],
        [],
    )
    early = cli(tmp_path, "verification", "check-code", appeal_id, "123456", code=1)
    assert "no code has been sent" in _said(early)
    cli(tmp_path, "verification", "send-code", appeal_id)
    (sms,) = json.loads(cli(tmp_path, "dev", "sms-outbox", "acc_1", "--json").stdout)
    assert sms["to"] == "+86138****8000"
    assert sms == json.loads(cli(tmp_path, "dev", "sms-outbox", "--json").stdout)[0]
    assert LocalSmsOutbox(rt.settings.sms_outbox_file).messages("acc_1")[0].text == sms["text"]
    match = re.search(r"\b(\d{6})\b", sms["text"])
    assert match is not None
    code = match.group(1)
    again = cli(tmp_path, "verification", "send-code", appeal_id, code=1)
    assert "a code was sent recently" in _said(again)

    wrong = cli(tmp_path, "verification", "check-code", appeal_id, f"{(int(code) + 1) % 10**6:06d}", code=1)
    assert "wrong code: 4 attempt(s) left" in _said(wrong)
    # The failed attempt was committed before the non-zero exit.
    assert json.loads(cli(tmp_path, "verification", "show", appeal_id).stdout)["attempts_left"] == 4
    assert _actions(rt, "acc_1").count("verification.code_rejected") == 1
    accepted = cli(tmp_path, "verification", "check-code", appeal_id, code)
    assert "still to pass: face" in _said(accepted)

    # Then the face match, reported by the provider's signed callback.
    started = json.loads(cli(tmp_path, "verification", "face-start", appeal_id).stdout)
    assert started["session"].startswith("fs_")
    assert started["url"].endswith(started["session"])
    with _FaceEndpoint(rt) as endpoint:
        unreachable = cli(
            tmp_path,
            "dev",
            "face-result",
            started["session"],
            "--pass",
            "--url",
            "http://127.0.0.1:9",
            code=1,
        )
        assert "cannot reach" in _said(unreachable)
        posted = cli(tmp_path, "dev", "face-result", started["session"], "--pass", "--url", endpoint.url)
    assert json.loads(posted.stdout) == {"status": "completed"}
    assert endpoint.received == [
        {"session_id": started["session"], "passed": True, "score": 0.98, "provider_ref": "local"}
    ]

    done = json.loads(cli(tmp_path, "verification", "show", appeal_id).stdout)
    assert (done["status"], done["passed"]) == ("completed", ["face", "sms_code"])
    account = json.loads(cli(tmp_path, "account", "show", "acc_1").stdout)
    assert account["freezes"][0]["status"] == "released"
    cli(tmp_path, "account", "authorize", "acc_1", "--amount", "88.50")
    cli(tmp_path, "account", "authorize", "acc_1", "--amount", "60000", code=3)  # probation
    actions = _actions(rt, "acc_1")
    assert actions[actions.index("appeal.claimed") :] == [
        "appeal.claimed",
        "appeal.approved",
        "verification.started",
        "verification.code_sent",
        "verification.code_rejected",
        "verification.sms_passed",
        "verification.face_started",
        "verification.face_passed",
        "verification.completed",
        "freeze.released",
        "probation.started",
    ]
    assert verify_log(rt).ok


def test_four_eyes_conflicts_assignment_and_unclaiming(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, clock = past
    clock.advance(timedelta(days=3) - timedelta(minutes=30))
    _register(rt, "acc_2")
    freeze_id = _freeze(rt, "acc_2", ReasonCategory.AML)
    appeal_id = _appeal(rt, freeze_id, ReasonCategory.AML)

    declared = cli(tmp_path, "review", "conflict", "reviewer:rv_3", "acc_2", "--note", "cousin")
    assert "reviewer:rv_3 may no longer review acc_2" in _said(declared)
    repeated = cli(tmp_path, "review", "conflict", "reviewer:rv_3", "acc_2", "--note", "cousin")
    assert "already recorded" in _said(repeated)
    linked = cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_3", code=1)
    assert "linked to this account" in _said(linked)
    nobody = cli(tmp_path, "review", "unclaim", appeal_id, "--as", "reviewer:rv_1", code=1)
    assert f"appeal {appeal_id} is not assigned" in _said(nobody)

    cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_1")
    first = cli(
        tmp_path, "review", "decide", appeal_id, "approve", "--reason", "identity_confirmed",
        "--as", "reviewer:rv_1",
    )  # fmt: skip
    assert "a second, different reviewer must approve" in _said(first)
    (queued,) = json.loads(cli(tmp_path, "review", "queue", "--json").stdout)
    assert (queued["status"], queued["high_severity"], queued["first_approver"]) == (
        "second_approval",
        True,
        "reviewer:rv_1",
    )
    twice = cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_1", code=1)
    assert "four eyes" in _said(twice)

    cli(tmp_path, "review", "assign", appeal_id, "reviewer:rv_2")
    not_yours = cli(tmp_path, "review", "unclaim", appeal_id, "--as", "reviewer:rv_1", code=1)
    assert "held by reviewer:rv_2" in _said(not_yours)
    cli(tmp_path, "review", "unclaim", appeal_id, code=2)  # who gives it back?
    cli(tmp_path, "review", "unclaim", appeal_id, "--lead")
    assert json.loads(cli(tmp_path, "review", "queue", "--unassigned", "--json").stdout)[0]["id"] == appeal_id
    bad_assign = cli(tmp_path, "review", "assign", appeal_id, "rv_2", code=1)
    assert "reviewer:<key id>" in _said(bad_assign)
    cli(tmp_path, "review", "assign", appeal_id, "reviewer:rv_2")

    # The freeze cannot be released around the four-eyes review.
    around = cli(tmp_path, "freeze", "rereview", freeze_id, "--release", "--note", "looks fine", code=1)
    assert "four-eyes" in _said(around)
    second = cli(
        tmp_path, "review", "decide", appeal_id, "approve", "--reason", "risk_resolved",
        "--as", "reviewer:rv_2",
    )  # fmt: skip
    assert f"{appeal_id} approved" in _said(second)
    shown = json.loads(cli(tmp_path, "review", "show", appeal_id).stdout)
    assert shown["four_eyes"] is True
    assert [(r["kind"], r["reviewer"]) for r in shown["reviews"]] == [
        ("machine", "system:pre_review"),
        ("human", "reviewer:rv_1"),
        ("human", "reviewer:rv_2"),
    ]
    assert shown["human_decisions"] == ["approve", "approve"]


def test_a_decision_against_the_machine_is_shown_as_a_disagreement(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, clock = past
    clock.advance(timedelta(days=3) - timedelta(minutes=30))
    _register(rt, "acc_3")
    appeal_id = _appeal(rt, _freeze(rt, "acc_3"))
    cli(tmp_path, "review", "claim", appeal_id, "--as", "reviewer:rv_1")
    cli(
        tmp_path, "review", "decide", appeal_id, "reject", "--reason", "risk_confirmed",
        "--note", "same device as a known fraud ring", "--as", "reviewer:rv_1",
    )  # fmt: skip
    shown = json.loads(cli(tmp_path, "review", "show", appeal_id).stdout)
    assert shown["machine_recommendation"] == "approve"
    assert [d["reviewer"] for d in shown["disagreements"]] == ["reviewer:rv_1"]
    assert shown["reviews"][-1]["note"] == "same device as a known fraud ring"
    missing = cli(tmp_path, "verification", "show", appeal_id, code=1)
    assert "has no second verification" in _said(missing)
    unknown = cli(tmp_path, "review", "show", "apl_missing", code=1)
    assert "appeal apl_missing does not exist" in _said(unknown)


def test_worker_once_acts_on_due_timers_and_rereview_and_kyc_commands(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, _clock = past
    now = datetime.now(UTC)
    for account in ("acc_4", "acc_5", "acc_6"):
        _register(rt, account)
    expiring = _freeze(rt, "acc_4", expires_at=now - timedelta(hours=1))
    due = _freeze(rt, "acc_5", review_by=now - timedelta(hours=1))
    kyc = _freeze(rt, "acc_6", ReasonCategory.KYC_INCOMPLETE)

    counts = json.loads(cli(tmp_path, "worker", "--once").stdout)["timers"]
    assert counts == {
        "sla_breached": 0,
        "sla_warnings": 0,
        "appeals_expired": 0,
        "freezes_expired": 1,
        "rereviews_due": 1,
        "probations_ended": 0,
    }
    assert set(json.loads(cli(tmp_path, "worker", "--once").stdout)["timers"].values()) == {0}
    assert _actions(rt, "acc_4")[-1] == "freeze.expired"
    assert _actions(rt, "acc_5")[-1] == "freeze.rereview_due"

    # The re-review: keep it until a new date, then release it.
    later = (now + timedelta(days=30)).replace(microsecond=0)
    cli(tmp_path, "freeze", "rereview", due, "--keep", "--note", "still risky", code=2)  # no date
    naive = cli(
        tmp_path,
        "freeze",
        "rereview",
        due,
        "--keep",
        "--note",
        "x",
        "--next-review-by",
        "2030-01-01T00:00",
        code=2,
    )
    assert "time zone" in naive.output
    kept = cli(
        tmp_path, "freeze", "rereview", due, "--keep", "--note", "still risky",
        "--next-review-by", later.isoformat().replace("+00:00", "Z"),
    )  # fmt: skip
    assert f"kept {due}; next re-review by {later.isoformat()}" in _said(kept)
    early = cli(tmp_path, "freeze", "rereview", due, "--release", "--note", "no further activity", code=1)
    assert "not due for re-review" in _said(early)  # kept until `later`: releasing it now is refused
    overdue = _freeze(rt, "acc_5", review_by=now - timedelta(hours=1))
    cli(tmp_path, "freeze", "rereview", overdue, "--release", "--note", "no further activity")
    gone = cli(tmp_path, "freeze", "rereview", expiring, "--release", "--note", "x", code=1)
    assert "nothing to re-review" in _said(gone)
    assert _actions(rt, "acc_5")[-4:] == [
        "freeze.rereview_due",
        "freeze.rereviewed",
        "account.frozen",
        "freeze.released",
    ]

    # Self-service: full KYC lifts the finish-KYC freeze.
    bad = cli(tmp_path, "account", "kyc", "acc_6", "platinum", code=1)
    assert "kyc_level must be one of none, basic, full" in _said(bad)
    assert json.loads(cli(tmp_path, "account", "kyc", "acc_6", "basic").stdout)["released"] == []
    full = cli(tmp_path, "account", "kyc", "acc_6", "full")
    assert [f["id"] for f in json.loads(full.stdout)["released"]] == [kyc]
    assert f"released {kyc}" in _said(full)
    assert _actions(rt, "acc_6")[-3:] == ["account.kyc_updated", "account.kyc_updated", "freeze.released"]


def _thawline() -> list[str]:
    script = Path(sys.executable).with_name("thawline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "thawline"]


def _process_env(tmp_path: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("THAWLINE_")} | {
        k: v for k, v in _env(tmp_path).items() if v is not None
    }


@pytest.mark.slow
def test_two_workers_at_once_handle_each_due_item_exactly_once(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, clock = past
    now = datetime.now(UTC)
    expiring = []
    for i in range(30):
        _register(rt, f"acc_x{i}")
        expiring.append(_freeze(rt, f"acc_x{i}", expires_at=now - timedelta(minutes=i + 1)))
    _register(rt, "acc_r")
    rereview = _freeze(rt, "acc_r", review_by=now - timedelta(hours=2))
    _register(rt, "acc_s")
    late = _appeal(rt, _freeze(rt, "acc_s"))  # submitted three days ago: the 48 h deadline passed
    assert clock.now() < now
    rt.close()

    # Hold the write lock while both start: both read the same due items, then race to change them.
    # (The database is migrated already; skipping the migration check keeps its write out of the way.)
    gate = sqlite3.connect(tmp_path / "thawline.db", isolation_level=None)
    gate.execute("BEGIN IMMEDIATE")
    workers = [
        subprocess.Popen(
            [*_thawline(), "worker", "--once"],
            cwd=tmp_path,
            env=_process_env(tmp_path) | {"THAWLINE_AUTO_MIGRATE": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(3)
    gate.execute("COMMIT")
    gate.close()
    totals: Counter[str] = Counter()
    for w in workers:
        stdout, stderr = w.communicate(timeout=120)
        assert w.returncode == 0, stderr
        totals.update(json.loads(stdout)["timers"])
    assert totals == Counter(
        {
            "sla_warnings": 0,
            "freezes_expired": 30,
            "rereviews_due": 1,
            "sla_breached": 1,
            "appeals_expired": 0,
            "probations_ended": 0,
        }
    )

    rt = build_runtime(_settings(tmp_path))
    try:
        with UnitOfWork(rt, read_only=True) as uow:
            entries = [decode_entry(d) for _s, d, _c in uow.oplog.entries()]
        expired = Counter(e["subject"]["freeze_id"] for e in entries if e["action"] == "freeze.expired")
        assert expired == Counter(dict.fromkeys(expiring, 1))
        assert [e["subject"]["freeze_id"] for e in entries if e["action"] == "freeze.rereview_due"] == [
            rereview
        ]
        assert [e["subject"]["appeal_id"] for e in entries if e["action"] == "appeal.sla_breached"] == [late]
        assert verify_log(rt).ok
    finally:
        rt.close()


@pytest.mark.slow
def test_the_worker_loop_acts_on_timers_and_stops_cleanly_on_sigterm(
    tmp_path: Path, past: tuple[Runtime, FakeClock]
) -> None:
    rt, _clock = past
    _register(rt, "acc_7")
    _freeze(rt, "acc_7", expires_at=datetime.now(UTC) - timedelta(minutes=5))
    worker = subprocess.Popen(
        [*_thawline(), "worker", "--interval", "0.2"],
        cwd=tmp_path,
        env=_process_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        seen = []
        while not any("handled freezes_expired=1" in line for line in seen):
            line = worker.stderr.readline()
            assert line, f"worker ended early: {seen}"
            seen.append(line)
        worker.send_signal(signal.SIGTERM)
        _out, rest = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, rest
    assert "SIGTERM: stopping after the current scan" in rest
    assert rest.rstrip().endswith("worker stopped")
    assert _actions(rt, "acc_7")[-1] == "freeze.expired"
