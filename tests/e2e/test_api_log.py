"""The HTTP API: problem documents, API-key scopes, and the log's proofs over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import issue_key
from tests.helpers import append
from thawline.adapters.db.schema import api_key
from thawline.api.app import create_app
from thawline.oplog import bundles
from thawline.oplog.entry import Actor, ActorKind
from thawline.oplog.note import parse_vkey
from thawline.services import apikeys
from thawline.services.apikeys import KeyCache
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

PROBLEM = "application/problem+json"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    """A client against the app, without the background timer."""
    with TestClient(create_app(runtime, background=False)) as c:
        yield c


def _key(runtime: Runtime, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_key(runtime, *scopes)}"}


def test_health_and_readiness_answer(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready == {"status": "ready", "database": runtime.engine.dialect.name}


def test_openapi_is_published_with_the_log_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/log/entries/{seq}/inclusion" in paths
    assert "/v1/log/consistency" in paths


def test_missing_key_is_a_401_problem_in_the_callers_language(client: TestClient) -> None:
    response = client.get("/v1/log/checkpoint", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["title"] == "需要身份验证"


def test_a_key_without_the_scope_is_refused(client: TestClient, runtime: Runtime) -> None:
    response = client.post("/v1/log/checkpoints", headers=_key(runtime, "log:read"))
    assert response.status_code == 403
    assert "log:admin" in response.json()["detail"]


def test_a_revoked_key_stops_working_at_once(client: TestClient, runtime: Runtime) -> None:
    headers = _key(runtime, "log:read")
    key_id = headers["Authorization"].split("_", 1)[1].split(".")[0]
    assert client.get("/v1/log/entries", headers=headers).status_code == 200
    with UnitOfWork(runtime) as uow:
        apikeys.revoke_key(uow, key_id, Actor(ActorKind.SYSTEM, "test"))
        uow.commit()
    assert client.get("/v1/log/entries", headers=headers).status_code == 401


def test_bad_query_parameters_name_the_field(client: TestClient, runtime: Runtime) -> None:
    response = client.get("/v1/log/entries?limit=0", headers=_key(runtime, "log:read"))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == "limit"


def test_inclusion_and_consistency_over_http_verify_with_the_published_key(
    client: TestClient, runtime: Runtime
) -> None:
    headers = _key(runtime, "log:read", "log:admin")
    append(runtime, 250, batch=50)
    created = client.post("/v1/log/checkpoints", headers=headers)
    assert created.status_code == 201
    assert created.json()["tree_size"] == 251  # 250 records + the apikey.created entry
    assert client.post("/v1/log/checkpoints", headers=headers).status_code == 200  # nothing new: same one
    verifier = parse_vkey(client.get("/v1/log/public-key").json()["vkey"])
    bundle = client.get("/v1/log/entries/7/inclusion", headers=headers).json()
    assert bundles.check_inclusion(bundle, [verifier]).seq == 7
    consistency = client.get("/v1/log/consistency?old_size=101", headers=headers).json()
    old, new = bundles.check_consistency(consistency, [verifier])
    assert (old.size, new.size) == (101, 251)


def test_an_entry_not_yet_covered_by_a_checkpoint_is_a_409(client: TestClient, runtime: Runtime) -> None:
    headers = _key(runtime, "log:read")
    response = client.get("/v1/log/entries/0/inclusion", headers=headers)
    assert response.status_code == 409
    assert "checkpoint" in response.json()["detail"]


def test_entries_filter_by_account_and_show_the_hashed_bytes(client: TestClient, runtime: Runtime) -> None:
    headers = _key(runtime, "log:read")
    append(runtime, 5, account="acc_a")
    append(runtime, 3, account="acc_b")
    entries = client.get("/v1/log/entries?account_id=acc_b", headers=headers).json()
    assert [e["entry"]["subject"]["account_id"] for e in entries] == ["acc_b"] * 3
    assert client.get("/v1/log/entries/999", headers=headers).status_code == 404


def test_export_streams_json_lines_that_check_offline(client: TestClient, runtime: Runtime) -> None:
    headers = _key(runtime, "log:export")
    append(runtime, 120, batch=60)
    response = client.get("/v1/log/export?from_seq=10&to_seq=90", headers=headers)
    assert response.status_code == 200
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert bundles.check_export(lines, [runtime.signer.verifier()]) == 80
    assert client.get("/v1/log/export", headers=_key(runtime, "log:read")).status_code == 403


def test_checkpoints_are_listed_from_a_size_with_a_limit(client: TestClient, runtime: Runtime) -> None:
    headers = _key(runtime, "log:read")
    append(runtime, 400, batch=100)  # checkpoints at 101, 201, 301, 401 (the key's own entry comes first)
    sizes = [
        c["tree_size"] for c in client.get("/v1/log/checkpoints?min_size=150&limit=1", headers=headers).json()
    ]
    assert sizes == [201]
    assert len(client.get("/v1/log/checkpoints", headers=headers).json()) == 4


def test_a_key_revoked_by_another_process_stops_working_within_the_cache_ttl(runtime: Runtime) -> None:
    presented = _key(runtime, "log:read")["Authorization"].removeprefix("Bearer ")
    key_id = presented.split("_", 1)[1].split(".")[0]
    cache = KeyCache(runtime, ttl=0.2)
    assert cache.authenticate(presented) is not None
    with UnitOfWork(runtime) as uow:  # as `thawline apikey revoke` would, in its own process
        uow.conn.execute(
            api_key.update().where(api_key.c.id == key_id).values(revoked_at=runtime.clock.now())
        )
        uow.commit()
    time.sleep(0.25)
    assert cache.authenticate(presented) is None
    assert (
        cache.authenticate(presented.replace(presented[-4:], "AAAA")) is None
    )  # a wrong secret never matches
