"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from thawline import __version__
from thawline.adapters.db.engine import ping
from thawline.api.deps import RuntimeDep
from thawline.api.problems import problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", response_model=None)
def readyz(request: Request, runtime: RuntimeDep) -> dict[str, Any] | JSONResponse:
    """The database answers; otherwise 503."""
    try:
        ping(runtime.engine)
    except Exception as exc:  # any driver error means "not ready"
        return problem(request, 503, f"database unreachable: {type(exc).__name__}")
    return {"status": "ready", "database": runtime.engine.dialect.name}
