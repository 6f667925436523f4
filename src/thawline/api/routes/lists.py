"""Block- and allow-lists over HTTP: import a CSV, add, list (never values) and remove entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from thawline.api.deps import ReadUow, RuntimeDep, require
from thawline.api.problems import problem
from thawline.domain.apikeys import Scope
from thawline.domain.errors import InvalidInputError
from thawline.domain.lists import KINDS, MAX_REASON_LENGTH, MAX_VALUE_LENGTH, Kind, ListType
from thawline.oplog.entry import Actor, ActorKind
from thawline.services import lists
from thawline.services.apikeys import ApiKeyInfo
from thawline.services.unit_of_work import UnitOfWork

router = APIRouter(prefix="/v1", tags=["block- and allow-lists"])
CanWriteLists = Annotated[ApiKeyInfo, Depends(require(Scope.LISTS_WRITE))]
ListTypePath = Annotated[ListType, Path(description="block or allow.")]


def _actor(key: ApiKeyInfo) -> Actor:
    return Actor(ActorKind.INTEGRATOR, key.id)


class LineErrorOut(BaseModel):
    """A refused CSV line: its number, the field at fault and why (never the value)."""

    line: int
    field: str
    message: str


class ImportOut(BaseModel):
    """What an import did."""

    version: int = Field(description="The list version this import made.")
    list_type: ListType
    imported: int = Field(description="Entries added.")
    duplicates: int = Field(description="Valid lines already on the list, or repeated in the file.")
    rejected: int = Field(description="Lines refused; see errors.")
    by_kind: dict[str, int]
    errors: list[LineErrorOut]


class EntryIn(BaseModel):
    """One value to put on a list."""

    kind: Kind
    value: str = Field(min_length=1, max_length=MAX_VALUE_LENGTH)
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class EntryOut(BaseModel):
    """A list entry without its value; a name only masked (张*)."""

    id: str
    list_type: str
    kind: str
    reason: str
    version: int
    added_by: str
    added_at: datetime
    masked_name: str | None = Field(default=None, description="Names only: the first character.")
    active: bool
    removed_version: int | None = None
    removed_at: datetime | None = None
    removed_by: str | None = None
    removal_reason: str | None = None
    erroneous: bool | None = None

    @classmethod
    def of(cls, e: lists.ListEntry) -> EntryOut:
        """Render an entry."""
        return cls(
            id=e.id,
            list_type=e.list_type,
            kind=e.kind,
            reason=e.reason,
            version=e.version,
            added_by=e.added_by,
            added_at=e.added_at,
            masked_name=e.masked_name,
            active=e.active,
            removed_version=e.removed_version,
            removed_at=e.removed_at,
            removed_by=e.removed_by,
            removal_reason=e.removal_reason,
            erroneous=e.erroneous,
        )


class AffectedFreezeOut(BaseModel):
    """A freeze the removed entry had caused, and what was done to it."""

    freeze_id: str
    account_id: str
    action: Literal["rereview", "release"]


class RemovalOut(BaseModel):
    """The removed entry, the version its removal made, and the freezes it touched."""

    entry: EntryOut
    version: int
    freezes: list[AffectedFreezeOut]


@router.post(
    "/lists/{list_type}/import",
    response_model=ImportOut,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_list(
    list_type: ListTypePath,
    request: Request,
    *,
    runtime: RuntimeDep,
    key: CanWriteLists,
    source: Annotated[
        str, Query(min_length=1, max_length=256, description="Where the list came from, e.g. the file name.")
    ] = "upload",
) -> ImportOut | JSONResponse:
    """Import a CSV (``kind,value,reason``; UTF-8) as the raw body into the block or allow list.

    Bad lines are reported by line number and field and skipped; nothing valid is a 422 problem
    listing them. Values are stored only as keyed hashes (names normalised).
    """
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    too_big = f"the file is larger than the {limit // (1024 * 1024)} MB limit"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInputError(too_big, field="file")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise InvalidInputError(too_big, field="file")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("the file is not UTF-8 text", field="file") from exc

    def store() -> lists.ImportResult:
        with UnitOfWork(runtime) as uow:
            result = lists.import_csv(uow, text, list_type, _actor(key), source)
            uow.commit()
        return result

    try:
        # The database work is blocking: keep it off the event loop.
        result = await run_in_threadpool(store)
    except lists.ListImportError as exc:
        return problem(request, 422, str(exc), slug="validation", errors=[e.as_json() for e in exc.errors])
    return ImportOut(
        version=result.version,
        list_type=result.list_type,
        imported=result.imported,
        duplicates=result.duplicates,
        rejected=len(result.errors),
        by_kind=result.by_kind,
        errors=[LineErrorOut(line=e.line, field=e.field, message=e.message) for e in result.errors],
    )


@router.post("/lists/{list_type}/entries", response_model=EntryOut, status_code=201)
def add_entry(list_type: ListTypePath, body: EntryIn, runtime: RuntimeDep, key: CanWriteLists) -> EntryOut:
    """Put one value on the block or allow list (409 if it is already there)."""
    with UnitOfWork(runtime) as uow:
        entry = lists.add_entry(
            uow, list_type, body.kind, body.value, reason=body.reason, actor=_actor(key), source_name="api"
        )
        uow.commit()
    return EntryOut.of(entry)


@router.get("/lists", response_model=list[EntryOut])
def list_entries(
    uow: ReadUow,
    _key: CanWriteLists,
    *,
    list_type: ListType | None = None,
    kind: Annotated[Kind | None, Query(description=", ".join(KINDS))] = None,
    include_removed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[EntryOut]:
    """List entries, newest version first: ids, kinds, reasons and versions, never values."""
    return [
        EntryOut.of(e)
        for e in lists.list_entries(
            uow, list_type=list_type, kind=kind, include_removed=include_removed, limit=limit, offset=offset
        )
    ]


@router.delete("/lists/entries/{entry_id}", response_model=RemovalOut)
def remove_entry(
    entry_id: str,
    runtime: RuntimeDep,
    key: CanWriteLists,
    reason: Annotated[str, Query(min_length=1, max_length=MAX_REASON_LENGTH)],
    erroneous: bool = False,
) -> RemovalOut:
    """Remove an entry. ``erroneous=true`` (bad data) also re-reviews or releases the freezes it caused."""
    with UnitOfWork(runtime) as uow:
        result = lists.remove_entry(uow, entry_id, erroneous=erroneous, reason=reason, actor=_actor(key))
        uow.commit()
    return RemovalOut(
        entry=EntryOut.of(result.entry),
        version=result.version,
        freezes=[
            AffectedFreezeOut(freeze_id=a.freeze_id, account_id=a.account_id, action=a.action)
            for a in result.affected
        ],
    )
