"""``GET /metrics``: the Prometheus text exposition, for a key with the ``metrics:read`` scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from thawline.api.deps import RuntimeDep, require
from thawline.domain.apikeys import Scope
from thawline.services import metrics
from thawline.services.apikeys import ApiKeyInfo

router = APIRouter(tags=["operations"])
CanScrape = Annotated[ApiKeyInfo, Depends(require(Scope.METRICS_READ))]


@router.get("/metrics", response_class=Response)
async def scrape(runtime: RuntimeDep, _key: CanScrape) -> Response:
    """Counters, histograms and the store's gauges (outbox backlog, log size, checkpoint age)."""
    body = await run_in_threadpool(metrics.exposition, runtime)  # the gauges read the database
    return Response(body, media_type=metrics.CONTENT_TYPE)
