"""``thawline report`` and ``thawline export``, run as real processes over a known history."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import make_settings
from tests.e2e.test_cli import thawline
from tests.integration.test_analytics import T0, build_world
from thawline.domain.clock import FakeClock
from thawline.services.runtime import build_runtime
from thawline.services.unit_of_work import UnitOfWork

PERIOD = ("--since", "2026-01-01", "--until", "2026-01-31")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """./thawline.db holding the four cases of tests/integration/test_analytics.py, checkpointed."""
    tmp = tmp_path_factory.mktemp("report")
    settings = make_settings(f"sqlite:///{tmp / 'thawline.db'}", tmp, data_dir=tmp / "thawline-data")
    clock = FakeClock(T0)
    rt = build_runtime(settings, clock=clock)
    try:
        build_world(rt, clock)
        with UnitOfWork(rt) as uow:
            rt.log.checkpoint(uow)
            uow.commit()
    finally:
        rt.close()
    return tmp


def test_report_json_has_the_exact_figures(workdir: Path) -> None:
    doc = json.loads(thawline(workdir, "report", *PERIOD, "--format", "json").stdout)
    assert doc["freezes"] == 4
    assert {r["rule"]: r["wrongful_rate"] for r in doc["rules"]} == {
        "burst": pytest.approx(2 / 3),
        "ip_hop": 0.0,
    }
    assert doc["time_to_release"]["complete_materials"]["median_hours"] == pytest.approx(9.0)
    assert doc["appeals"]["second_appeal_rate"] == 0.5


def test_report_tables_in_chinese_and_svg_charts(workdir: Path, tmp_path: Path) -> None:
    table = thawline(workdir, "report", *PERIOD, "--lang", "zh-CN").stdout
    assert "各规则误冻结率" in table
    assert "66.7%" in table
    thawline(workdir, "report", *PERIOD, "--format", "svg", "--out", str(tmp_path / "charts"))
    written = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert "wrongful-by-rule.svg" in written
    assert len(written) == 7
    assert (tmp_path / "charts" / "time-to-release.svg").read_text().startswith("<svg")


def test_report_refuses_a_bad_option_by_name(workdir: Path) -> None:
    proc = thawline(workdir, "report", "--since", "2026-02-30", ok=False)
    assert proc.returncode != 0
    assert "--since" in proc.stderr
    svg = thawline(workdir, "report", "--format", "svg", ok=False)
    assert "--out" in svg.stderr


def test_exports_are_ids_only_and_the_log_export_checks_offline(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    thawline(workdir, "export", "cases", "--out", str(out), "--format", "parquet")
    cases = pl.read_parquet(next(out.glob("thawline-cases-*.parquet")))
    assert sorted(cases.get_column("rule").to_list()) == ["burst", "burst", "burst", "ip_hop"]
    thawline(workdir, "export", "log", "--out", str(out))
    jsonl = next(out.glob("thawline-log-*.jsonl"))
    manifest = json.loads(Path(f"{jsonl}.manifest.json").read_text())
    assert manifest["rows"] == manifest["log_export_header"]["to"]
    vkey = thawline(workdir, "log", "public-key").stdout.strip()
    assert "OK" in thawline(workdir, "log", "check", str(jsonl), "--vkey", vkey).stdout
    thawline(workdir, "export", "log", "--out", str(out), "--format", "csv", "--from", "5", "--to", "10")
    rows = pl.read_csv(next(out.glob("thawline-log-*.csv")))
    assert rows.get_column("seq").to_list() == [5, 6, 7, 8, 9]
    retention = json.loads(thawline(workdir, "export", "retention", "--json").stdout)
    assert retention["closed_cases"][0]["records"] == 2
