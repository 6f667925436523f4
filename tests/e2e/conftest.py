"""HTTP test clients authenticated with a real API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from thawline.api.app import create_app
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import apikeys
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork

ClientFactory = Callable[..., TestClient]


def issue_key(runtime: Runtime, *scopes: str) -> str:
    """Create an API key with ``scopes``; returns the presented key."""
    with UnitOfWork(runtime) as uow:
        _info, presented = apikeys.create_key(uow, "test", list(scopes), Actor(ActorKind.SYSTEM, "test"))
        uow.commit()
    return presented


@pytest.fixture
def client_with(runtime: Runtime) -> Iterator[ClientFactory]:
    """``client_with(*scopes)``: a client of the app (no background timer) holding a key with those scopes."""
    with ExitStack() as stack:

        def make(*scopes: str) -> TestClient:
            c = stack.enter_context(TestClient(create_app(runtime, background=False)))
            c.headers["Authorization"] = f"Bearer {issue_key(runtime, *scopes)}"
            return c

        yield make
