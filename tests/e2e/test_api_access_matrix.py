"""The API's access-control matrix: every ``/v1`` route against an API key of every scope, against
``admin`` and against no key. Each route declares the scopes it needs (``deps.require``); a key
without one of them gets 403, no key 401, and a key with one gets past the gate (whatever the handler
then says about the made-up ids and empty bodies sent here). A route without a scope must be listed
as public on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.e2e.conftest import issue_key
from thawline.api.app import create_app
from thawline.domain.apikeys import Scope
from thawline.services.runtime import Runtime

# Served without an API key on purpose: the checkpoint signing key (anyone may check a proof) and the
# face provider's signed callback (authenticated by its own HMAC).
PUBLIC = {("GET", "/v1/log/public-key"), ("POST", "/v1/callbacks/face")}
STREAMS = {"/v1/accounts/{account_id}/stream", "/v1/console/stream"}  # would stay open when allowed


def _scopes(dependant: Dependant) -> tuple[Scope, ...] | None:
    for dep in dependant.dependencies:
        found = getattr(dep.call, "scopes", None)
        if found is not None:
            return tuple(found)
        deeper = _scopes(dep)
        if deeper is not None:
            return deeper
    return None


def _routes(router: Any) -> list[tuple[str, str, tuple[Scope, ...] | None]]:
    """Every (method, path, scopes) under /v1, through included routers (FastAPI keeps them nested)."""
    out = []
    for route in router.routes:
        if hasattr(route, "original_router"):  # an included router (the app adds each without a prefix)
            out.extend(_routes(route.original_router))
        elif isinstance(route, APIRoute) and route.path.startswith("/v1"):
            out.extend((method, route.path, _scopes(route.dependant)) for method in sorted(route.methods))
    return out


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime, background=False)) as client:
        yield client


def test_every_v1_route_declares_a_scope_or_is_public_on_purpose(api: TestClient) -> None:
    found = _routes(api.app)
    assert len(found) > 70  # the walk reaches the included routers
    unscoped = {(m, p) for m, p, scopes in found if scopes is None}
    assert unscoped == PUBLIC


def test_api_access_control_matrix(runtime: Runtime, api: TestClient) -> None:
    keys = {scope: issue_key(runtime, scope.value) for scope in Scope}
    wrong = []
    for method, path, scopes in _routes(api.app):
        if scopes is None:
            continue
        url = path.replace("{", "").replace("}", "")  # every path parameter becomes its own name
        anonymous = api.request(method, url)
        if anonymous.status_code != 401:
            wrong.append(f"{method} {path} without a key: {anonymous.status_code}")
        for scope, key in keys.items():
            allowed = scope in scopes or scope is Scope.ADMIN
            if allowed and path in STREAMS:
                continue
            reply = api.request(method, url, headers={"Authorization": f"Bearer {key}"})
            refused = reply.status_code in (401, 403) and reply.headers.get("content-type", "").startswith(
                "application/problem+json"
            )
            if allowed == refused or (not allowed and reply.status_code != 403):
                wrong.append(f"{method} {path} with {scope.value}: {reply.status_code} {reply.text[:120]}")
    assert not wrong, "\n".join(wrong)
