"""``thawline simulate``: files on disk, and posting to a stub of the ingestion API."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import Result
from typer.testing import CliRunner

from thawline.cli import app

runner = CliRunner()
SMALL = ("--seed", "5", "--accounts", "40", "--days", "3", "--abuse-rate", "0.15")
FILES = ("accounts.jsonl", "labels.jsonl", "blocklist.csv", "summary.json")


def cli(*args: str, code: int = 0) -> Result:
    """Run ``thawline`` in-process and check its exit status."""
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stdout}{result.stderr}"
    return result


def test_simulate_writes_every_file(tmp_path: Path) -> None:
    result = cli("simulate", *SMALL, "--out", str(tmp_path / "out"))
    out = tmp_path / "out"
    for name in (*FILES, "events.jsonl"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["seed"] == 5
    assert summary["config"]["accounts"] == 40
    events = (out / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert summary["events"]["total"] == len(events) > 0
    assert len((out / "accounts.jsonl").read_text(encoding="utf-8").splitlines()) == 40
    assert summary["generation"]["events_per_second"] > 0
    assert "events/s" in result.stderr


def test_simulate_writes_parquet(tmp_path: Path) -> None:
    cli("simulate", *SMALL, "--format", "parquet", "--out", str(tmp_path))
    frame = pl.read_parquet(tmp_path / "events.parquet")
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert frame.height == summary["events"]["total"]
    assert not (tmp_path / "events.jsonl").exists()


def test_simulate_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "thawline", "simulate", *SMALL, "--out", "w"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert all((tmp_path / "w" / name).exists() for name in FILES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--out"),
        (("--post", "http://127.0.0.1:9"), "--api-key"),
        (("--out", "x", "--start", "2026-13-01"), "--start"),
        (("--out", "x", "--abuse-rate", "0.7", "--lookalike-rate", "0.7"), "lookalike_rate"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = cli("simulate", *SMALL, *args, code=2)
    assert message in result.stderr


# -- --post ---------------------------------------------------------------------------------------


class Stub:
    """A stand-in for the server: records requests, answers with ``respond(path, body)``."""

    def __init__(self, respond: Callable[[str, Any], tuple[int, Any]]) -> None:
        self.respond = respond
        self.requests: list[tuple[str, dict[str, str], Any]] = []


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[str, Any], tuple[int, Any]]], tuple[str, Stub]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Callable[[str, Any], tuple[int, Any]]) -> tuple[str, Stub]:
        state = Stub(respond)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                state.requests.append((self.path, dict(self.headers), body))
                status, answer = state.respond(self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                kind = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/", state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _accept_all(path: str, body: Any) -> tuple[int, Any]:
    if path == "/v1/accounts":
        return 201, {"id": body["id"]}
    return 200, {"accepted": [e["id"] for e in body["events"]], "rejected": []}


def test_post_registers_accounts_then_sends_events_in_batches(tmp_path: Path, stub: Any) -> None:
    url, state = stub(_accept_all)
    result = cli("simulate", *SMALL, "--post", url, "--api-key", "tlk_test", "--batch-size", "300",
                 "--out", str(tmp_path / "truth"))  # fmt: skip
    cli("simulate", *SMALL, "--out", str(tmp_path / "files"))
    accounts = [b for p, _h, b in state.requests if p == "/v1/accounts"]
    batches = [b["events"] for p, _h, b in state.requests if p == "/v1/events"]
    assert all(h["Authorization"] == "Bearer tlk_test" for _p, h, _b in state.requests)
    assert all(h["Content-Type"] == "application/json" for _p, h, _b in state.requests)
    files = tmp_path / "files"
    assert accounts == [
        json.loads(line) for line in (files / "accounts.jsonl").read_text("utf-8").splitlines()
    ]
    assert all(1 <= len(b) <= 300 for b in batches)
    assert len(batches) > 1
    posted = [e for b in batches for e in b]
    assert posted == [json.loads(line) for line in (files / "events.jsonl").read_text("utf-8").splitlines()]
    summary = json.loads(result.stdout)
    assert summary["posted"]["events_accepted"] == len(posted)
    assert summary["posted"]["events_rejected"] == 0
    for name in FILES[:3]:
        assert (tmp_path / "truth" / name).read_bytes() == (files / name).read_bytes(), name
    assert not (tmp_path / "truth" / "events.jsonl").exists()


def test_post_reports_a_problem_and_exits_1(stub: Any) -> None:
    def refuse(path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/events":
            return 422, {
                "type": "https://thawline.dev/problems/validation",
                "title": "Invalid input",
                "status": 422,
                "detail": "events[3].amount: Input should be greater than 0",
                "errors": [{"field": "events[3].amount", "message": "Input should be greater than 0"}],
            }
        return _accept_all(path, body)

    url, state = stub(refuse)
    result = cli("simulate", *SMALL, "--post", url, "--api-key", "k", code=1)
    said = " ".join(result.stderr.split())
    assert "422" in said
    assert "events[3].amount: Input should be greater than 0" in said
    assert sum(1 for p, _h, _b in state.requests if p == "/v1/events") == 1


def test_post_counts_rejected_events_and_exits_1(stub: Any) -> None:
    def half(path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/events":
            ids = [e["id"] for e in body["events"]]
            return 207, {"accepted": ids[1:], "rejected": [{"id": ids[0], "errors": ["duplicate"]}]}
        return _accept_all(path, body)

    url, state = stub(half)
    result = cli("simulate", *SMALL, "--post", url, "--api-key", "k", "--batch-size", "1000", code=1)
    batches = sum(1 for p, _h, _b in state.requests if p == "/v1/events")
    summary = json.loads(result.stdout)
    assert summary["posted"]["events_rejected"] == batches
    assert summary["posted"]["events_accepted"] == summary["events"]["total"] - batches
    assert "rejected" in result.stderr


def test_post_retries_server_errors(stub: Any) -> None:
    failures = iter([True, False])

    def flaky(path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/accounts" and next(failures, False):
            return 503, {"title": "Unavailable", "status": 503, "detail": "database unreachable"}
        return _accept_all(path, body)

    url, state = stub(flaky)
    cli("simulate", "--seed", "5", "--accounts", "3", "--days", "1", "--post", url, "--api-key", "k")
    assert sum(1 for p, _h, _b in state.requests if p == "/v1/accounts") == 4
