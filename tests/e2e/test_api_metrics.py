"""Operations over HTTP: /metrics (Prometheus text, behind the metrics:read scope), request ids, JSON logs."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.e2e.conftest import ClientFactory
from tests.e2e.test_api_events import ACCOUNT, _burst
from thawline.adapters.db.schema import notification_outbox, oplog_head
from thawline.services import logs
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def scrape(client: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, keyed by (name, sorted labels)."""
    answer = client.get("/metrics")  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_need_the_metrics_read_scope(client_with: ClientFactory) -> None:
    anonymous = client_with("metrics:read")
    anonymous.headers.pop("Authorization")
    assert anonymous.get("/metrics").status_code == 401
    denied = client_with("events:write").get("/metrics")
    assert (denied.status_code, denied.headers["content-type"]) == (403, "application/problem+json")
    assert "metrics:read" in denied.json()["detail"]
    assert client_with("metrics:read").get("/metrics").status_code == 200


def test_ingest_decisions_requests_and_the_store_are_counted(
    client_with: ClientFactory, runtime: Runtime
) -> None:
    c = client_with("accounts:write", "events:write", "metrics:read", "log:admin")
    before = scrape(c)
    assert c.post("/v1/accounts", json=ACCOUNT).status_code == 201
    answer = c.post("/v1/events", json={"events": _burst(runtime, 9)})
    assert answer.status_code == 200, answer.text
    outcomes: dict[str, int] = {}
    for a in answer.json()["accepted"]:
        outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
    assert outcomes.get("freeze")  # the card-testing burst freezes the account
    replay = c.post("/v1/events", json={"events": _burst(runtime, 9)})
    assert len(replay.json()["duplicates"]) == 9
    assert c.post("/v1/log/checkpoints").status_code == 201
    after = scrape(c)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for outcome, n in outcomes.items():
        assert delta("thawline_events_total", outcome=outcome) == n
    assert delta("thawline_events_total", outcome="duplicate") == 9
    assert delta("thawline_decision_latency_seconds_count") == 9
    assert delta("thawline_http_requests_total", method="POST", route="/v1/events", status="200") == 2
    assert delta("thawline_http_requests_total", method="POST", route="/v1/accounts", status="201") == 1
    # The store's gauges say what the database says.
    with UnitOfWork(runtime, read_only=True) as uow:
        pending = uow.conn.execute(
            select(func.count()).where(notification_outbox.c.status == "pending")
        ).scalar_one()
        size = uow.conn.execute(select(oplog_head.c.tree_size)).scalar_one()
    final = scrape(c)
    assert final[("thawline_outbox_backlog", (("status", "pending"),))] == pending
    assert final[("thawline_outbox_backlog", (("status", "dead"),))] == 0
    assert final[("thawline_log_entries", ())] == size
    assert final[("thawline_log_unsigned_entries", ())] == 0
    assert 0 <= final[("thawline_log_checkpoint_age_seconds", ())] < 60


def test_route_templates_keep_identifiers_out_of_the_labels(client_with: ClientFactory) -> None:
    c = client_with("accounts:read", "metrics:read")
    assert c.get("/v1/accounts/acc_secret_id_123").status_code == 404
    text = c.get("/metrics").text
    assert 'route="/v1/accounts/{account_id}"' in text
    assert "acc_secret_id_123" not in text


def test_every_response_carries_a_request_id(client_with: ClientFactory) -> None:
    c = client_with("accounts:read")
    mine = c.get("/healthz", headers={"X-Request-ID": "req-42.a"})
    assert mine.headers["X-Request-ID"] == "req-42.a"
    fresh = c.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert c.get("/healthz").headers["X-Request-ID"] != fresh
    forged = c.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", forged)
    problem = c.get("/v1/accounts/nobody", headers={"X-Request-ID": "req-404"})
    assert (problem.status_code, problem.headers["X-Request-ID"]) == (404, "req-404")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The process's log lines in JSON, captured."""
    handler = logs.configure("json")
    buffer = io.StringIO()
    handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(handler)


def test_json_log_lines_carry_the_request_id_and_no_identifiers(
    client_with: ClientFactory, json_lines: io.StringIO
) -> None:
    c = client_with("accounts:read")
    c.get("/v1/accounts/acc_private_77", headers={"X-Request-ID": "corr-1"})
    lines = [orjson.loads(line) for line in json_lines.getvalue().splitlines()]
    access = [x for x in lines if x["logger"] == "thawline.http" and x["request_id"] == "corr-1"]
    assert len(access) == 1
    line = access[0]
    assert (line["level"], line["method"], line["route"], line["status"]) == (
        "info",
        "GET",
        "/v1/accounts/{account_id}",
        404,
    )
    assert line["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])
    assert "acc_private_77" not in json_lines.getvalue()


def test_text_log_lines_carry_the_request_id(client_with: ClientFactory) -> None:
    handler = logs.configure("text")
    buffer = io.StringIO()
    handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        client_with("accounts:read").get("/healthz", headers={"X-Request-ID": "corr-text"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert re.search(r" INFO thawline\.http \[corr-text\] GET /healthz 200 ", buffer.getvalue())
