"""Reports and exports over HTTP and in the console: the numbers, the charts, the scopes, the files."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_console import make_staff, sign_in
from tests.integration.test_analytics import T0, build_world
from thawline.api.app import create_app
from thawline.domain.clock import FakeClock
from thawline.domain.staff import Role
from thawline.oplog.entry import decode_entry
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

JANUARY = {"since": "2026-01-01", "until": "2026-01-31"}


@pytest.fixture
def world(runtime: Runtime, clock: FakeClock) -> dict[str, str]:
    """Four rule freezes and what followed them (see tests/integration/test_analytics.py)."""
    assert clock.now() == T0
    return build_world(runtime, clock)


def test_the_summary_carries_the_reports_numbers(client_with: ClientFactory, world: dict[str, str]) -> None:
    r = client_with("reports:read").get("/v1/reports/summary", params=JANUARY)
    assert r.status_code == 200
    doc = r.json()
    burst = next(x for x in doc["rules"] if x["rule"] == "burst")
    assert (burst["freezes"], burst["released_on_appeal"]) == (3, 2)
    assert doc["time_to_release"]["all"]["median_hours"] == pytest.approx(54.0)
    assert doc["appeals"]["share_rejections_incomplete_vouchers"] == 0.5
    assert doc["sla"]["compliance"] == 0.75
    assert doc["labels"]["ip_device"]["zh-CN"] == "IP/设备异常"


def test_reports_need_the_reports_scope_and_admin_implies_it(
    client_with: ClientFactory, world: dict[str, str]
) -> None:
    refused = client_with("log:read").get("/v1/reports/summary", params=JANUARY)
    assert refused.status_code == 403
    assert "reports:read" in refused.json()["detail"]
    assert client_with("admin").get("/v1/reports/summary", params=JANUARY).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"category": "weather"}, "category"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "since"),
    ],
)
def test_bad_report_parameters_are_a_422_naming_the_field(
    client_with: ClientFactory, params: dict[str, str], field: str
) -> None:
    r = client_with("reports:read").get("/v1/reports/summary", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


def test_charts_are_accessible_svg_in_the_requested_language(
    client_with: ClientFactory, world: dict[str, str]
) -> None:
    c = client_with("reports:read")
    r = c.get("/v1/reports/charts/wrongful-by-rule.svg", params={**JANUARY, "lang": "zh-CN"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    svg = r.text
    assert 'role="img"' in svg
    assert "<title id=" in svg
    assert "<desc id=" in svg
    assert "各规则误冻结率" in svg
    assert "burst: 66.7 % (2/3)" in svg  # the bar's tooltip
    assert "style=" not in svg  # the console's CSP forbids inline styles
    day = c.get("/v1/reports/charts/freezes-by-day.svg", params=JANUARY).text
    assert "<polyline" in day
    assert "behavior" not in day  # causes are labelled, not coded
    assert c.get("/v1/reports/charts/pie.svg").status_code == 404


def test_a_cases_export_is_a_parquet_file_without_personal_data_and_is_logged(
    client_with: ClientFactory, runtime: Runtime, world: dict[str, str]
) -> None:
    r = client_with("log:export").get("/v1/exports/cases", params={"format": "parquet"})
    assert r.status_code == 200
    frame = pl.read_parquet(io.BytesIO(r.content))
    assert frame.height == 4
    assert set(frame.get_column("rule").to_list()) == {"burst", "ip_hop"}
    assert sorted(frame.get_column("approved_appeals").to_list()) == [0, 0, 1, 1]
    assert not {"internal_reason", "holder_reason", "explanation"} & set(frame.columns)
    assert "13800138000" not in r.content.decode("latin-1")
    with UnitOfWork(runtime, read_only=True) as uow:
        logged = [decode_entry(bytes(d)) for _s, d, _c in uow.oplog.entries(action="export.created")]
    assert [e["details"]["rows"] for e in logged] == [4]
    assert logged[0]["details"]["sha256"] == r.headers["x-thawline-sha256"]


def test_accounts_export_as_csv_and_the_retention_report(
    client_with: ClientFactory, world: dict[str, str]
) -> None:
    c = client_with("log:export")
    accounts = c.get("/v1/exports/accounts", params={"format": "csv"})
    assert accounts.status_code == 200
    lines = accounts.text.strip().splitlines()
    assert lines[0].startswith("account_id,integrator,holder_subject_id")
    assert len(lines) == 5
    assert "韩梅梅" not in accounts.text
    assert "13800138000" not in accounts.text
    retention = c.get("/v1/exports/retention").json()
    assert retention["retention_days"] == 1826
    assert retention["whole_log_on_hold"] is False
    assert [p["month"] for p in retention["closed_cases"]] == ["2026-01"]
    assert retention["closed_cases"][0]["records"] == 2
    assert retention["closed_cases"][0]["due"] is False
    assert client_with("reports:read").get("/v1/exports/retention").status_code == 403


# ------------------------------------------------------------------------------------- the console


@pytest.fixture
def browser_as(runtime: Runtime) -> Iterator[Callable[[Role], TestClient]]:
    """``browser_as(role)``: a browser over https signed in as a new member with ``role``."""
    clients: list[TestClient] = []

    def make(role: Role) -> TestClient:
        client = TestClient(create_app(runtime, background=False), base_url="https://testserver").__enter__()
        clients.append(client)
        name = f"{role.value.replace('_', '-')}-{len(clients)}"
        make_staff(runtime, name, role)
        assert sign_in(client, name).status_code == 303
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_the_dashboard_shows_the_figures_and_inline_charts_without_script(
    browser_as: Callable[[Role], TestClient], world: dict[str, str]
) -> None:
    page = browser_as(Role.RISK_ANALYST).get("/console/dashboard", params={**JANUARY, "lang": "zh-CN"})
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 6
    assert re.search(r'id="kpi-freezes">4<', html)
    assert re.search(r'id="kpi-vouchers">50.0 % \(1/2\)<', html)
    assert re.search(
        r'<tr data-rule="burst"><td>burst</td><td class="num">3</td><td class="num">2</td>', html
    )
    assert "统计报表" in html
    assert 'href="/console/dashboard?lang=zh-CN"' in html  # the navigation link


def test_the_dashboard_filters_by_cause_and_names_a_bad_filter(
    browser_as: Callable[[Role], TestClient], world: dict[str, str]
) -> None:
    browser = browser_as(Role.AUDITOR)
    only = browser.get("/console/dashboard", params={**JANUARY, "category": "ip_device"}).text
    assert re.search(r'id="kpi-freezes">1<', only)
    assert 'data-rule="burst"' not in only
    bad = browser.get("/console/dashboard", params={"since": "2026-13-01"})
    assert bad.status_code == 422
    assert "since:" in bad.text


def test_reviewers_see_no_dashboard_link_and_are_refused(
    browser_as: Callable[[Role], TestClient], world: dict[str, str]
) -> None:
    browser = browser_as(Role.REVIEWER)
    assert "/console/dashboard" not in browser.get("/console").text
    assert browser.get("/console/dashboard").status_code == 403


def test_the_api_export_refuses_log_ranges_with_a_pointer(client_with: ClientFactory) -> None:
    r = client_with("log:export").get("/v1/exports/log")
    assert r.status_code == 422
    assert "/v1/log/export" in orjson.loads(r.content)["detail"]
