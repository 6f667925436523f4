"""Event intake for integrators, the engine's decisions and diagnosis, rulesets and suppressions."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from typing_extensions import TypedDict

from thawline.adapters.db.schema import event, risk_decision
from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.api.routes.events_broker import publish_events
from thawline.domain.apikeys import Scope
from thawline.domain.errors import InvalidInputError, NotFoundError
from thawline.domain.events import MAX_BATCH, Event, EventType
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import accounts, metrics, rulesets
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.engine import EVENT_ADAPTER, IngestResult, RiskEngine, load_ruleset
from thawline.services.gc_pause import gc_paused
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["events and the risk engine"])
BATCH_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class _Batch(TypedDict):
    events: list[Event]


# The common body, {"events": [...]} with every item valid, parsed and validated in one pass.
BODY_ADAPTER: TypeAdapter[_Batch] = TypeAdapter(_Batch)
CanSend = Annotated[ApiKeyInfo, Depends(require(Scope.EVENTS_WRITE))]
CanRead = Annotated[ApiKeyInfo, Depends(require(Scope.ACCOUNTS_READ))]
CanRules = Annotated[ApiKeyInfo, Depends(require(Scope.RULES_WRITE))]


class ItemError(BaseModel):
    """Why one item of a batch was refused."""

    index: int
    id: str | None
    field: str
    message: str


class Accepted(BaseModel):
    """One stored event and the engine's outcome."""

    id: str
    account_id: str
    outcome: str = Field(description="allow, review, restrict or freeze.")
    rules: list[str] = Field(description="The rules that fired (shadow rules included).")
    freeze_id: str | None = None


class IngestOut(BaseModel):
    """What happened to each item: stored (with the decision), a replay, or refused with the reason."""

    accepted: list[Accepted]
    duplicates: list[str]
    rejected: list[ItemError]
    ruleset_version: int


_TYPES = frozenset(t.value for t in EventType)


def _items(body: Any) -> list[Any]:
    if isinstance(body, dict) and "events" in body:
        items = body["events"]
        if not isinstance(items, list):
            raise InvalidInputError("'events' must be a list", field="events")
    elif isinstance(body, dict):
        items = [body]
    elif isinstance(body, list):
        items = body
    else:
        raise InvalidInputError('send one event object or {"events": [...]}', field="events")
    if not items:
        raise InvalidInputError("the batch is empty", field="events")
    if len(items) > MAX_BATCH:
        raise InvalidInputError(f"at most {MAX_BATCH} events per batch", field="events")
    return items


@router.post(
    "/events",
    response_model=IngestOut,
    responses={207: {"model": IngestOut, "description": "Some items were refused; see `rejected`."}},
)
async def ingest(request: Request, key: CanSend) -> Response:
    """Send one event or a batch of up to 10,000. Each item is validated on its own: bad items are
    listed in ``rejected`` (207) and do not stop the good ones; replayed ids are ``duplicates``."""
    raw = await request.body()
    with gc_paused():  # the batch's objects die young instead of feeding full collections
        return await _ingest_body(request, key, raw)


async def _ingest_body(request: Request, key: ApiKeyInfo, raw: bytes) -> Response:
    refused: list[ItemError] = []
    valid: list[Any] = []
    with contextlib.suppress(ValidationError):  # the common case: a batch, every item valid
        valid = BODY_ADAPTER.validate_json(raw)["events"]
    if valid and len(valid) <= MAX_BATCH:
        positions = list(range(len(valid)))
    else:  # one event, or some item refused, or a bad body: item by item, each error named
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"the body is not JSON: {exc}", field="body") from None
        items = _items(body)
        try:
            valid = BATCH_ADAPTER.validate_python(items)
        except ValidationError:
            valid, refused = _one_by_one(items)
        refused_at = {r.index for r in refused}
        positions = [i for i in range(len(items)) if i not in refused_at]
    if request.app.state.broker is not None and valid:  # broker mode: a worker decides (202)
        return await publish_events(request, valid, [r.model_dump() for r in refused], positions, key.id)
    engine: RiskEngine = request.app.state.engine
    actor = Actor(ActorKind.INTEGRATOR, key.id)
    started = time.perf_counter()
    result = await run_in_threadpool(engine.ingest, valid, actor) if valid else IngestResult()
    metrics.observe_batch(result, time.perf_counter() - started)
    rejected = refused + [
        ItemError(index=positions[idx], id=ident, field=fld, message=msg)
        for idx, ident, fld, msg in result.rejected
    ]
    rejected.sort(key=lambda r: r.index)
    if not result.accepted and not result.duplicates:
        raise InvalidInputError(
            "no event was accepted: "
            + "; ".join(f"[{r.index}] {r.field}: {r.message}" for r in rejected[:5]),
            field="events",
        )
    # Built directly (the shape of IngestOut): validating 10,000 response models costs more than it checks.
    out = {
        "accepted": [
            {
                "id": o.event_id,
                "account_id": o.account_id,
                "outcome": o.outcome,
                "rules": [h.rule.id for h in o.hits],
                "freeze_id": o.freeze_id,
            }
            for o in result.accepted
        ],
        "duplicates": result.duplicates,
        "rejected": [r.model_dump() for r in rejected],
        "ruleset_version": result.ruleset_version,
    }
    return Response(orjson.dumps(out), status_code=207 if rejected else 200, media_type="application/json")


def _one_by_one(items: list[Any]) -> tuple[list[Any], list[ItemError]]:
    valid: list[Any] = []
    refused: list[ItemError] = []
    for i, item in enumerate(items):
        try:
            valid.append(EVENT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            parts = [str(p) for p in first["loc"]]
            if parts and parts[0] in _TYPES:  # the discriminated union names the event type first
                parts = parts[1:]
            if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
                parts = ["type"]
            ident = item.get("id") if isinstance(item, dict) else None
            refused.append(
                ItemError(
                    index=i,
                    id=str(ident) if ident else None,
                    field=".".join(parts) or "event",
                    message=first["msg"],
                )
            )
    return valid, refused


class StoredEvent(BaseModel):
    """An event as stored (personal values hashed), with the engine's outcome."""

    id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    outcome: str
    event: dict[str, Any]


@router.get("/accounts/{account_id}/events", response_model=list[StoredEvent])
def account_events(
    account_id: str,
    uow: ReadUow,
    _key: CanRead,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[StoredEvent]:
    """The account's login and transaction log, in event time, optionally within [from, to)."""
    accounts.get(uow, account_id)
    query = select(event).where(event.c.account_id == account_id)
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInputError("times need a time zone", field="from" if bound is since else "to")
    if since is not None:
        query = query.where(event.c.occurred_at >= since)
    if until is not None:
        query = query.where(event.c.occurred_at < until)
    rows = uow.conn.execute(query.order_by(event.c.occurred_at, event.c.id).limit(limit))
    return [
        StoredEvent(
            id=r.id,
            type=r.type,
            occurred_at=r.occurred_at,
            received_at=r.received_at,
            outcome=r.outcome,
            event=orjson.loads(r.payload),
        )
        for r in rows
    ]


class DiagnosisItem(BaseModel):
    """One rule that fired: the category, the rule, what it read against what threshold, what was done."""

    category: str
    rule: str
    ruleset_version: int
    action: str
    applied: str
    values: dict[str, Any]
    freeze_id: str | None
    evidence: list[str]


class DiagnosisOut(BaseModel):
    """Why the engine decided what it did about one event."""

    event_id: str
    account_id: str
    outcome: str
    reasons: list[DiagnosisItem]


_RANK = {"freeze": 0, "restrict": 1, "review": 2, "allow": 3}


@router.get("/events/{event_id}/diagnosis", response_model=DiagnosisOut)
def diagnosis(event_id: str, uow: ReadUow, _key: CanRead) -> DiagnosisOut:
    """The ranked reasons for an event's outcome (冻结原因诊断), pinned to the event."""
    row = uow.conn.execute(select(event).where(event.c.id == event_id)).first()
    if row is None:
        raise NotFoundError(f"event {event_id} does not exist")
    hits = uow.conn.execute(select(risk_decision).where(risk_decision.c.event_id == event_id)).all()
    reasons = sorted(
        (
            DiagnosisItem(
                category=h.category,
                rule=h.rule_id,
                ruleset_version=h.ruleset_version,
                action=h.action,
                applied=h.applied,
                values=orjson.loads(h.values),
                freeze_id=h.freeze_id,
                evidence=[f"event:{event_id}"],
            )
            for h in hits
        ),
        key=lambda d: (_RANK.get(d.action.split(":")[0], 9), d.rule),
    )
    return DiagnosisOut(event_id=event_id, account_id=row.account_id, outcome=row.outcome, reasons=reasons)


class RulesetIn(BaseModel):
    """A new ruleset version (YAML)."""

    yaml: str = Field(min_length=1, max_length=1_000_000)
    note: str = Field(default="", max_length=500)


class RulesetOut(BaseModel):
    """The active ruleset."""

    version: int
    sha256: str
    rules: list[dict[str, Any]]


@router.get("/rules", response_model=RulesetOut)
def active_rules(request: Request, runtime: RuntimeDep, _key: CanRead) -> RulesetOut:
    """The active ruleset version and its rules."""
    engine: RiskEngine = request.app.state.engine
    with engine.lock, UnitOfWork(runtime) as uow:  # the first call may store the default ruleset
        version, rs = engine.active_ruleset(uow)
        uow.commit()
    return RulesetOut(
        version=version,
        sha256=rs.sha256,
        rules=rulesets.rule_rows(rs.source),
    )


@router.post("/rules", response_model=RulesetOut, status_code=201)
def new_ruleset(body: RulesetIn, request: Request, runtime: RuntimeDep, key: CanRules) -> RulesetOut:
    """Load a new ruleset version and make it active (422 naming the rule and field if it won't compile)."""
    with UnitOfWork(runtime) as uow:
        load_ruleset(uow, body.yaml, Actor(ActorKind.INTEGRATOR, key.id), note=body.note)
        uow.commit()
    return active_rules(request, runtime, key)


class SuppressionIn(BaseModel):
    """Stop one rule acting on one account until a time."""

    rule_id: str = Field(min_length=1, max_length=64)
    until: datetime
    reason: str = Field(min_length=1, max_length=1000)


@router.post("/accounts/{account_id}/suppressions", status_code=201)
def suppress(account_id: str, body: SuppressionIn, runtime: RuntimeDep, key: CanRules) -> dict[str, str]:
    """Suppress a rule for an account (e.g. a known false positive) until ``until``."""
    with UnitOfWork(runtime) as uow:
        rulesets.suppress(
            uow,
            account_id,
            body.rule_id,
            until=body.until,
            reason=body.reason,
            actor=Actor(ActorKind.INTEGRATOR, key.id),
        )
        uow.commit()
    return {"account_id": account_id, "rule_id": body.rule_id, "until": body.until.isoformat()}
