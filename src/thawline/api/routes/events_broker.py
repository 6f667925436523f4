"""``POST /v1/events`` in broker mode: validate, publish to JetStream, answer 202 once it has them.

Nothing is stored by the API: the partition's worker evaluates each event and commits the decision.
Unknown accounts are refused here (one indexed read), as in direct mode, so an integrator learns of
them at once rather than from a worker's log.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from thawline.adapters.db.schema import account
from thawline.api.problems import problem
from thawline.domain.errors import InvalidInputError
from thawline.services.broker import BrokerUnavailableError, Publisher
from thawline.services.runtime import Runtime
from thawline.services.unit_of_work import UnitOfWork


def _registered(runtime: Runtime, account_ids: list[str]) -> set[str]:
    found: set[str] = set()
    with UnitOfWork(runtime, read_only=True) as uow:
        for start in range(0, len(account_ids), 500):
            chunk = account_ids[start : start + 500]
            found.update(uow.conn.execute(select(account.c.id).where(account.c.id.in_(chunk))).scalars())
    return found


async def publish_events(
    request: Request, valid: list[Any], refused: list[dict[str, Any]], positions: list[int], actor_ref: str
) -> Response:
    """Publish the valid events (``positions``: their indexes in the request) and say what became of each."""
    runtime: Runtime = request.app.state.runtime
    broker: Publisher = request.app.state.broker
    known = await run_in_threadpool(_registered, runtime, sorted({e.account_id for e in valid}))
    rejected = list(refused)
    sendable = []
    for idx, e in zip(positions, valid, strict=True):
        if e.account_id in known:
            sendable.append(e)
        else:
            message = f"account {e.account_id} is not registered"
            rejected.append({"index": idx, "id": e.id, "field": "account_id", "message": message})
    rejected.sort(key=lambda r: int(r["index"]))
    if not sendable:
        raise InvalidInputError(
            "no event was accepted: "
            + "; ".join(f"[{r['index']}] {r['field']}: {r['message']}" for r in rejected[:5]),
            field="events",
        )
    try:
        published = await broker.publish(sendable, actor_ref)
    except BrokerUnavailableError as exc:
        return problem(request, 503, f"the event broker is unavailable; nothing was accepted ({exc})")
    out = {
        "accepted": [
            {"id": p.event_id, "account_id": p.account_id, "partition": p.partition, "seq": p.stream_seq}
            for p in published
            if not p.duplicate
        ],
        "duplicates": [p.event_id for p in published if p.duplicate],
        "rejected": rejected,
        "queued": True,
    }
    return Response(orjson.dumps(out), status_code=202, media_type="application/json")
