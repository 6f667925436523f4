"""Route dependencies: the runtime, units of work, and API-key authentication with scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from thawline.api.problems import AuthError
from thawline.domain.apikeys import Scope
from thawline.domain.errors import PermissionDeniedError
from thawline.services.apikeys import ApiKeyInfo, KeyCache
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def get_runtime(request: Request) -> Runtime:
    """The runtime the app was built with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def read_uow(runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    """A read-only unit of work for the request."""
    with UnitOfWork(runtime, read_only=True) as uow:
        yield uow


ReadUow = Annotated[UnitOfWork, Depends(read_uow)]


def _presented_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key", "").strip()


def require(scope: Scope, *alternatives: Scope) -> Callable[[Request], Awaitable[ApiKeyInfo]]:
    """Dependency factory: the caller's active API key must grant ``scope`` or one of ``alternatives``."""

    async def check(request: Request) -> ApiKeyInfo:
        presented = _presented_key(request)
        if not presented:
            raise AuthError("send an API key as 'Authorization: Bearer tlk_…' or 'X-API-Key'")
        keys: KeyCache = request.app.state.keys
        key = keys.cached(presented)  # a hit costs no I/O
        if key is None:  # a miss is a database lookup: off the event loop
            key = await run_in_threadpool(keys.authenticate, presented)
        if key is None:
            raise AuthError("the API key is unknown, malformed or revoked")
        if not any(key.allows(s) for s in (scope, *alternatives)):
            names = " or ".join(f"'{s.value}'" for s in (scope, *alternatives))
            raise PermissionDeniedError(f"this API key lacks the {names} scope")
        request.state.api_key = key
        return key

    check.scopes = (scope, *alternatives)  # type: ignore[attr-defined]  # read by the access matrix test
    return check
