"""``thawline backtest`` on a simulated world's Parquet: JSON and table output, a sweep, errors, the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thawline.cli import app
from thawline.oplog.entry import decode_entry
from thawline.services.engine import default_ruleset_text
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork
from thawline.sim import SimConfig, World, write_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world written as Parquet, with a candidate that lowers the KYC volume limit."""
    out = tmp_path_factory.mktemp("world")
    write_dataset(World(SimConfig(seed=3, accounts=300, days=12, abuse_rate=0.06)), out, "parquet")
    text = default_ruleset_text().replace("txn_sum_24h > 10000", "txn_sum_24h > 2000")
    (out / "candidate.yaml").write_text(text, encoding="utf-8")
    return out


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh embedded database for the run's log entry."""
    monkeypatch.setenv("THAWLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("THAWLINE_DATA_DIR", str(tmp_path / "data"))


def test_backtest_prints_added_freezes_and_a_sweep_as_json(world: Path, env: None) -> None:
    result = runner.invoke(
        app,
        ["backtest", "--candidate", str(world / "candidate.yaml"), "--events", str(world / "events.parquet"),
         "--sweep", "kyc_volume:txn_sum_24h=2000:20000:2000", "--target-wrongful", "0.5", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["freezes_added"]["accounts"] > 0
    assert report["freezes_removed"]["accounts"] == 0
    assert report["candidate"]["frozen_accounts"] == (
        report["live"]["frozen_accounts"] + report["freezes_added"]["accounts"]
    )
    assert report["outcomes"] == "simulator labels"
    assert "recall" in report["live"]
    rows = report["sweep"]["rows"]
    assert [r["value"] for r in rows] == [float(v) for v in range(2000, 20001, 2000)]
    counts = [r["accounts"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    rt = build_runtime()
    try:
        with UnitOfWork(rt, read_only=True) as uow:
            entries = [decode_entry(d) for _s, d, _c in uow.oplog.entries()]
    finally:
        rt.close()
    logged = [e for e in entries if e["action"] == "rules.backtested"]
    assert len(logged) == 1
    assert logged[0]["details"]["freezes_added"] == report["freezes_added"]["accounts"]
    assert logged[0]["details"]["sweep"]["rule"] == "kyc_volume"


def test_backtest_table_names_the_recommendation(world: Path, env: None) -> None:
    result = runner.invoke(
        app,
        ["backtest", "--candidate", str(world / "candidate.yaml"), "--events", str(world / "events.parquet"),
         "--sweep", "kyc_volume:#2=2000:20000:6000", "--target-wrongful", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "freezes added / 新增冻结" in result.stdout
    assert "recommended / 建议" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "kyc_volume:txn_sum_24h=1:0:1"], "STEP > 0"),
        (["--sweep", "nope:amount=1:2:1"], "no rule 'nope'"),
        (["--sweep", "kyc_volume:amount=1:2:1"], "'amount' is not compared"),
        (["--since", "yesterday"], "expected a date"),
    ],
)
def test_backtest_refuses_bad_options_with_a_clear_message(
    world: Path, env: None, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app,
        ["backtest", "--candidate", str(world / "candidate.yaml"), "--events", str(world / "events.parquet"),
         *args],
    )  # fmt: skip
    assert result.exit_code == 1
    assert message in result.output
